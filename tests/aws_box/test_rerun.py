"""qrerun of a registered long run on AWS: the job stays RUNNING (substate 60) until its worker has killed
the run at its next look, or until the reconciler takes the run of a lost worker back; only then is it
queued again, once, so no two runs of it ever overlap."""

from hyperbatch.core import exits
from tests.aws_box.harness import ALICE
from tests.aws_box.test_registered_runs import batch_worker, message_counts, registered_run


def test_a_registered_run_asked_to_rerun_is_killed_by_its_worker_before_the_next_run_starts(box, tmp_path):
    ledger = tmp_path / "ledger"
    script = (f'trap \'echo "end $HYPER_ATTEMPT" >> {ledger}; exit 143\' TERM\n'
              f'echo "start $HYPER_ATTEMPT" >> {ledger}\n'
              'if [ "$HYPER_ATTEMPT" = 1 ]; then sleep 60 & wait; fi\n'
              f'echo "end $HYPER_ATTEMPT" >> {ledger}\n')
    job = box.submit(command=["/bin/sh", "-c", script])
    box.start_worker(env={"HYPER_IDLE_TIMEOUT": "8"})
    box.wait_for("the run to register", lambda: box.runs.entries(), timeout=20)
    status, answer = box.api("POST", f"/jobs/{job['id']}/rerun")
    assert status == 200, answer
    assert (answer["state"], answer["job_state"], answer["substate"], answer["attempt"]) == ("RUNNING", "R", 60, 1)
    done = box.wait_state(job["id"], "SUCCEEDED", timeout=40)
    assert (done["attempt"], done["run_count"], done.get("reruns", 0), done["lost_runs"]) == (2, 2, 1, 0)
    assert ledger.read_text().split("\n") == ["start 1", "end 1", "start 2", "end 2", ""]  # in turn, never at once
    history = [entry[1:] for entry in done["history"] if entry[1] in "Rx"]
    assert history[0] == ["R", "", 0] and history[1][:2] == ["x", exits.RERUN] and history[1][-1] == 2
    assert box.wait_for("every message deleted", lambda: message_counts(box) == (0, 0), timeout=10)


def test_a_rerun_whose_worker_is_lost_first_is_requeued_by_the_reconciler_as_the_rerun(box):
    job = box.submit(command=["true"])
    worker = batch_worker(box)
    registered_run(box, job["id"], worker)
    status, answer = box.api("POST", f"/jobs/{job['id']}/rerun")
    assert status == 200 and answer["substate"] == 60
    box.settle()
    assert message_counts(box) == (0, 1)  # nothing sent: only the run's own message, hidden
    box.set_batch_status(worker, "FAILED")  # its container stopped before its agent looked
    assert box.reconcile()["runs_taken_back"] == 1
    doc = box.job(job["id"])
    assert (doc["state"], doc["attempt"], doc["exit_status"], doc.get("reruns", 0), doc["lost_runs"]) == (
        "QUEUED", 2, exits.RERUN, 1, 0)
    assert doc["reason"] == (f"rerun requested by {ALICE}; re-queued as attempt 2; worker us-east-1/{worker} lost "
                             "(its container or machine stopped)")
    assert doc.get("rerun_requested") is None
    box.start_worker(env={"HYPER_IDLE_TIMEOUT": "8"})
    done = box.wait_state(job["id"], "SUCCEEDED", timeout=20)
    assert (done["run_count"], done["attempt"]) == (2, 2)

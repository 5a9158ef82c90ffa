"""qrerun of a running job: flagged, never re-queued before its run has ended (architecture §3.2, §4.5).

Whatever ends the run once the request is recorded (the worker killing it, the job exiting on its
own first, the worker stopping, or the worker lost) re-queues it once at attempt + 1, with PBS's
rerun exit status and no retry used up; a qdel, before or after, wins.
"""

import pytest

from hyperbatch.core import exits
from hyperbatch.core.errors import Conflict
from hyperbatch.services.dispatch import Outcome
from tests.core.conftest import ALICE

KILLED = Outcome(exits.RERUN, "rerun", rerun=True)


def rerun(harness, job):
    return harness.scheduler.rerun(job["id"], ALICE)


def only_work(harness, job, attempt):
    """The one run the queue holds for `job`: at `attempt`; nothing else is claimable."""
    run = harness.claim()
    assert run is not None and (run.job["id"], run.attempt) == (job["id"], attempt)
    assert harness.claim() is None
    return run


def test_a_rerun_running_job_stays_running_with_no_work_until_its_worker_kills_it(harness):
    job = harness.submit(max_attempts=2)
    run = harness.claim()
    flagged = rerun(harness, job)
    assert (flagged["state"], flagged["attempt"], flagged.get("rerun_requested")) == ("RUNNING", 1, True)
    assert flagged["reason"] == "rerun requested by alice"
    assert harness.claim() is None  # no other worker can start it meanwhile
    assert harness.worker.heartbeat(run).rerun
    requeued = harness.worker.finish_job(run, KILLED)
    assert requeued is not None
    assert (requeued["state"], requeued["attempt"], requeued["exit_status"]) == ("QUEUED", 2, exits.RERUN)
    assert (requeued.get("reruns", 0), requeued["lost_runs"], requeued.get("rerun_requested")) == (1, 0, None)
    again = only_work(harness, job, 2)
    assert not harness.worker.heartbeat(again).rerun  # the new run is not killed in turn
    harness.worker.finish_job(again, Outcome(1))  # its one retry is still there: the rerun used none
    assert (harness.job(job["id"])["state"], harness.job(job["id"])["attempt"]) == ("QUEUED", 3)


@pytest.mark.parametrize("status", [0, 1])
def test_a_run_that_ends_on_its_own_after_the_request_is_requeued_all_the_same(harness, status):
    """qrerun answered 0, then the job exited before its worker looked: the rerun stands (as PBS)."""
    job = harness.submit()
    run = harness.claim()
    rerun(harness, job)
    ended = harness.worker.finish_job(run, Outcome(status))
    assert ended is not None and (ended["state"], ended["attempt"], ended["exit_status"]) == ("QUEUED", 2, -11)
    only_work(harness, job, 2)


def test_a_stopping_worker_hands_back_a_rerun_job_at_its_new_attempt(harness):
    job = harness.submit()
    run = harness.claim()
    rerun(harness, job)
    harness.worker.give_back(run)
    doc = harness.job(job["id"])
    assert (doc["state"], doc["attempt"], doc["run_count"]) == ("QUEUED", 2, 1)
    only_work(harness, job, 2)


def assert_rerun_after_loss(doc):
    assert (doc["state"], doc["exit_status"], doc.get("reruns", 0)) == ("QUEUED", exits.RERUN, 1), doc["reason"]
    assert doc["reason"].startswith("rerun requested by alice; re-queued as attempt") and "lost" in doc["reason"]


def test_a_forced_rerun_of_a_job_not_rerunnable_whose_worker_is_lost_is_rerun_not_failed(harness):
    """Lost-run recovery of a flagged run re-queues it as the rerun: a -r n job forced to rerun is not
    failed with -20 (JOB_EXEC_RERUN_MS_FAIL)."""
    job = harness.submit(rerunnable=False)
    harness.claim()
    with pytest.raises(Conflict, match="not rerunnable"):
        rerun(harness, job)
    assert harness.job(job["id"]).get("rerun_requested") is None
    harness.scheduler.rerun(job["id"], ALICE, force=True)  # qrerun -W force
    harness.lose_lease()
    assert_rerun_after_loss(harness.job(job["id"]))
    only_work(harness, job, 2)


def test_a_rerun_job_whose_worker_is_lost_is_not_held_for_too_many_runs(harness):
    job = harness.submit()
    for _ in range(exits.MAX_RUNS - 1):
        harness.claim()
        harness.lose_lease()
    harness.claim()
    rerun(harness, job)
    harness.lose_lease()
    doc = harness.job(job["id"])
    assert_rerun_after_loss(doc)
    assert (doc["run_count"], doc["attempt"]) == (exits.MAX_RUNS, exits.MAX_RUNS + 1)


def test_qdel_wins_over_qrerun_before_or_after(harness):
    after, before = harness.submit(), harness.submit()
    runs = {harness.claim().job["id"]: None, harness.claim().job["id"]: None}
    assert set(runs) == {after["id"], before["id"]}
    rerun(harness, after)
    harness.scheduler.cancel(after["id"], ALICE)  # qdel after qrerun
    harness.scheduler.cancel(before["id"], ALICE)
    with pytest.raises(Conflict, match="being deleted"):
        rerun(harness, before)  # qrerun after qdel
    harness.lose_lease()
    for job in (after, before):
        doc = harness.job(job["id"])
        assert (doc["state"], doc["attempt"], doc.get("reruns", 0)) == ("CANCELLED", 1, 0)
    assert harness.claim() is None


def test_a_killed_rerun_whose_qdel_came_meanwhile_ends_cancelled(harness):
    job = harness.submit()
    run = harness.claim()
    rerun(harness, job)
    harness.scheduler.cancel(job["id"], ALICE)
    harness.worker.finish_job(run, KILLED)  # the worker had killed it for the rerun
    assert harness.job(job["id"])["state"] == "CANCELLED"
    assert harness.claim() is None


def test_qrerun_of_a_job_not_running_changes_nothing(harness):
    job = harness.submit()
    with pytest.raises(Conflict, match="only running jobs"):
        rerun(harness, job)
    assert harness.job(job["id"])["version"] == job["version"]

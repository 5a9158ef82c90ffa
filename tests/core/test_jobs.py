"""Single jobs through the state machine: submit, run, retry, lose, cancel, hold, release."""

import time

import pytest

from hyperbatch.core import exits
from hyperbatch.services.dispatch import Dispatcher, Outcome
from hyperbatch.core.errors import JobFinished, Conflict, Forbidden, SpecError
from hyperbatch.services.scheduler import Caller

ALICE = Caller("alice")


def test_a_job_runs_to_success(harness):
    job = harness.submit(name="ok")
    assert job["state"] == "QUEUED"
    run = harness.claim()
    assert harness.job(job["id"])["state"] == "RUNNING"
    assert harness.job(job["id"])["exec_host"] == "us-east-1/w-test"
    harness.worker.finish_job(run, Outcome(0))
    done = harness.job(job["id"])
    assert (done["state"], done["exit_status"], done["run_count"]) == ("SUCCEEDED", 0, 1)
    assert harness.backend.queue.in_flight("batch") == 0 and harness.backend.queue.backlog("batch") == 0


def test_script_directives_apply_and_request_fields_win(harness):
    script = "#!/bin/bash\n#PBS -N fromscript\n#PBS -q west\n#PBS -l walltime=00:10:00\n#HYPER --retries 4\necho hi\n"
    job = harness.submit(script=script, command=None, name="fromrequest")
    assert (job["name"], job["queue"], job["walltime"], job["max_attempts"]) == ("fromrequest", "west", 600, 5)


def test_a_failed_attempt_is_retried_then_fails_with_its_reason(harness):
    job = harness.submit(max_attempts=2)
    harness.run_job(status=3)
    again = harness.job(job["id"])
    assert (again["state"], again["attempt"]) == ("QUEUED", 2)
    assert "attempt 1 failed (exit status 3)" in again["reason"]
    harness.run_job(status=3)
    final = harness.job(job["id"])
    assert (final["state"], final["exit_status"], final["run_count"]) == ("FAILED", 3, 2)
    assert final["reason"] == "exit status 3 after 2 attempts"


def test_a_lost_worker_reruns_a_rerunnable_job_without_using_a_retry(harness):
    job = harness.submit()  # no retries: a non-zero exit would be final
    harness.claim()
    harness.lose_lease()
    requeued = harness.job(job["id"])
    assert (requeued["state"], requeued["attempt"], requeued["lost_runs"]) == ("QUEUED", 2, 1)
    assert "lost" in requeued["reason"] and "requeued" in requeued["reason"]
    harness.run_job(status=0)
    done = harness.job(job["id"])
    assert (done["state"], done["run_count"]) == ("SUCCEEDED", 2)


def test_a_lost_worker_with_retries_left_still_uses_none(harness):
    job = harness.submit(max_attempts=2)  # --retries 1
    harness.claim()
    harness.lose_lease()
    harness.run_job(status=3)  # the first non-zero exit: the one retry
    assert harness.job(job["id"])["state"] == "QUEUED"
    harness.run_job(status=3)
    final = harness.job(job["id"])
    assert (final["state"], final["exit_status"], final["run_count"]) == ("FAILED", 3, 3)


def test_a_lost_worker_fails_a_job_that_is_not_rerunnable(harness):
    job = harness.submit(rerunnable=False)
    harness.claim()
    harness.lose_lease()
    failed = harness.job(job["id"])
    assert (failed["state"], failed["exit_status"]) == ("FAILED", exits.WORKER_LOST)
    assert "not rerunnable" in failed["reason"] and "lost" in failed["reason"]


def test_a_job_lost_too_often_is_held_as_pbs_holds_it(harness):
    job = harness.submit()
    for _ in range(exits.MAX_RUNS):
        harness.claim()
        harness.lose_lease()
    held = harness.job(job["id"])
    assert (held["state"], held["run_count"]) == ("HELD", exits.MAX_RUNS)
    assert held["reason"].startswith("job held, too many failed attempts to run")
    harness.scheduler.release(job["id"], ALICE)
    harness.run_job()
    assert harness.job(job["id"])["state"] == "SUCCEEDED"


def test_a_non_zero_exit_is_final_by_default(harness):
    job = harness.submit()
    harness.run_job(status=1)
    final = harness.job(job["id"])
    assert (final["state"], final["exit_status"], final["run_count"], final["max_attempts"]) == ("FAILED", 1, 1, 1)


def test_a_late_finish_after_recovery_changes_nothing(harness):
    job = harness.submit(max_attempts=3)
    stale_run = harness.claim()
    harness.lose_lease()
    fresh = harness.claim()
    assert harness.worker.finish_job(stale_run, Outcome(0)) is None  # the lost worker reports late
    assert harness.job(job["id"])["state"] == "RUNNING"
    harness.worker.finish_job(fresh, Outcome(0))
    assert harness.job(job["id"])["state"] == "SUCCEEDED"


def test_a_duplicate_item_never_starts_a_job_twice(harness):
    job = harness.submit()
    harness.backend.queue.send("batch", job["id"], 0, 1, 1)  # a duplicate delivery
    first = harness.claim()
    second = harness.claim()
    assert first is not None and second is None
    assert harness.job(job["id"])["run_count"] == 1


def test_cancel_of_a_queued_job_is_immediate(harness):
    job = harness.submit()
    cancelled = harness.scheduler.cancel(job["id"], ALICE)
    assert (cancelled["state"], cancelled["reason"]) == ("CANCELLED", "cancelled by alice")
    assert harness.claim() is None


def test_cancel_of_a_running_job_is_seen_at_the_heartbeat(harness):
    job = harness.submit()
    run = harness.claim()
    flagged = harness.scheduler.cancel(job["id"], ALICE)
    assert flagged["state"] == "RUNNING" and flagged["reason"] == "cancel requested by alice"
    assert harness.worker.heartbeat(run).cancel_all
    harness.worker.finish_job(run, Outcome(271, "cancelled", cancelled=True))
    final = harness.job(job["id"])
    assert (final["state"], final["reason"]) == ("CANCELLED", "cancelled by alice")


def test_a_job_that_ends_after_its_cancel_was_accepted_ends_cancelled_whatever_it_returned(harness):
    """Defect 4: qdel answered 0, then the job ended before the next heartbeat."""
    succeeding, failing = harness.submit(), harness.submit(max_attempts=3)
    runs = [harness.claim(), harness.claim()]
    for job in (succeeding, failing):
        assert harness.scheduler.cancel(job["id"], ALICE)["state"] == "RUNNING"  # accepted: qdel exits 0
    harness.worker.finish_job(runs[0], Outcome(0))
    harness.worker.finish_job(runs[1], Outcome(1, "exit status 1"))  # not re-queued for attempt 2 either
    for job, status in ((succeeding, 0), (failing, 1)):
        done = harness.job(job["id"])
        assert (done["state"], done["exit_status"], done["attempt"]) == ("CANCELLED", status, 1)
        assert done["reason"] == "cancelled by alice"
    assert harness.claim() is None


def test_a_cancel_that_comes_after_the_end_is_told_the_job_finished(harness):
    job = harness.submit()
    run = harness.claim()
    harness.worker.finish_job(run, Outcome(0))
    with pytest.raises(JobFinished, match="Job has finished"):
        harness.scheduler.cancel(job["id"], ALICE)
    assert harness.job(job["id"])["state"] == "SUCCEEDED"


def test_a_cancelled_job_given_back_or_lost_ends_cancelled_not_requeued(harness):
    given, lost = harness.submit(), harness.submit(max_attempts=3)
    given_run, _ = harness.claim(), harness.claim()
    harness.scheduler.cancel(given["id"], ALICE)
    harness.scheduler.cancel(lost["id"], ALICE)
    harness.worker.give_back(given_run)
    harness.lose_lease()
    assert harness.job(given["id"])["state"] == harness.job(lost["id"])["state"] == "CANCELLED"
    assert harness.claim() is None


def test_cancel_of_a_finished_job_is_refused(harness):
    job = harness.submit()
    harness.run_job()
    with pytest.raises(JobFinished, match="Job has finished"):
        harness.scheduler.cancel(job["id"], ALICE)


def test_hold_and_release(harness):
    job = harness.submit()
    held = harness.scheduler.hold(job["id"], ALICE)
    assert held["state"] == "HELD"
    assert harness.claim() is None  # the queued item is dropped while held
    released = harness.scheduler.release(job["id"], ALICE)
    assert released["state"] == "QUEUED"
    harness.run_job()
    assert harness.job(job["id"])["state"] == "SUCCEEDED"
    with pytest.raises(JobFinished, match="has finished"):  # PBS: Job has finished (35)
        harness.scheduler.release(job["id"], ALICE)
    other = harness.submit()
    with pytest.raises(Conflict, match="not held"):
        harness.scheduler.release(other["id"], ALICE)
    assert harness.scheduler.hold(other["id"], ALICE)["state"] == "HELD"
    assert harness.scheduler.hold(other["id"], ALICE)["state"] == "HELD"  # again: nothing changes, as PBS


def test_submitted_held(harness):
    job = harness.submit(hold=True)
    assert job["state"] == "HELD" and harness.claim() is None


def test_others_jobs_are_hidden(harness):
    job = harness.submit()
    with pytest.raises(Forbidden):
        harness.scheduler.get(job["id"], Caller("mallory"))
    with pytest.raises(Forbidden):
        harness.scheduler.cancel(job["id"], Caller("mallory"))
    with pytest.raises(Forbidden):
        harness.scheduler.list(Caller("mallory"), owner="alice")
    assert harness.scheduler.list(Caller("mallory")).items == []
    assert harness.scheduler.get(job["id"], Caller("root", admin=True))["id"] == job["id"]


@pytest.mark.parametrize("request_, message", [
    ({"queue": "nope"}, "unknown queue 'nope'"),
    ({"definition": "nope"}, "unknown definition 'nope'"),
    ({"array": "5-1"}, "array range"),
    ({"depend": "afterfoo:999"}, "afterok"),
    ({"depend": "afterok:999.host"}, "no job 999"),
    ({"walltime": "abc"}, "walltime"),
    ({"env": {"1BAD": "x"}}, "environment variable name"),
    ({"command": None}, "exactly one of"),
    ({"script": "#PBS -Z\n", "command": None}, "unknown option '-Z'"),
        ({"script": "#PBS -I\n", "command": None}, "interactive jobs are not supported"),
        ({"resources": {"nodes": "2"}}, "nodes"),
])
def test_bad_requests_change_nothing(harness, request_, message):
    with pytest.raises(SpecError, match=message):
        harness.submit(**request_)
    assert harness.backend.store.query(owner="alice").items == []
    assert harness.backend.queue.backlog("batch") == 0


def test_one_bad_job_in_a_batch_stores_none(harness):
    with pytest.raises(SpecError, match="job #2"):
        harness.scheduler.submit([{"command": ["true"]}, {"command": ["true"], "queue": "nope"}], ALICE)
    assert harness.backend.store.query(owner="alice").items == []


def test_a_batch_is_stored_and_queued(harness):
    docs = harness.scheduler.submit([{"command": ["true"]} for _ in range(50)], ALICE)
    assert len({d["id"] for d in docs}) == 50
    assert harness.backend.queue.backlog("batch") == 50


def test_a_stopping_worker_hands_its_job_back_without_using_an_attempt(harness):
    job = harness.submit(max_attempts=1)
    harness.worker.give_back(harness.claim())
    back = harness.job(job["id"])
    assert (back["state"], back["attempt"], back["run_count"]) == ("QUEUED", 1, 0)
    assert "stopped; re-queued" in back["reason"]
    harness.run_job()
    assert harness.job(job["id"])["state"] == "SUCCEEDED"


def test_a_stopping_worker_finishes_a_cancel_it_was_asked_for(harness):
    job = harness.submit()
    run = harness.claim()
    harness.scheduler.cancel(job["id"], ALICE)
    harness.worker.give_back(run)
    assert harness.job(job["id"])["state"] == "CANCELLED"
    assert harness.claim() is None


def test_a_lost_lease_of_a_job_whose_worker_beats_is_left_to_it_and_checked_a_lease_later(harness):
    job = harness.submit(max_attempts=3)
    run = harness.claim(lease=0.05)
    time.sleep(0.1)  # the lease ran out, but the job's heartbeat is fresh
    queue = harness.backend.queue
    expired = queue.expired(time.time())
    assert [i.id for i in expired] == [run.item.id]
    watcher = Dispatcher(harness.backend.store, queue, "reconciler", "local", 30)
    watcher.recover_lost(expired[0])  # now, not an hour later: the worker is alive
    still = harness.job(job["id"])
    assert (still["state"], still["attempt"], still["run_count"]) == ("RUNNING", 1, 1)
    assert queue.expired(time.time()) == []  # pushed out by one lease ...
    assert [i.id for i in queue.expired(time.time() + 31)] == [run.item.id]  # ... then looked at again
    assert harness.claim(worker=watcher) is None  # never handed to another worker
    assert not harness.worker.heartbeat(run).lease_lost  # the item is still its worker's lease
    harness.worker.finish_job(run, Outcome(0))
    assert harness.job(job["id"])["state"] == "SUCCEEDED"
    assert queue.in_flight("batch") == 0 and queue.backlog("batch") == 0


def test_a_lease_checked_again_is_recovered_once_its_worker_is_silent(harness):
    job = harness.submit(max_attempts=3)
    run = harness.claim()
    harness.worker.recover_lost(run.item)  # alive: its lease is renewed, nothing else
    assert harness.job(job["id"])["attempt"] == 1
    harness.lose_lease()  # an hour later: the item is listed again, its heartbeat stale
    doc = harness.job(job["id"])
    assert (doc["state"], doc["attempt"]) == ("QUEUED", 2) and "lost" in doc["reason"]
    assert harness.worker.heartbeat(run).lease_lost
    assert harness.claim().attempt == 2


def test_a_heartbeat_after_the_job_was_taken_back_stops_the_worker(harness):
    job = harness.submit(max_attempts=3)
    run = harness.claim()
    harness.lose_lease()
    assert harness.job(job["id"])["attempt"] == 2
    assert harness.worker.heartbeat(run).lease_lost


def test_ids_are_the_store_s_sequence_and_a_batch_is_one_run(harness):
    first = harness.submit()["id"]
    batch = harness.scheduler.submit([{"command": ["true"]}] * 5, ALICE)
    after = harness.submit()["id"]
    numbers = [int(first), *(int(d["id"]) for d in batch), int(after)]
    assert numbers == list(range(numbers[0], numbers[0] + 7))  # local mode: every number in order, no gaps

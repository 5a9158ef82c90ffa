"""Fencing on AWS, where no process can kill another machine's job: a worker that cannot renew its lease
kills its own job before the lease ends, the run is taken back only after that, and a run whose lease was
taken records nothing (its writes are conditional on DynamoDB)."""

import threading
import time

import pytest

from hyperbatch.adapters.aws.stream import StreamSentQueue
from hyperbatch.services.dispatch import Dispatcher, Outcome
from tests.faults import ledger as ledgers


def runs_of(path, job_id):
    return [r for r in ledgers.runs(path) if r.job == job_id]


def cut_off(agent, how: str, release: threading.Event) -> None:
    """From now on this worker cannot reach the store: its renewals (registrations) and looks fail (the
    table out of reach) or hang (a request never answered)."""
    def failing(*args, **kwargs):
        raise RuntimeError("DynamoDB out of reach")

    def hanging(*args, **kwargs):
        release.wait(60)
        raise RuntimeError("timed out")

    for beat in ("heartbeat", "check", "register"):
        setattr(agent.dispatcher, beat, failing if how == "fail" else hanging)


def promised_until(box, doc: dict) -> float:
    """The end of the lease the store holds for the job's run: its beat's, or its registration's."""
    lease = box.config.settings.lease_seconds
    entry = box.runs.entry(doc["exec_host"])
    registered = entry["at"] + entry["lease"] if entry and entry["job_id"] == doc["id"] else 0.0
    return max(doc["heartbeat_at"] + lease, registered)


@pytest.mark.parametrize("how", ["fail", "hang"])
def test_a_worker_that_cannot_renew_kills_its_job_before_its_lease_ends(box, how):
    ledger = box.work_root / "ledger.csv"
    job = box.submit(script=ledgers.TASK, max_attempts=2,
                 env={"LEDGER": str(ledger), "TICKS": "150", "RETRY_TICKS": "5"})
    frozen = box.start_worker(worker_id="cut-off", env={"HYPER_IDLE_TIMEOUT": "30"})
    box.wait_for("the first run to start", lambda: runs_of(ledger, job["id"]), timeout=20)
    release = threading.Event()
    cut_off(frozen.agent, how, release)
    try:
        first = box.wait_for("the first run's job to be killed",
                             lambda: (r := runs_of(ledger, job["id"])[0]) and not _alive(r.pid) and r, timeout=20)
        # No beat or registration of this worker lands any more.
        assert first.end < promised_until(box, box.job(job["id"])), "the job outlived its lease"
        assert not first.done
        # The run is taken back once its lease ran out: by SQS's redelivery to another worker, or (a
        # registered run) by the reconciler.
        box.start_worker(worker_id="other", env={"HYPER_IDLE_TIMEOUT": "15"})
        taken = box.wait_for("the run to be taken back",
                             lambda: box.reconcile() and (d := box.job(job["id"]))["attempt"] == 2 and d,
                             timeout=30, every=0.5)
        assert "lost" in taken["reason"]  # by the recovery: the cut-off worker recorded nothing
        done = box.wait_state(job["id"], "SUCCEEDED", "FAILED", timeout=30)
    finally:
        release.set()
    assert (done["state"], done["attempt"], done["run_count"]) == ("SUCCEEDED", 2, 2)
    runs = ledgers.check(ledger, {job["id"]: None})
    assert [(r.attempt, r.done) for r in runs] == [(1, False), (2, True)]


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


# ---- a run that comes back after its lease was taken ------------------------------------------

def dispatcher(box, name, clock=time.time):
    return Dispatcher(box.store, StreamSentQueue(box.backend.queue), name, "us-east-1",
                      box.config.settings.lease_seconds, clock=clock)


def claim(box, name, max_tasks=1):
    lease = box.config.settings.lease_seconds
    return box.wait_for("a message", lambda: box.backend.queue.claim("batch", name, max_tasks, lease), timeout=10)


def taken_back(box, run):
    """SQS hands the run's message to another worker, which finds the run silent (an hour on) and takes it."""
    box.sqs.change_message_visibility(QueueUrl=box.plane.queue_urls["batch"], ReceiptHandle=run.item.receipt,
                                      VisibilityTimeout=0)
    later = dispatcher(box, "later", clock=lambda: time.time() + 3600)
    for _ in range(10):
        item = claim(box, "later", 8)
        if item.id == run.item.id:
            break
        box.backend.queue.release(item)  # another part of the array: not the one we are after
    assert item.id == run.item.id and item.redelivered
    later.recover_lost(item)


def test_a_job_run_whose_lease_was_taken_records_nothing(box):
    job = box.submit(command=["true"], max_attempts=2)
    first = dispatcher(box, "first")
    run = first.start(claim(box, "first"))
    taken_back(box, run)
    before = box.job(job["id"])
    assert (before["state"], before["attempt"]) == ("QUEUED", 2)
    assert first.heartbeat(run).lease_lost
    assert first.finish_job(run, Outcome(0)) is None
    first.give_back(run)
    assert box.job(job["id"]) == before


@pytest.mark.parametrize("late", ["heartbeat", "finish", "give back"])
def test_a_chunk_whose_lease_was_taken_records_nothing_not_even_a_heartbeat(box, late):
    array = box.submit(command=["true"], array="1-4", max_attempts=2)
    first = dispatcher(box, "first")
    run = first.start(claim(box, "first", 4))
    assert len(run.positions) == 4
    taken_back(box, run)
    before = box.job(array["id"])
    assert (before["chunks"], before["running"], before["pending"]) == ({}, 0, 4)  # its tasks run again
    if late == "heartbeat":
        assert first.heartbeat(run).lease_lost
    elif late == "finish":
        first.finish_tasks(run, {p: Outcome(0) for p in run.positions})
    else:
        first.give_back(run)
    assert box.job(array["id"]) == before

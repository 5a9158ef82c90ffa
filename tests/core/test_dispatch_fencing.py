"""Fencing in the dispatcher: a silent worker's run is taken back only after a whole lease, its job is
killed first where the recovering process can reach it (`fence`), and the run records nothing after."""

import time

import pytest

from hyperbatch.services.dispatch import Dispatcher, Outcome

LEASE = 30


class Later:
    """A reconciler whose clock reads `ahead` seconds later, with a fence that writes down what it was asked
    to kill and what the store said about the run at that moment."""

    def __init__(self, harness, ahead):
        self.harness, self.killed = harness, []
        store = harness.backend.store
        self.dispatcher = Dispatcher(store, harness.backend.queue, "reconciler", "local", LEASE,
                                     clock=lambda: time.time() + ahead, fence=self.fence)

    def fence(self, host, job_id, item_id, attempt):
        doc = self.harness.backend.store.get(job_id)
        self.killed.append((host, job_id, item_id, attempt, doc["state"], sorted(doc["chunks"])))

    def recover(self):
        for item in self.harness.backend.queue.expired(self.dispatcher.clock()):
            self.dispatcher.recover_lost(item)


def test_a_run_silent_for_less_than_a_lease_is_left_to_its_worker(harness):
    job = harness.submit(max_attempts=2)
    run = harness.claim(lease=0.0)  # its item's lease ran out at once; its start was its last beat
    later = Later(harness, LEASE - 1)
    later.recover()
    doc = harness.job(job["id"])
    assert (doc["state"], doc["attempt"], later.killed) == ("RUNNING", 1, [])
    assert harness.worker.finish_job(run, Outcome(0))["state"] == "SUCCEEDED"


def test_a_silent_workers_job_is_killed_before_its_run_is_taken_back(harness):
    job = harness.submit(max_attempts=2)
    run = harness.claim()
    later = Later(harness, 3600)
    later.recover()
    assert later.killed == [("us-east-1/w-test", job["id"], run.item.id, 1, "RUNNING", [])]  # killed first
    doc = harness.job(job["id"])
    assert (doc["state"], doc["attempt"]) == ("QUEUED", 2)


def test_a_silent_workers_chunk_is_killed_before_it_is_settled(harness):
    array = harness.submit(array="1-4", max_attempts=2)
    run = harness.claim()
    later = Later(harness, 3600)
    later.recover()
    assert later.killed == [("us-east-1/w-test", array["id"], run.item.id, 1, "RUNNING", [run.item.id])]
    doc = harness.job(array["id"])
    assert (doc["pending"], doc["running"], doc["chunks"]) == (4, 0, {})  # its tasks run again


def test_work_claimed_and_never_started_is_handed_out_again_with_nothing_to_kill(harness):
    harness.submit()
    harness.backend.queue.claim("batch", "w-test", 1, 30)
    later = Later(harness, 3600)
    later.recover()
    assert later.killed == []
    assert harness.claim().attempt == 1


def test_a_job_run_that_comes_back_after_it_was_taken_records_nothing(harness):
    job = harness.submit(max_attempts=2)
    run = harness.claim()
    Later(harness, 3600).recover()
    before = harness.job(job["id"])
    assert harness.worker.heartbeat(run).lease_lost
    assert harness.worker.finish_job(run, Outcome(0)) is None
    harness.worker.give_back(run)
    assert harness.job(job["id"]) == before


@pytest.mark.parametrize("late", ["heartbeat", "finish", "give back"])
def test_a_chunk_that_comes_back_after_it_was_settled_records_nothing(harness, late):
    array = harness.submit(array="1-4", max_attempts=2)
    run = harness.claim()
    Later(harness, 3600).recover()
    before, waiting = harness.job(array["id"]), harness.backend.queue.backlog("batch")
    if late == "heartbeat":
        assert harness.worker.heartbeat(run).lease_lost
    elif late == "finish":
        harness.worker.finish_tasks(run, {p: Outcome(0) for p in run.positions})
    else:
        harness.worker.give_back(run)
    assert harness.job(array["id"]) == before  # not even a heartbeat of the settled chunk
    assert harness.backend.queue.backlog("batch") == waiting  # and no work sent

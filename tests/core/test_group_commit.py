"""A run's result and its item's ack are one commit in local mode (Dispatcher.together, Database.together).

A worker killed between the two (here: its ack dies half way) leaves neither: the job is still
RUNNING at its attempt and its item still leased, so it is settled exactly once, by the worker if it
lives or by lost-worker recovery if not; never recorded finished with its work left to run again.
"""

from __future__ import annotations

import pytest

from hyperbatch.adapters.local.sqlite import SqliteWorkQueue
from hyperbatch.services.dispatch import Dispatcher, Outcome
from tests.core.conftest import ALICE


class Killed(BaseException):
    """What the process dying looks like to the code it was running."""


class DiesInTheAck(SqliteWorkQueue):
    def ack(self, item):
        super().ack(item)  # its delete is written...
        raise Killed()  # ...and the process dies before the commit


def dying_worker(harness) -> Dispatcher:
    backend = harness.backend
    return Dispatcher(backend.store, DiesInTheAck(backend.db), harness.worker.worker, "us-east-1", 30,
                      together=backend.db.together)


def test_a_job_whose_worker_dies_between_its_result_and_its_ack_keeps_neither(harness):
    job_id = harness.submit()["id"]
    run = harness.claim()
    with pytest.raises(Killed):
        dying_worker(harness).finish_job(run, Outcome(0))
    job = harness.job(job_id)
    assert (job["state"], job["attempt"], job["exit_status"]) == ("RUNNING", 1, None)
    assert harness.backend.queue.in_flight("batch") == 1  # its item: still leased, to come back if no one acks it
    harness.lose_lease()  # the worker is gone: recovered as lost, to run again
    job = harness.job(job_id)
    assert (job["state"], job["attempt"]) == ("QUEUED", 2)
    harness.run_job()
    job = harness.job(job_id)
    assert (job["state"], job["run_count"]) == ("SUCCEEDED", 2)
    assert harness.backend.queue.in_flight("batch") == 0 and harness.backend.queue.backlog("batch") == 0


def test_a_chunk_whose_worker_dies_between_its_results_and_its_ack_keeps_neither(harness):
    job_id = harness.submit(array="1-4")["id"]
    run = harness.claim(max_tasks=4)
    results = {pos: Outcome(0) for pos in run.positions}
    with pytest.raises(Killed):
        dying_worker(harness).finish_tasks(run, results)
    doc = harness.job(job_id)
    assert (doc["state"], doc["succeeded"], doc["running"]) == ("RUNNING", 0, 4)
    harness.worker.finish_tasks(run, results)  # the worker lived after all: its results count once
    doc = harness.job(job_id)
    assert (doc["state"], doc["succeeded"], doc["running"]) == ("SUCCEEDED", 4, 0)
    assert harness.backend.queue.in_flight("batch") == 0


def test_a_write_refused_inside_a_commit_undoes_only_itself(harness):
    """A conditional write that finds the job moved (here: a cancel came first) changes nothing, and
    what the same commit writes next stands: the run ends CANCELLED and its item is acked, together."""
    job_id = harness.submit()["id"]
    run = harness.claim()
    harness.scheduler.cancel(job_id, ALICE)
    harness.worker.finish_job(run, Outcome(0))
    job = harness.job(job_id)
    assert (job["state"], job["exit_status"]) == ("CANCELLED", 0)
    assert harness.backend.queue.in_flight("batch") == 0

"""Exactly-once release in local mode: the daemon's events loop, in-process over a real SQLite home.

An event is marked done only after its handling committed; one that fails
(e.g. `database is locked` while another process holds the write lock) is
tried again with back-off while later events go on, and after its last try
it is parked where `hyper local status` counts it, never dropped.
"""

import json
import sqlite3
import threading
import urllib.request
from pathlib import Path

import pytest

from hyperbatch.services.dispatch import Dispatcher, Outcome
from hyperbatch.services.scheduler import Caller
from hyperbatch.wiring.daemon import Daemon
from tests.polling import wait_for

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configurations"
ALICE = Caller("alice")


@pytest.fixture
def daemon(tmp_path):
    """A daemon whose events loop runs (no scaler, no workers: the test runs jobs itself)."""
    d = Daemon(tmp_path / "home", CONFIG_DIR, 0)
    loop = threading.Thread(target=d._events, daemon=True)
    loop.start()
    yield d
    d.stopping.set()
    loop.join(5)
    d.server.server_close()


def run_to_end(d, job_id: str, status: int = 0) -> None:
    """A worker claims the job and finishes it (the queue holds only what the test submitted)."""
    worker = Dispatcher(d.backend.store, d.backend.queue, "w", "us-east-1", lease_seconds=30)
    while True:
        item = d.backend.queue.claim("batch", "w", 1, 30)
        assert item is not None, f"no work for {job_id}"
        run = worker.start(item)
        if run is not None and run.job["id"] == job_id:
            worker.finish_job(run, Outcome(status))
            return


def failing_release(d, child_id: str, times: int):
    """Make the release of `child_id` fail `times` times as a locked database does; returns the tries seen."""
    real, tries = d.scheduler.reevaluate, []

    def reevaluate(job_id):
        if job_id == child_id:
            tries.append(job_id)
            if len(tries) <= times:
                raise sqlite3.OperationalError("database is locked")
        return real(job_id)

    d.scheduler.reevaluate = reevaluate
    return tries


def state(d, job_id: str) -> str:
    return d.backend.store.get(job_id)["state"]


def test_a_release_that_fails_once_is_retried_even_after_later_events_were_handled(daemon):
    """Defect 2: the failed event must not be passed over and trimmed by the next good batch."""
    s = daemon.scheduler
    parent = s.submit([{"command": ["true"]}], ALICE)[0]
    child = s.submit([{"command": ["true"], "depend": f"afterok:{parent['id']}"}], ALICE)[0]
    tries = failing_release(daemon, child["id"], times=1)
    run_to_end(daemon, parent["id"])
    wait_for(lambda: tries, 10, 0.02, "the release to be tried")
    later = s.submit([{"command": ["true"]}], ALICE)[0]  # later events are handled meanwhile
    run_to_end(daemon, later["id"])
    wait_for(lambda: state(daemon, child["id"]) == "QUEUED", 10, 0.05, "the dependent to be released")
    assert len(tries) == 2
    wait_for(lambda: not daemon.backend.store.due_events(float("inf")), 10, 0.05, "every event to be done")


def test_an_event_failing_every_try_is_parked_shown_and_released_after_a_restart(daemon, monkeypatch):
    s = daemon.scheduler
    daemon.event_tries = 2
    parent = s.submit([{"command": ["true"]}], ALICE)[0]
    child = s.submit([{"command": ["true"], "depend": f"afterok:{parent['id']}"}], ALICE)[0]
    tries = failing_release(daemon, child["id"], times=2)
    run_to_end(daemon, parent["id"])
    wait_for(lambda: daemon.backend.store.parked_events() == 1, 10, 0.05, "the event to be parked")
    assert len(tries) == 2 and state(daemon, child["id"]) == "WAITING"

    # GET /queues says so (what `hyper local status` prints as "parked events: 1").
    server = threading.Thread(target=daemon.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    server.start()
    try:
        request = urllib.request.Request(f"{daemon.url}/queues", headers={"Authorization": f"Bearer {daemon.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["parked_events"] == 1
    finally:
        daemon.server.shutdown()

    # The next start gives it another round; the trouble is gone by then, and the child is released.
    assert daemon.backend.store.unpark_events() == 1
    wait_for(lambda: state(daemon, child["id"]) == "QUEUED", 10, 0.05, "the dependent to be released")
    assert daemon.backend.store.parked_events() == 0

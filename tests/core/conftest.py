"""An in-process scheduler over the local adapters: the rules, without processes or HTTP."""

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hyperbatch import config
from hyperbatch.adapters.local import open_local
from hyperbatch.services.dispatch import Dispatcher, Outcome
from hyperbatch.services.release import on_event
from hyperbatch.services.scheduler import Caller, Scheduler

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configurations"
ALICE = Caller("alice")


@dataclass
class Harness:
    scheduler: Scheduler
    worker: Dispatcher
    backend: object
    seq: int = 0

    def submit(self, caller=ALICE, **request):
        request.setdefault("command", ["true"])
        return self.scheduler.submit([request], caller)[0]

    def job(self, job_id):
        return self.backend.store.get(job_id)

    def claim(self, queue="batch", max_tasks=100, lease=30.0, worker=None):
        dispatcher = worker or self.worker
        item = self.backend.queue.claim(queue, dispatcher.worker, max_tasks, lease)
        return dispatcher.start(item) if item else None

    def run_job(self, status=0, **kw):
        run = self.claim(**kw)
        assert run is not None, "nothing to run"
        self.worker.finish_job(run, Outcome(status, f"exit status {status}"))
        self.deliver()
        return run

    def lose_lease(self):
        """An hour later: every lease has expired and every heartbeat is stale; the reconciler recovers."""
        later = Dispatcher(self.backend.store, self.backend.queue, "reconciler", "local", 30,
                           clock=lambda: time.time() + 3600)
        for item in self.backend.queue.expired(time.time() + 3600):
            later.recover_lost(item)
        self.deliver()

    def deliver(self):
        """Hand state-change events to dependency release, as the daemon's event loop does."""
        while True:
            batch = self.backend.store.events_after(self.seq)
            if not batch:
                return
            for self.seq, event in batch:
                on_event(self.scheduler, event)


@pytest.fixture
def harness(tmp_path):
    backend = open_local(tmp_path)
    cfg = config.load(CONFIG_DIR)
    scheduler = Scheduler(cfg, backend.store, backend.queue, backend.logs)
    worker = Dispatcher(backend.store, backend.queue, "w-test", "us-east-1", lease_seconds=30,
                        together=backend.db.together)  # as a local worker is built (hyperbatch.wiring.worker)
    return Harness(scheduler, worker, backend)

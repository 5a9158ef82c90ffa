"""The reconciler: lost leases back to the queue, jobs the queue lost back into it, deferred jobs (-a) released."""

from __future__ import annotations

import time

from hyperbatch.services.dispatch import Dispatcher
from hyperbatch.services.release import release_due
from hyperbatch.core.model import is_array
from hyperbatch.services.scheduler import Scheduler
from hyperbatch.core.states import JobState

GAP_GRACE_SECONDS = 5.0  # a submit writes the store first and the queue a moment later


def reconcile_once(scheduler: Scheduler, dispatcher: Dispatcher, check_gaps: bool = False) -> dict[str, int]:
    recovered = 0
    for item in scheduler.queue.expired(dispatcher.clock()):
        dispatcher.recover_lost(item)
        recovered += 1
    requeued = requeue_gaps(scheduler) if check_gaps else 0
    deferred = release_due(scheduler)
    return {"recovered": recovered, "requeued": requeued, "deferred": deferred}


def requeue_gaps(scheduler: Scheduler) -> int:
    """Queued jobs with no work item (a crash between the store write and the queue send) are sent again."""
    requeued, cutoff = 0, time.time() - GAP_GRACE_SECONDS
    for state in (JobState.QUEUED.value, JobState.RUNNING.value):
        token = None
        while True:
            page = scheduler.store.query(states=[state], limit=500, next=token)
            candidates = [
                d for d in page.items
                if d["submitted_at"] < cutoff and (d["state"] == JobState.QUEUED.value or is_array(d))
                and (not is_array(d) or d["pending"] > 0)
            ]
            have = scheduler.queue.jobs_with_work([d["id"] for d in candidates]) if candidates else set()
            for doc in candidates:
                if doc["id"] not in have:
                    scheduler.send_work([doc])
                    requeued += 1
            token = page.next
            if token is None:
                break
    return requeued

"""Dependency release, driven by state-change events (never by a scan), and the release of deferred jobs."""

from __future__ import annotations

import time

from hyperbatch.core.ports import Event
from hyperbatch.services.scheduler import Scheduler
from hyperbatch.core.states import JobState


def on_event(scheduler: Scheduler, event: Event) -> list[dict]:
    """A job reached a final state: release dependents whose conditions hold, cancel those that never can.

    Returns the dependents that changed; each change is itself an event, so a
    cancellation runs down a chain of afterok jobs one link at a time.
    """
    if not JobState(event.new_state).final:
        return []
    changed = []
    for child in scheduler.store.dependents(event.job_id):
        new = scheduler.reevaluate(child)
        if new is not None:
            changed.append(new)
    return changed


def release_due(scheduler: Scheduler, now: float | None = None, page: int = 500) -> int:
    """Release deferred jobs (`qsub -a`) whose execution time has come; the number released.

    The reconciler runs this on its timer (the local daemon every second or so, the
    reconciler function on its schedule), so a deferred job starts within one period of
    its time. Jobs that also wait for dependencies stay until those are met.
    """
    from hyperbatch.core import deferral

    now = time.time() if now is None else now
    released, token = 0, None
    while True:
        found = scheduler.store.query(states=[JobState.WAITING.value], limit=page, next=token)
        for doc in found.items:
            if doc.get("execution_time") is not None and deferral.eligible(doc["execution_time"], now):
                if scheduler.reevaluate(doc["id"]) is not None:
                    released += 1
        token = found.next
        if token is None:
            return released

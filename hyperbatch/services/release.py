"""Dependency release, driven by state-change events (never by a scan)."""

from __future__ import annotations

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

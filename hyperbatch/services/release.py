"""Dependency release, driven by state-change events (never by a scan), each handled exactly once in effect;
and the release of deferred jobs (qsub -a), by the reconciler's timer."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from hyperbatch.core import deferral
from hyperbatch.core.ports import Event, EventLog
from hyperbatch.services.scheduler import Scheduler
from hyperbatch.core.states import JobState

log = logging.getLogger("hyperbatch.release")

MAX_EVENT_TRIES = 8  # then the event is parked: kept, shown by `hyper local status`, tried again at the next start
FIRST_RETRY_SECONDS = 0.5  # doubling with each try: 0.5, 1, 2, ... 32 s, about a minute in all
LAST_RETRY_SECONDS = 60.0


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


@dataclass
class Drained:
    handled: int = 0
    failed: int = 0
    parked: int = 0


def retry_delay(tries: int) -> float:
    """Seconds before the next try of an event that has failed `tries` times."""
    return min(LAST_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** max(0, tries - 1))


def release_events(scheduler: Scheduler, events: EventLog, *, clock: Callable[[], float] = time.time,
                   max_tries: int = MAX_EVENT_TRIES, handled: Callable[[Event], None] | None = None,
                   limit: int = 1000) -> Drained:
    """Handle the due events of the local events table (`on_event`), each marked done only once its handling
    committed.

    Handling is idempotent (a release is a conditional write on the dependent
    being WAITING), so an event handled again after a crash, between its
    handling and `events_done`, changes nothing. One that fails is tried again
    after a back-off (`retry_delay`) while the events after it go on; after
    `max_tries` it is parked: kept, counted by `hyper local status`, never
    dropped. `handled` is called for each event handled (the daemon wakes its scaler).
    """
    out = Drained()
    done: list[int] = []
    try:
        for pending in events.due_events(clock(), limit):
            try:
                on_event(scheduler, pending.event)
            except Exception as exc:
                tries = pending.tries + 1
                park = tries >= max_tries
                error = f"{type(exc).__name__}: {exc}"
                if park:
                    log.error("event %d (job %s %s -> %s) parked after %d tries: %s", pending.seq, pending.event.job_id,
                              pending.event.old_state, pending.event.new_state, tries, error)
                else:
                    log.warning("event %d (job %s) failed (try %d of %d), retried in %gs: %s", pending.seq,
                                pending.event.job_id, tries, max_tries, retry_delay(tries), error)
                events.event_failed(pending.seq, error, clock() + retry_delay(tries), park)
                out.failed += 1
                out.parked += park
                continue
            done.append(pending.seq)
            if handled is not None:
                handled(pending.event)
    finally:
        events.events_done(done)  # if this fails, they are handled again: harmless
    out.handled = len(done)
    return out


def release_due(scheduler: Scheduler, now: float | None = None, page: int = 500) -> int:
    """Release deferred jobs (`qsub -a`) whose execution time has come; the number released.

    The reconciler runs this on its timer (the local daemon every second or so, the
    reconciler function on its schedule), so a deferred job starts within one period of
    its time. Jobs that also wait for dependencies stay until those are met.
    """
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

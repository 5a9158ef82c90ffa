"""What work a job's change makes runnable: the transactional outbox of the AWS adapters.

On AWS the Scheduler and the Dispatcher only write the store; the release
function reads every change from the table's stream (old and new document)
and sends what `to_send` says (hyperbatch.adapters.aws.stream). The store write and
the send can then never be torn apart by a crash: the stream delivers every
change at least once. Local mode sends directly, as before; for any
transition this function says what the core sends there (tests/unit/test_outbox.py),
except the tail of a range a claim narrows, which the queue adapter itself
sends back (`WorkQueue.split`).

Pure: no I/O, no boto3.
"""

from __future__ import annotations

from hyperbatch.core.model import is_array
from hyperbatch.core.pools import work_queue
from hyperbatch.core.states import JobState
from hyperbatch.core.tasks import RETRY_MAP, TaskMap, free_ranges, remove_range

SendItem = tuple[str, str, int, int, int, int]  # (queue, job_id, lo, hi, attempt, priority)

_LIVE = (JobState.QUEUED.value, JobState.RUNNING.value)


def to_send(old: dict | None, new: dict | None) -> list[SendItem]:
    """The work items a change of a job document from `old` to `new` makes runnable.

    `old` is None for a new job, `new` None for a deleted one. A plain job is
    sent when it becomes QUEUED at an attempt, or in a queue, it was not QUEUED
    at before. An array is sent what is sendable in `new` and was not in `old`:
    position ranges never handed out (attempt 1) and task retries (their
    attempt), but nothing while it is held, waiting, finished or being
    cancelled. A job moved to another queue (qmove) is sent there whole: what
    waits in the old queue is stale, and dropped by whoever claims it
    (Dispatcher.start checks the item's queue).
    """
    if new is None:
        return []
    if old is not None and work_queue(old) != work_queue(new):
        old = None
    if is_array(new):
        return _array_items(old, new)
    if new["state"] != JobState.QUEUED.value:
        return []
    if old is not None and old["state"] == JobState.QUEUED.value and old["attempt"] == new["attempt"]:
        return []
    return [(work_queue(new), new["id"], 0, 1, new["attempt"], new["priority"])]


def sendable(doc: dict | None) -> tuple[list[tuple[int, int]], dict[str, str]]:
    """An array's work that messages must stand for: (free position ranges, the pages of its retries
    (hyperbatch.core.tasks.RETRY_MAP: position -> attempt))."""
    if doc is None or doc["state"] not in _LIVE or doc["cancel_requested"]:
        return [], {}
    return free_ranges(doc["dispatched"], 0, doc["total"]), dict(doc.get(RETRY_MAP) or {})


def _array_items(old: dict | None, new: dict) -> list[SendItem]:
    free, retrying = sendable(new)
    was_free, was_retrying = sendable(old if old is not None and is_array(old) else None)
    queue, job_id, priority = work_queue(new), new["id"], new["priority"]
    items: list[SendItem] = []
    for lo, hi in free:
        parts = [[lo, hi]]
        for a, b in was_free:
            parts = [part for p in parts for part in remove_range([p], a, b)]
        items += [(queue, job_id, a, b, 1, priority) for a, b in parts]
    # Only pages whose text changed can hold a new retry: a change to a few tasks looks at a few pages.
    changed = [page for page, text in retrying.items() if was_retrying.get(page) != text]
    now, before = TaskMap({p: retrying[p] for p in changed}), TaskMap({p: was_retrying[p] for p in changed
                                                                      if p in was_retrying})
    again = [(queue, job_id, pos, pos + 1, attempt, priority)
             for pos, attempt in now.items() if pos < new["total"] and before.get(pos) != attempt]
    return items + sorted(again)

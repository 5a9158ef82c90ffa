"""The reconciler on AWS, where the queue (SQS) can neither list lost leases nor be searched.

Local mode's reconciler (hyperbatch.reconciler) asks the lease table for
expired leases and for jobs with no work item. SQS answers neither, so each
run (the reconciler function, once a minute) does three things instead:

1. Dead letters. A message received MAX_RECEIVE_COUNT times without being
   deleted lands in the queue's DLQ (a poison message: whatever handles it
   keeps crashing). Its job is marked FAILED, exit status -1, reason
   "dead-lettered after 5 receives" (for an array: the tasks the message
   carried and nothing else), unless the job moved on or its worker still
   beats; then the letter is deleted.

2. Stale runs. A RUNNING job whose heartbeat is older than half a lease (an
   array's chunk likewise) goes to `Dispatcher.recover_stale`, which re-queues
   it as a new message or fails it, as `recover_lost` does for a redelivered
   message. SQS redelivers a dead worker's message by itself, but not when a
   duplicate copy of it was acked while the first worker still ran: then
   nothing would ever come back for the job. Only RUNNING jobs are read (about
   one per worker), through the by_queue_state index.

3. Lost sends. The store is written before the queue (submit, release, retry,
   recovery), so a process that dies in between leaves QUEUED work with no
   message, and nothing on SQS can say which. Work that sits unchanged for
   `grace_seconds` (a QUEUED job at the same version; an array with pending
   tasks whose dispatched ranges and retries did not move) is sent again,
   then again after 2x, 4x, ... the grace while it stays unchanged. A
   duplicate is harmless (starting work is a conditional write; array
   positions are handed out once), but costs a receive and a delete, so a
   job that simply waits in a long backlog is re-sent only a few times
   (log2 of its wait over the grace), not every run. "Unchanged since" is
   remembered in this object: the function keeps it across warm invocations;
   a cold start only restarts the clocks (a delay, never extra sends). Arrays
   get messages for the ranges not yet handed out and for their retries only,
   not the whole range again.

Costs per run: one ReceiveMessage per queue's DLQ, and per queue a Query
over the active partition of by_queue_state (filtered to RUNNING, then
QUEUED) with a strongly consistent BatchGetItem of the jobs it lists (the
scaler reads the same partition every run for `pending_tasks`).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Callable, Iterator

from .. import arrays, exits
from ..dispatch import Dispatcher
from ..errors import NotFound, StaleTransition
from ..model import Change, Expect, is_array
from ..ports import WorkItem
from ..service import Scheduler
from ..states import FINAL, JobState
from ..tasks import add_range, first_free, settle, update_array
from .sqs import MAX_RECEIVE_COUNT

log = logging.getLogger("hyperbatch.reconcile")

GRACE_SECONDS = 300.0  # unchanged this long, QUEUED work is sent again (and after 2x, 4x, ... more)
PAGE = 500
MAX_DEAD_LETTERS = 1000  # per queue and run; the rest wait for the next run
MAX_TRACKED = 200_000  # jobs whose "unchanged since" is remembered (bounds memory at ~50 MB)
FINAL_STATES = frozenset(s.value for s in FINAL)


def dead_letter_reason() -> str:
    return f"dead-lettered after {MAX_RECEIVE_COUNT} receives"


class Reconciler:
    def __init__(self, scheduler: Scheduler, dispatcher: Dispatcher, *, grace_seconds: float = GRACE_SECONDS,
                 clock: Callable[[], float] = time.time):
        self.scheduler, self.dispatcher = scheduler, dispatcher
        self.store, self.queue = scheduler.store, scheduler.queue
        self.grace, self.clock = grace_seconds, clock
        # job id -> (signature of its waiting work, when to send it again, sends so far)
        self._seen: dict[str, tuple[int, float, int]] = {}

    def run_once(self) -> dict[str, int]:
        queues = [q.name for q in self.scheduler.config.queues]
        out = {"dead_lettered": 0, "recovered": 0, "resent": 0}
        for queue in queues:
            out["dead_lettered"] += self.fail_dead_letters(queue)
        seen: dict[str, tuple[int, float, int]] = {}
        now = self.clock()
        for queue in queues:
            for doc in self._docs(queue, JobState.RUNNING.value):
                out["recovered"] += self._recover(doc)
                if is_array(doc) and doc["pending"] > 0:
                    out["resent"] += self._track(doc, seen, now)
            for doc in self._docs(queue, JobState.QUEUED.value):
                out["resent"] += self._track(doc, seen, now)
        self._seen = seen
        return out

    def _docs(self, queue: str, state: str) -> Iterator[dict]:
        token = None
        while True:
            page = self.store.query(queue=queue, states=[state], limit=PAGE, next=token)
            yield from page.items
            token = page.next
            if token is None:
                return

    # ---- 1. dead letters --------------------------------------------------------------------
    def fail_dead_letters(self, queue: str) -> int:
        failed = handled = 0
        while handled < MAX_DEAD_LETTERS:
            letters = self.queue.dead_letters(queue, max_messages=min(100, MAX_DEAD_LETTERS - handled))
            if not letters:
                break
            for item, receipt in letters:
                handled += 1
                if item is None:  # not a work item: left for a human (hidden for a while, then back)
                    log.warning("unreadable dead letter in queue %s", queue)
                    continue
                failed += self._fail(item)
                self.queue.drop_dead_letter(queue, receipt)
        return failed

    def _fail(self, item: WorkItem) -> bool:
        try:
            doc = self.store.get(item.job_id)
        except NotFound:
            return False
        if is_array(doc):
            return self._fail_tasks(item)
        state = doc["state"]
        if doc["attempt"] != item.attempt or state not in (JobState.QUEUED.value, JobState.RUNNING.value):
            return False  # moved on since: the letter is a leftover
        if state == JobState.RUNNING.value and self.dispatcher.alive(doc["heartbeat_at"]):
            return False  # its worker still runs it and will record the result
        change = Change(set={"state": JobState.FAILED, "finished_at": time.time(),
                             "exit_status": exits.SCHEDULER_FAILURE, "reason": dead_letter_reason()})
        try:
            self.store.update(doc["id"], Expect.state(JobState(state), attempt=item.attempt), change)
        except StaleTransition:
            return False
        return True

    def _fail_tasks(self, item: WorkItem) -> bool:
        """Fail what the letter carried: its chunk if one ran and stopped beating, its retry, or the
        positions of its range that were never handed out."""
        changed = {}

        def decide(doc: dict) -> Change | None:
            change = changed["last"] = self._task_failures(doc, item)
            return change

        update_array(self.store, item.job_id, decide)
        return changed.get("last") is not None

    def _task_failures(self, doc: dict, item: WorkItem) -> Change | None:
        if doc["state"] in FINAL_STATES:
            return None
        spec = arrays.parse_array(doc["array"])
        chunk = doc["chunks"].get(item.id)
        if chunk is not None:
            if self.dispatcher.chunk_alive(doc, item.id):
                return None

            def verdict(pos: int, index: str):
                if doc["cancel_requested"] or index in doc["cancelled_tasks"]:
                    return "cancelled", None
                return "failed", exits.SCHEDULER_FAILURE

            change, _ = settle(doc, item.id, verdict)
        elif item.attempt > 1:
            index = str(spec.index_at(item.lo))
            if doc["retrying"].get(index) != item.attempt:
                return None
            change = Change(set={
                "retrying": {k: v for k, v in doc["retrying"].items() if k != index},
                "failed_tasks": {**doc["failed_tasks"], index: exits.SCHEDULER_FAILURE},
                "pending": doc["pending"] - 1, "failed": doc["failed"] + 1,
            })
        else:
            if doc["cancel_requested"]:
                return None
            dispatched, failed, start = doc["dispatched"], dict(doc["failed_tasks"]), item.lo
            while (gap := first_free(dispatched, start, item.hi)) is not None:
                for pos in range(*gap):
                    index = str(spec.index_at(pos))
                    if index not in doc["cancelled_tasks"]:
                        failed[index] = exits.SCHEDULER_FAILURE
                dispatched = add_range(dispatched, *gap)
                start = gap[1]
            newly = len(failed) - len(doc["failed_tasks"])
            if not newly:
                return None
            change = Change(set={"dispatched": dispatched, "failed_tasks": failed,
                                 "pending": doc["pending"] - newly, "failed": doc["failed"] + newly})
        change.set["reason"] = f"tasks {dead_letter_reason()}"
        return change

    # ---- 2. stale runs ----------------------------------------------------------------------
    def _recover(self, doc: dict) -> int:
        """Index copies lag (never lead) the table, so a fresh-looking one is fresh; a stale-looking
        one is read again by `recover_stale` before anything is decided."""
        if is_array(doc):
            stale = any(not self.dispatcher.chunk_alive(doc, cid) for cid in doc["chunks"])
        else:
            stale = not self.dispatcher.alive(doc["heartbeat_at"])
        return self.dispatcher.recover_stale(doc["id"]) if stale else 0

    # ---- 3. lost sends ----------------------------------------------------------------------
    def _track(self, doc: dict, seen: dict, now: float) -> int:
        signature = _signature(doc)
        prior = self._seen.get(doc["id"])
        if prior is None or prior[0] != signature:
            if len(seen) < MAX_TRACKED:
                seen[doc["id"]] = (signature, now + self.grace, 0)
            return 0
        _, due, sends = prior
        if now < due:
            seen[doc["id"]] = prior
            return 0
        self._resend(doc)
        seen[doc["id"]] = (signature, now + self.grace * 2 ** (sends + 1), sends + 1)
        return 1

    def _resend(self, doc: dict) -> None:
        if not is_array(doc):
            self.scheduler.resend(doc)
            return
        queue, job_id, priority = doc["queue"], doc["id"], doc["priority"]
        spec = arrays.parse_array(doc["array"])
        items = [(queue, job_id, lo, hi, 1, priority) for lo, hi in _gaps(doc["dispatched"], doc["total"])]
        for index, attempt in sorted(doc["retrying"].items()):
            pos = spec.position_of(int(index))
            items.append((queue, job_id, pos, pos + 1, attempt, priority))
        if items:
            self.queue.send_many(items)


def _signature(doc: dict) -> int:
    """What must stay the same for waiting work to count as unchanged."""
    if is_array(doc):
        return hash((doc["state"], doc["pending"], json.dumps(doc["dispatched"]),
                     json.dumps(sorted(doc["retrying"].items())), doc["cancel_requested"]))
    return hash((doc["state"], doc["attempt"], doc["version"]))


def _gaps(dispatched: list[list[int]], total: int) -> list[tuple[int, int]]:
    """Position ranges of [0, total) not handed out yet."""
    out, start = [], 0
    while (gap := first_free(dispatched, start, total)) is not None:
        out.append(gap)
        start = gap[1]
    return out

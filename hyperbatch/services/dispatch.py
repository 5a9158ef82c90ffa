"""The worker's side of the state machine: start, heartbeat, finish, and recovery of lost leases.

Every move is a conditional write on (state, attempt) or on the document's
version, so a late or duplicate message can never move a job backwards or
start it twice at once. A work item is acknowledged only after its job (or
its chunk of tasks) has a final state in the store, or when it stands for no
work any more (a held, cancelled or superseded job). An item of work that is
still running is never acknowledged: when it comes back early (SQS redelivers
a message while its worker still beats) it is put back for one more lease, so
every running job keeps an item that will come back to check on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from hyperbatch.core import arrays, exits
from hyperbatch.core.errors import NotFound, StaleTransition
from hyperbatch.core.model import Change, Expect, is_array
from hyperbatch.core.ports import JobStore, WorkItem, WorkQueue
from hyperbatch.core.states import JobState
from hyperbatch.core.tasks import add_range, first_free, remove_range, settle, update_array

CONCURRENCY_LIMIT_BACKOFF = 0.2  # seconds an array at its %limit waits before its item is claimable again


@dataclass
class Run:
    """A claimed item the store has moved to RUNNING: one job, or a chunk of array positions."""

    item: WorkItem
    job: dict
    attempt: int
    positions: list[int] = field(default_factory=list)  # arrays only

    @property
    def spec(self) -> arrays.ArraySpec:
        return arrays.parse_array(self.job["array"])


@dataclass
class Outcome:
    exit_status: int | None
    reason: str = ""
    cancelled: bool = False
    cpu_seconds: float = 0.0


@dataclass(frozen=True)
class Signals:
    """What a heartbeat learned: stop everything, or stop these array indices."""

    lease_lost: bool = False
    cancel_all: bool = False
    cancelled_indices: frozenset[int] = frozenset()


class Dispatcher:
    def __init__(self, store: JobStore, queue: WorkQueue, worker: str, region: str, lease_seconds: float,
                 clock=time.time):
        self.store, self.queue = store, queue
        self.worker, self.region, self.lease_seconds = worker, region, lease_seconds
        self.clock = clock

    @property
    def host(self) -> str:
        return f"{self.region}/{self.worker}"

    # ---- start --------------------------------------------------------------------------
    def start(self, item: WorkItem) -> Run | None:
        """Move the item's job (or a chunk of its tasks) to RUNNING; None if there is nothing to run.

        A plain job's item is [0, 1): it is claimed with no read first, by one
        conditional write (QUEUED at the item's attempt, not an array). Only
        when that fails, or the item holds other positions (only arrays have
        them), is the job read (once, by `_start_array`): an array has a chunk
        of its tasks claimed; any other job's item is stale (held, cancelled,
        finished or superseded) and acknowledged, since whatever makes the job
        runnable again sends new work for it.
        """
        if (item.lo, item.hi) != (0, 1):
            return self._start_array(item)
        now = time.time()
        change = Change(
            set={"state": JobState.RUNNING, "started_at": now, "exec_host": self.host, "heartbeat_at": now},
            add={"run_count": 1},
        )
        expect = Expect(states=frozenset({JobState.QUEUED}), attempt=item.attempt, fields=(("array", None),))
        try:
            doc = self.store.update(item.job_id, expect, change)
        except NotFound:
            self.queue.ack(item)
            return None
        except StaleTransition:
            return self._start_array(item)
        return Run(item, doc, item.attempt)

    def _start_array(self, item: WorkItem) -> Run | None:
        """Claim a chunk of an array's tasks; acknowledge an item that offers nothing (or is no array's)."""
        granted: dict = {}

        def decide(doc: dict) -> Change | None:
            granted.clear()
            if not is_array(doc):
                return None  # a plain job that is not QUEUED at the item's attempt
            if doc["state"] not in (JobState.QUEUED.value, JobState.RUNNING.value) or doc["cancel_requested"]:
                return None
            spec = arrays.parse_array(doc["array"])
            room = item.size if spec.limit is None else max(0, spec.limit - doc["running"])
            if item.attempt > 1:  # a single task's retry
                index = str(spec.index_at(item.lo))
                if doc["retrying"].get(index) != item.attempt or room == 0:
                    granted["room"] = room
                    return None
                lo, hi = item.lo, item.lo + 1
                retrying = {k: v for k, v in doc["retrying"].items() if k != index}
            else:
                free = first_free(doc["dispatched"], item.lo, item.hi)
                if free is None or room == 0:
                    granted["room"] = room
                    return None
                lo, hi = free[0], min(free[1], free[0] + room)
                retrying = doc["retrying"]
            skip = [p for p in range(lo, hi) if str(spec.index_at(p)) in doc["cancelled_tasks"]]
            positions = [p for p in range(lo, hi) if p not in skip]
            # run_count: the most runs of a task so far, counting those whose worker was lost.
            losses = doc.get("lost_tasks") or {}
            runs = item.attempt + max((losses.get(str(spec.index_at(p)), 0) for p in positions), default=0)
            granted.update(lo=lo, hi=hi, positions=positions)
            now = time.time()
            chunk = {"lo": lo, "hi": hi, "attempt": item.attempt, "worker": self.host, "started": now, "skip": skip}
            return Change(
                set={
                    "dispatched": add_range(doc["dispatched"], lo, hi),
                    "retrying": retrying,
                    "chunks": {**doc["chunks"], item.id: chunk},
                    "pending": doc["pending"] - len(positions),
                    "running": doc["running"] + len(positions),
                    "started_at": doc["started_at"] or now,
                    "exec_host": self.host,
                    "run_count": max(doc["run_count"], runs),
                }
            )

        try:
            doc = update_array(self.store, item.job_id, decide)
        except NotFound:
            self.queue.ack(item)
            return None
        if "positions" not in granted:
            if granted.get("room") == 0:
                self.queue.release(item, delay=CONCURRENCY_LIMIT_BACKOFF)
            else:
                # Everything in it was handed out already, the array stopped, or a plain job's item is
                # stale (held, cancelled, finished or superseded): whatever runs the job again sends anew.
                self.queue.ack(item)
            return None
        if granted["hi"] < item.hi or granted["lo"] > item.lo:
            item = self.queue.split(item, granted["lo"], granted["hi"])
        return Run(item, doc, item.attempt, granted["positions"])

    # ---- heartbeat ----------------------------------------------------------------------
    def heartbeat(self, run: Run) -> Signals:
        """Record that the worker lives, push its item's lease out, and look for cancellation.

        The store decides whether the work is still this worker's: a job no
        longer RUNNING at this attempt, or a chunk settled by recovery, means
        stop. A lease that cannot be extended does not: the item was replaced
        by a copy that comes back to check on this run (see `recover_lost`) or
        passed SQS's 12-hour limit, and whoever receives it next finds this
        worker beating in the store.
        """
        now = time.time()
        try:
            if run.positions:
                doc = self.store.update(run.item.job_id, Expect(), Change(map_set={"beats": {run.item.id: now}}))
                if run.item.id not in doc["chunks"]:
                    return Signals(lease_lost=True)  # the chunk was settled and its tasks handed out again
            else:
                doc = self.store.update(
                    run.item.job_id, Expect.state(JobState.RUNNING, attempt=run.attempt),
                    Change(set={"heartbeat_at": now}),
                )
        except StaleTransition:
            return Signals(lease_lost=True)  # the job was taken back: whatever runs here must stop
        self.queue.extend(run.item, self.lease_seconds)
        if doc["cancel_requested"] or doc["state"] == JobState.CANCELLED.value:
            return Signals(cancel_all=True)
        if is_array(doc):
            return Signals(cancelled_indices=frozenset(int(i) for i in doc["cancelled_tasks"]))
        return Signals()

    def alive(self, beat: float | None) -> bool:
        """A worker beats several times a lease; one silent for half a lease is taken for lost.

        (When SQS redelivers a lost worker's message, its last beat is about a whole lease old.)
        """
        return beat is not None and self.clock() - beat < self.lease_seconds / 2

    def chunk_alive(self, doc: dict, chunk_id: str) -> bool:
        """Whether the worker of an array chunk still beats (a chunk with no beat yet counts from its start)."""
        chunk = doc["chunks"].get(chunk_id)
        return chunk is not None and self.alive(doc["beats"].get(chunk_id, chunk["started"]))

    # ---- finish -------------------------------------------------------------------------
    def finish_job(self, run: Run, outcome: Outcome) -> dict | None:
        job, attempt = run.job, run.attempt
        now = time.time()
        done = {"finished_at": now, "exit_status": outcome.exit_status, "cpu_seconds": outcome.cpu_seconds}
        if outcome.cancelled:
            change = Change(set={**done, "state": JobState.CANCELLED, "reason": _cancel_reason(self.store, job)})
        elif outcome.exit_status == 0:
            change = Change(set={**done, "state": JobState.SUCCEEDED, "reason": ""})
        elif exits.retry_after_exit(outcome.exit_status, attempt, job.get("lost_runs", 0), job["max_attempts"]):
            reason = f"attempt {attempt} failed ({outcome.reason}); re-queued as attempt {attempt + 1}"
            change = Change(set={**done, "state": JobState.QUEUED, "attempt": attempt + 1, "reason": reason,
                                 "finished_at": None})
        else:
            change = Change(set={**done, "state": JobState.FAILED, "reason": _final_reason(outcome, job)})
        try:
            new = self.store.update(job["id"], Expect.state(JobState.RUNNING, attempt=attempt), change)
        except StaleTransition:
            return None  # the reconciler took the job back (lease lost): its item is no longer ours
        if new["state"] == JobState.QUEUED.value:
            self.queue.send(new["queue"], new["id"], 0, 1, new["attempt"], new["priority"])
        self.queue.ack(run.item)
        return new

    def finish_tasks(self, run: Run, results: dict[int, Outcome]) -> dict:
        """Record a chunk's results; positions with no result (not reached) count as cancelled."""
        retries: list[int] = []

        def verdict(doc: dict):
            def decide(pos: int, index: str):
                outcome = results.get(pos)
                if outcome is None or outcome.cancelled:
                    return "cancelled", None
                if outcome.exit_status == 0:
                    return "succeeded", None
                retry = exits.retry_after_exit(outcome.exit_status, run.attempt, 0, doc["max_attempts"])
                if retry and not doc["cancel_requested"] and index not in doc["cancelled_tasks"]:
                    return "retry", run.attempt + 1
                return "failed", outcome.exit_status
            return decide

        def change(doc: dict) -> Change | None:
            if run.item.id not in doc["chunks"]:
                return None  # recovered as lost already
            settled, again = settle(doc, run.item.id, verdict(doc))
            retries[:] = again
            cpu = sum(o.cpu_seconds for o in results.values())
            settled.set["cpu_seconds"] = (doc["cpu_seconds"] or 0.0) + cpu
            return settled

        doc = update_array(self.store, run.item.job_id, change)
        self._send_retries(doc, retries, run.attempt + 1)
        self.queue.ack(run.item)
        return doc

    def _send_retries(self, doc: dict, positions: list[int], attempt: int) -> None:
        if positions:
            self.queue.send_many([(doc["queue"], doc["id"], p, p + 1, attempt, doc["priority"]) for p in positions])

    # ---- give back ----------------------------------------------------------------------
    def give_back(self, run: Run) -> None:
        """The worker is stopping: return its work untouched, with no attempt used up."""
        if not run.positions:
            doc = self.store.get(run.job["id"])
            if doc["cancel_requested"]:
                self.finish_job(run, Outcome(None, "cancelled", cancelled=True))
                return
            change = Change(set={"state": JobState.QUEUED, "reason": f"worker {self.host} stopped; re-queued"},
                            add={"run_count": -1})
            try:
                self.store.update(run.job["id"], Expect.state(JobState.RUNNING, attempt=run.attempt), change)
            except StaleTransition:
                return
            self.queue.requeue(run.item, run.item.lo, run.attempt)
            return
        # The whole chunk goes back, finished tasks included: delivery is at least once.
        item = run.item

        def change(doc: dict) -> Change | None:
            if item.id not in doc["chunks"]:
                return None
            if item.attempt > 1:  # a retry item: back into the retry map with the same attempt
                back = ("retry", item.attempt)
            else:
                back = ("pending", None)
            def decide(pos: int, index: str):
                cancelled = doc["cancel_requested"] or index in doc["cancelled_tasks"]
                return ("cancelled", None) if cancelled else back

            settled, _ = settle(doc, item.id, decide)
            if item.attempt == 1:
                settled.set["dispatched"] = remove_range(doc["dispatched"], item.lo, item.hi)
            return settled

        update_array(self.store, item.job_id, change)
        self.queue.requeue(item, item.lo, item.attempt)

    # ---- lost leases --------------------------------------------------------------------
    def recover_lost(self, item: WorkItem) -> None:
        """The item's lease ran out: re-queue its work or fail it with the reason, if its worker is gone.

        A job (RUNNING at the item's attempt) or chunk whose worker still beats
        is left running and its item is not acknowledged: it is put back for
        one more lease (`_check_later`), so that it comes back to check again:
        acknowledged once the work is final, put back again while the worker
        beats, recovered once the worker has stopped.
        """
        try:
            doc = self.store.get(item.job_id)
        except NotFound:
            self.queue.ack(item)
            return
        if is_array(doc):
            if self.chunk_alive(doc, item.id):
                self._check_later(item)  # a duplicate delivery: the chunk's worker is still beating
                return
            self._recover_chunk(item.job_id, item.id, item)
        else:
            running = doc["state"] == JobState.RUNNING.value and doc["attempt"] == item.attempt
            if running and self.alive(doc["heartbeat_at"]):
                self._check_later(item)  # a duplicate delivery: the job's worker is still beating
                return
            self._recover_job(doc, item.attempt, item)

    def _check_later(self, item: WorkItem) -> None:
        """Have a live run's item come back after one lease, unchanged (no attempt is used up).

        A redelivered item (SQS) is released: a new copy visible after the
        lease (SQS: at most 900 s), which comes back to `recover_lost` under
        the same item id (see `SqsWorkQueue.release`), and the original
        deleted. A lease table's item (listed by `expired()`) is its worker's
        own lease: releasing it would take the work from a live worker and
        hand it to the next claimer, so its lease is pushed out by one lease
        instead; should the worker stop beating, it expires and is listed again.
        """
        if item.redelivered:
            self.queue.release(item, delay=self.lease_seconds)
        else:
            self.queue.extend(item, self.lease_seconds)

    def _recover_job(self, doc: dict, attempt: int, item: WorkItem | None = None) -> None:
        """Re-queue or fail the lost run of `doc` at `attempt`; `item` is its work item, if one is at hand."""
        if doc["state"] == JobState.QUEUED.value and doc["attempt"] == attempt:
            if item is not None:
                self._hand_out_again(item)
            return
        if doc["state"] != JobState.RUNNING.value or doc["attempt"] != attempt:
            if item is not None:
                self.queue.ack(item)
            return
        lost = f"worker {doc['exec_host']} lost (no heartbeat for {self.lease_seconds:g}s)"
        now = time.time()
        then = exits.after_lost_worker(doc.get("rerunnable", True), doc["run_count"])
        lost_runs = doc.get("lost_runs", 0) + 1
        if doc["cancel_requested"]:
            change = Change(set={"state": JobState.CANCELLED, "finished_at": now,
                                 "reason": f"{doc['reason'].replace('cancel requested', 'cancelled')}; {lost}"})
        elif then == "rerun":
            # A new attempt (so the lost run's item is stale), but no retry used up: see exits.retry_after_exit.
            change = Change(set={"state": JobState.QUEUED, "attempt": attempt + 1, "lost_runs": lost_runs,
                                 "reason": f"{lost}; job requeued to run again (rerunnable)"})
        elif then == "hold":
            change = Change(set={"state": JobState.HELD, "attempt": attempt + 1, "lost_runs": lost_runs,
                                 "reason": f"{exits.TOO_MANY_RUNS} ({doc['run_count']} runs; {lost})"})
        else:
            change = Change(set={"state": JobState.FAILED, "finished_at": now, "exit_status": exits.WORKER_LOST,
                                 "reason": f"job deleted, {lost}; not rerunnable (-r n)"})
        try:
            new = self.store.update(doc["id"], Expect.state(JobState.RUNNING, attempt=attempt), change)
        except StaleTransition:
            return  # the worker finished after all: the item, if it comes back, finds the job final
        if new["state"] == JobState.QUEUED.value:
            if item is not None:
                self.queue.requeue(item, item.lo, new["attempt"])
            else:
                self.queue.send(new["queue"], new["id"], 0, 1, new["attempt"], new["priority"])
        elif item is not None:
            self.queue.ack(item)

    def _hand_out_again(self, item: WorkItem) -> None:
        """An item claimed but never started (no store change to send it anew): back to the queue as
        fresh work, not as a redelivery (which would come back to `recover_lost` instead of running)."""
        self.queue.release(replace(item, redelivered=False))

    def _recover_chunk(self, job_id: str, chunk_id: str, item: WorkItem | None = None) -> None:
        """Settle a lost chunk: its tasks run again as they were (an array is rerunnable; a lost
        worker uses up no retry), except a task lost exits.MAX_RUNS times, which fails (PBS would
        hold it). `item` is the chunk's work item, if one is at hand."""
        found: dict = {}

        def change(doc: dict) -> Change | None:
            chunk = found["chunk"] = doc["chunks"].get(chunk_id)
            if chunk is None:
                return None
            losses = dict(doc.get("lost_tasks") or {})  # index -> times its chunk was lost
            freed: list[int] = []
            found["freed"] = freed

            def decide(pos: int, index: str):
                if doc["cancel_requested"] or index in doc["cancelled_tasks"]:
                    return "cancelled", None
                losses[index] = losses.get(index, 0) + 1
                if exits.after_lost_worker(True, losses[index]) != "rerun":
                    return "failed", exits.WORKER_LOST
                if chunk["attempt"] > 1:
                    return "retry", chunk["attempt"]
                freed.append(pos)
                return "pending", None

            settled, again = settle(doc, chunk_id, decide)
            found["again"] = again
            rerun = bool(freed or again)
            dispatched = doc["dispatched"]
            for pos in freed:  # handed out afresh, as if never handed out
                dispatched = remove_range(dispatched, pos, pos + 1)
            settled.set["dispatched"] = dispatched
            settled.set["lost_tasks"] = losses
            settled.set["lost_runs"] = doc.get("lost_runs", 0) + 1
            lost = f"worker {chunk['worker']} lost (no heartbeat for {self.lease_seconds:g}s)"
            settled.set["reason"] = (
                f"{lost}; its tasks requeued to run again" if rerun else f"{lost}; {exits.TOO_MANY_RUNS}"
            )
            return settled

        doc = update_array(self.store, job_id, change)
        chunk = found.get("chunk")
        if chunk is None:
            if item is not None:
                self._hand_out_again(item)
            return
        live = doc["state"] in (JobState.QUEUED.value, JobState.RUNNING.value) and not doc["cancel_requested"]
        if live:  # what outbox.to_send sends for this change: the freed ranges, the retries
            self.queue.send_many([(doc["queue"], doc["id"], lo, hi, 1, doc["priority"])
                                  for lo, hi in _ranges(found["freed"])])
            self._send_retries(doc, found["again"], chunk["attempt"])
        if item is not None:
            self.queue.ack(item)


def _ranges(positions: list[int]) -> list[tuple[int, int]]:
    """Sorted positions as [lo, hi) runs."""
    out: list[list[int]] = []
    for pos in sorted(positions):
        if out and out[-1][1] == pos:
            out[-1][1] = pos + 1
        else:
            out.append([pos, pos + 1])
    return [(lo, hi) for lo, hi in out]


def _cancel_reason(store: JobStore, job: dict) -> str:
    reason = store.get(job["id"])["reason"]
    return reason.replace("cancel requested", "cancelled") or "cancelled"


def _final_reason(outcome: Outcome, job: dict) -> str:
    tries = f"after {job['max_attempts']} attempts" if job["max_attempts"] > 1 else ""
    return " ".join(part for part in (outcome.reason or exits.describe(outcome.exit_status), tries) if part)

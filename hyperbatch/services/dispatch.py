"""The worker's side of the state machine: start, heartbeat, finish, and recovery of lost leases.

Every move is a conditional write on (state, attempt) or on the document's
version, so a late or duplicate message can never move a job backwards or
start it twice at once. A work item is acknowledged only after its job (or
its chunk of tasks) has a final state in the store, or when it stands for no
work any more (a held, cancelled or superseded job). An item of work that is
still running is never acknowledged: when it comes back early (SQS redelivers
a message while its worker still beats) it is put back for one more lease, so
every running job keeps an item that will come back to check on it.

Fencing: at no moment do two runs of one job or array task overlap. A run is
taken back (`recover_lost`) only once its worker has been silent for a whole
lease (`alive`) and holds no registration still good (`registered`; AWS:
hyperbatch.core.cadence), or (`take_back`) once its worker is known to be gone
or its registration has passed, and its worker kills its own job once it has gone
`lease - heartbeat / 2` seconds without a renewal (hyperbatch.services.agent.Lease),
so the copy that was fenced off is dead before another can start. A worker
that cannot act at all (its agent stopped, SIGSTOP) cannot fence itself: where
the recovering process can reach that worker's processes (local mode: the
daemon, through `fence`), it kills the run's job before taking the run back.
A run that comes back after its run was taken records nothing: every write of
a run (heartbeat, finish, give back) is conditional on the run still owning
the job (RUNNING at its attempt) or its chunk (the chunk still in `chunks`).
A chunk's beat is the exception that writes nothing of the array: it is kept
apart (`JobStore.beat`) under the chunk's id, which no one reads once the
chunk was settled, and the read that follows it tells the worker so.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Callable

from hyperbatch.core import arrays, exits, history, outbox, pools
from hyperbatch.core.cadence import Cadence
from hyperbatch.core.errors import NotFound, StaleTransition
from hyperbatch.core.model import NO_REQUEST, Change, Expect, holds, is_array
from hyperbatch.core.ports import JobStore, RunRegister, StagedFile, WorkItem, WorkQueue
from hyperbatch.core.states import JobState
from hyperbatch.core.tasks import (CANCELLED_MAP, Claim, claim_chunk, finish_chunk, lose_chunk, record_progress,
                                   task_map, update_array)

CONCURRENCY_LIMIT_BACKOFF = 0.2  # seconds an array at its %limit waits before its item is claimable again
# What a registered run's message is hidden for (SQS: never more than 12 hours after it was received).
MESSAGE_HOLD_SECONDS = 11 * 3600


@dataclass
class Run:
    """A claimed item the store has moved to RUNNING: one job, or a chunk of array positions.

    For a chunk, the agent notes each task it gets through (`done`, `passed`)
    and the heartbeat records that progress in the store (`Dispatcher.heartbeat`).
    The agent's main thread writes `results` before `upto`; the heartbeat's
    thread reads `upto` first, so every position below it has its result.
    """

    item: WorkItem
    job: dict
    attempt: int
    positions: list[int] = field(default_factory=list)  # arrays only
    results: dict[int, "Outcome"] = field(default_factory=dict)  # position -> outcome of a task run to its end
    upto: int = 0  # every position of the chunk below this one ran to its end or was passed over (cancelled)
    recorded: int = 0  # the progress the store has: positions below it were settled by a heartbeat
    signals_seen: int = -1  # qsig entries of the job already handled (set from the job at start)

    def __post_init__(self) -> None:
        if self.signals_seen < 0:
            self.signals_seen = len(self.job.get("signals") or [])

    def done(self, pos: int, outcome: "Outcome") -> None:
        self.results[pos] = outcome
        self.upto = pos + 1

    def passed(self, pos: int) -> None:
        """A task of the chunk cancelled before it started: not run."""
        self.upto = pos + 1

    @property
    def is_array(self) -> bool:
        return is_array(self.job)

    @property
    def spec(self) -> arrays.ArraySpec:
        return arrays.parse_array(self.job["array"])


@dataclass
class Outcome:
    exit_status: int | None
    reason: str = ""
    cancelled: bool = False
    rerun: bool = False  # killed for qrerun (the job's `rerun_requested`)
    cpu_seconds: float = 0.0
    # File staging (hyperbatch.core.staging): what the run staged out (None: it stages nothing out),
    # and the line that says which files could not be staged in or out (comment and tracejob).
    staged_out: tuple[StagedFile, ...] | None = None
    staging_note: str = ""


@dataclass(frozen=True)
class Signals:
    """What a heartbeat learned: stop everything, or stop these array indices."""

    lease_lost: bool = False
    cancel_all: bool = False
    rerun: bool = False  # qrerun: kill the job, whose end then re-queues it (`Dispatcher._end_run`)
    cancelled_indices: frozenset[int] = frozenset()
    deliver: tuple[tuple[str, int | None], ...] = ()  # qsig: (signal name, task index or None for all), in order


Fence = Callable[[str, str, str, int], None]


class Dispatcher:
    """`clock` (wall-clock seconds, time.time by default) stamps every time this writes and judges
    heartbeats by; a test passes a fake one to control leases.

    `fence(host, job_id, item_id, attempt)`, where the recovering process can reach other workers'
    processes (the local daemon: hyperbatch.adapters.local.compute.LocalCompute.fence), kills the job
    that worker `host` runs for that run, if it still runs it; it is called before a silent worker's run
    is taken back. Elsewhere (AWS) it is None: workers fence themselves (hyperbatch.services.agent.Lease).

    `together()`, where the store and the queue are one database (local mode: `Database.together`),
    makes the writes inside it one transaction: a run's result and its item's ack commit as one (a
    group commit: one write where there were two or three), so a worker killed in between leaves
    neither half. Elsewhere each write stands alone, as DynamoDB and SQS have it; every step is
    written to be safe either way (the ack comes last).

    `runs` and `cadence` (AWS): runs that outlast a third of their claim's lease are registered there with
    the cadence's run lease (`register`), and a run's promise is read there too (`job_alive`,
    `chunk_alive`). Without them (local mode) every beat renews the claim's lease in the job itself.
    """

    def __init__(self, store: JobStore, queue: WorkQueue, worker: str, region: str, lease_seconds: float,
                 clock=time.time, fence: Fence | None = None, runs: RunRegister | None = None,
                 cadence: Cadence | None = None, together: Callable[[], AbstractContextManager] = nullcontext):
        self.store, self.queue = store, queue
        self.worker, self.region, self.lease_seconds = worker, region, lease_seconds
        self.clock, self.fence, self.together = clock, fence, together
        self.runs, self.cadence = runs, cadence

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
        now = self.clock()
        change = history.add(Change(
            set={"state": JobState.RUNNING, "started_at": now, "exec_host": self.host, "heartbeat_at": now},
            add={"run_count": 1},
        ), "r", self.host, item.attempt, at=now)
        # The item's work queue too: an item left where the job was moved away from (qmove, a new size) is stale.
        expect = Expect.move(JobState.RUNNING, JobState.QUEUED, attempt=item.attempt,
                             fields=(("array", None), *pools.claimed_from(item.queue)))
        try:
            doc = self.store.update(item.job_id, expect, change)
        except NotFound:
            self.queue.ack(item)
            return None
        except StaleTransition:
            return self._start_array(item)
        return Run(item, doc, item.attempt)

    def _start_array(self, item: WorkItem) -> Run | None:
        """Claim a chunk of an array's tasks (`tasks.claim_chunk`); acknowledge an item that offers
        nothing (or is no array's), and one whose positions were all cancelled (settled, never run)."""
        claim = Claim()

        def decide(doc: dict) -> Change | None:
            nonlocal claim
            if is_array(doc) and pools.work_queue(doc) != item.queue:
                claim = Claim()  # an item left in the queue the array was moved away from (qmove): stale
                return None
            # an array's history stores no start: tracejob shows when it began (started_at)
            claim = claim_chunk(doc, item.id, item.lo, item.hi, item.attempt, self.host, self.clock())
            return claim.change

        try:
            doc = update_array(self.store, item.job_id, decide)
        except NotFound:
            self.queue.ack(item)
            return None
        if claim.change is None:
            if claim.full:
                self.queue.release(item, delay=CONCURRENCY_LIMIT_BACKOFF)
            else:
                # Everything in it was handed out already, the array stopped, or a plain job's item is
                # stale (held, cancelled, finished or superseded): whatever runs the job again sends anew.
                self.queue.ack(item)
            return None
        if (claim.lo, claim.hi) != (item.lo, item.hi):
            item = self.queue.split(item, claim.lo, claim.hi)
        if not claim.positions:
            self.queue.ack(item)  # only cancelled tasks: settled by the claim, never run
            return None
        return Run(item, doc, item.attempt, claim.positions)

    # ---- heartbeat ----------------------------------------------------------------------
    def heartbeat(self, run: Run) -> Signals:
        """Record that the worker lives, push its item's lease out, and look for cancellation.

        The store decides whether the work is still this worker's: a job no
        longer RUNNING at this attempt, or a chunk settled by recovery, means
        stop (and the write that found out wrote nothing). A lease that cannot
        be extended does not: the item was replaced by a copy that comes back
        to check on this run (see `recover_lost`) or passed SQS's 12-hour
        limit, and whoever receives it next finds this worker beating in the store.
        """
        now = self.clock()
        try:
            if run.is_array:
                doc = self._beat_chunk(run, now)
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
        return self._signals(run, doc)

    def check(self, run: Run) -> Signals:
        """A look at the store that writes nothing (AWS, between renewals): cancel, qsig, taken back.

        One eventually consistent read of the job (half a read unit), or, for a chunk that finished
        tasks since the last look, the settling of their results (`_record_progress`). A read that
        says the run is no longer this worker's may lag a write: it is read again, consistently,
        before the worker is told to stop.
        """
        try:
            if run.is_array and run.upto > run.recorded:
                doc = self._record_progress(run)
            else:
                doc = self.store.get(run.item.job_id, consistent=False)
            if not self._ours(run, doc):
                doc = self.store.get(run.item.job_id)
                if not self._ours(run, doc):
                    return Signals(lease_lost=True)
        except NotFound:
            return Signals(lease_lost=True)
        return self._signals(run, doc)

    def register(self, run: Run, first: bool) -> None:
        """Promise, in the run register, that this worker runs `run` for one more run lease (AWS).

        The first registration (a third of the way through the claim's lease) also hides the run's message
        for MESSAGE_HOLD_SECONDS: from then on the reconciler, not SQS's redelivery, watches the run,
        and deletes the message (its receipt is in the entry) should it take the run back.
        """
        assert self.runs is not None and self.cadence is not None and self.cadence.run_lease is not None
        self.runs.hold({"host": self.host, "job_id": run.item.job_id, "attempt": run.attempt,
                        "chunk": run.item.id if run.is_array else "", "queue": run.item.queue, "item": run.item.id,
                        "receipt": run.item.receipt, "at": self.clock(), "lease": self.cadence.run_lease})
        if first:
            self.queue.extend(run.item, MESSAGE_HOLD_SECONDS)

    def take_back(self, entry: dict, why: str) -> bool:
        """Take back a registered run (`entry`, hyperbatch.core.ports.RunRegister) whose worker is lost for
        `why`, if the store still gives the run to that worker; then delete its hidden message (the
        recovery sent the work anew). True if it was taken back."""
        try:
            doc = self.store.get(entry["job_id"])
        except NotFound:
            return False
        host, attempt = entry["host"], entry["attempt"]
        if entry["chunk"]:
            chunk = doc["chunks"].get(entry["chunk"])
            if chunk is None or (chunk["worker"], chunk["attempt"]) != (host, attempt):
                return False
            self._recover_chunk(doc["id"], entry["chunk"], why=why)
        else:
            if (doc["state"], doc["attempt"], doc["exec_host"]) != (JobState.RUNNING.value, attempt, host):
                return False
            self._recover_job(doc, attempt, why=why)
        self.queue.ack(WorkItem(entry["item"], entry["queue"], doc["id"], 0, 1, attempt, entry["receipt"]))
        return True

    def take_back_own(self) -> bool:
        """A worker starting under a name that still holds a registration: the agent before it under that
        name (start.sh restarts a crashed agent in the same container) left that run, whose job it
        killed (hyperbatch.services.agent.Agent._kill_orphan). Take it back now: its worker lives on,
        so the reconciler would wait for its promise, and this worker's next registration would
        overwrite its entry. True if a run was taken back."""
        if self.runs is None:
            return False
        entry = self.runs.entry(self.host)
        if entry is None:
            return False
        taken = self.take_back(entry, "its agent was restarted")
        self.runs.drop(self.host, entry["at"])
        return taken

    def _ours(self, run: Run, doc: dict) -> bool:
        """Whether the document still gives the run to this worker (RUNNING at its attempt, or its chunk)."""
        if run.is_array:
            return run.item.id in doc["chunks"]
        return holds(doc, Expect.state(JobState.RUNNING, attempt=run.attempt))

    def _signals(self, run: Run, doc: dict) -> Signals:
        """What the worker of `run` must do, by the job's document: stop all, stop tasks, deliver qsig."""
        if doc["cancel_requested"] or doc["state"] == JobState.CANCELLED.value:
            return Signals(cancel_all=True)
        entries = doc.get("signals") or []
        deliver = tuple((e[1], e[2]) for e in entries[run.signals_seen:] if not e[3])  # e[3]: delivered already
        run.signals_seen = len(entries)
        if is_array(doc):
            spec, cancelled = arrays.parse_array(doc["array"]), task_map(doc, CANCELLED_MAP)
            indices = frozenset(spec.index_at(pos) for pos, _ in cancelled.items(run.item.lo, run.item.hi))
            return Signals(cancelled_indices=indices, deliver=deliver)
        return Signals(deliver=deliver, rerun=bool(doc.get("rerun_requested")))

    def _beat_chunk(self, run: Run, now: float) -> dict:
        """A chunk's beat: recorded apart from the array (`JobStore.beat`: the array's document is
        not written, so beats neither grow it nor race its other writers), then the array read to see
        that the chunk is still this run's; or, when the chunk has made progress since the last beat,
        the tasks it finished settled (`tasks.record_progress`), their retries sent.

        The beat goes first, so the read that follows it says whether the chunk was taken back: a
        recoverer that took it judged an older beat, and this run records nothing more.
        """
        self.store.beat(run.item.job_id, run.item.id, now)
        if run.upto <= run.recorded:
            return self.store.get(run.item.job_id)
        return self._record_progress(run)

    def _record_progress(self, run: Run) -> dict:
        """Settle the tasks the chunk finished since the last beat (`tasks.record_progress`), send their retries."""
        upto = run.upto
        statuses = {pos: outcome.exit_status for pos, outcome in dict(run.results).items()}
        retries: list[int] = []

        def change(doc: dict) -> Change | None:
            settled = record_progress(doc, run.item.id, upto, statuses)
            if settled is None:
                return None
            retries[:] = settled.retries
            return settled.change

        doc = update_array(self.store, run.item.job_id, change)
        run.recorded = upto
        self._send_retries(doc, retries, run.attempt + 1)
        return doc

    def alive(self, beat: float | None) -> bool:
        """Whether a run's worker may still run it: it beat (or started) less than a whole lease ago.

        Only a run silent for a whole lease is taken back. Its worker, if it
        lives but could not renew, killed the run's job half a heartbeat
        before that (hyperbatch.services.agent.Lease): that margin must cover
        the clock difference between the two machines. A lost worker's item comes back (SQS redelivers it, the lease
        table lists it) a whole lease after its last renewal, so by then its
        last beat is a whole lease old, and the run is recovered at once.
        """
        return beat is not None and self.clock() - beat < self.lease_seconds

    def job_alive(self, doc: dict) -> bool:
        """Whether the worker of a RUNNING job may still run it: its last beat is less than a lease old,
        or it registered the run and its promise still holds (`registered`)."""
        return self.alive(doc["heartbeat_at"]) or self.registered(doc["exec_host"], doc["id"], doc["attempt"])

    def chunk_alive(self, doc: dict, chunk_id: str) -> bool:
        """Whether the worker of an array chunk still beats (a chunk with no beat yet counts from its start;
        beats are kept apart from the array: `JobStore.beats`), or registered the chunk and its promise holds."""
        chunk = doc["chunks"].get(chunk_id)
        if chunk is None:
            return False
        beat = self.store.beats(doc["id"]).get(chunk_id)
        return (self.alive(max(chunk["started"], beat or 0.0))
                or self.registered(chunk["worker"], doc["id"], chunk["attempt"], chunk_id))

    def registered(self, host: str | None, job_id: str, attempt: int, chunk: str = "") -> bool:
        """Whether worker `host` registered this run and promised it until later than now (`register`)."""
        if self.runs is None or not host:
            return False
        entry = self.runs.entry(host)
        return (entry is not None and (entry["job_id"], entry["attempt"], entry["chunk"]) == (job_id, attempt, chunk)
                and self.clock() < entry["at"] + entry["lease"])

    # ---- finish -------------------------------------------------------------------------
    def finish_job(self, run: Run, outcome: Outcome) -> dict | None:
        """Record a plain job's result: SUCCEEDED, FAILED, or QUEUED again for its next attempt.

        Unless a cancel was recorded first: then the job ends CANCELLED whatever
        its result (`_end_run`), as the `qdel` that was answered 0 promised.
        None if the run was taken back (its lease lost): its item is no longer ours.
        The result, the retry's work and the ack are one commit where the store allows (`together`).
        """
        with self.together():
            return self._finish_job(run, outcome)

    def _finish_job(self, run: Run, outcome: Outcome) -> dict | None:
        job, attempt = run.job, run.attempt
        done = {"finished_at": self.clock(), "exit_status": outcome.exit_status, "cpu_seconds": outcome.cpu_seconds}
        if outcome.staged_out is not None:
            done["stageout_files"] = [f.record() for f in outcome.staged_out]
        note = outcome.staging_note
        also = f"; {note}" if note and note != outcome.reason else ""  # a failed stage-out, after the exit's words
        if outcome.cancelled or outcome.rerun:
            change = None  # the end the job's request asks for (`_end_run`)
        elif outcome.exit_status == 0:
            change = Change(set={**done, "state": JobState.SUCCEEDED, "reason": note})
        elif outcome.exit_status is not None and exits.retry_after_exit(
                outcome.exit_status, attempt, exits.free_runs(job), job["max_attempts"]):
            reason = f"attempt {attempt} failed ({outcome.reason}){also}; re-queued as attempt {attempt + 1}"
            change = Change(set={**done, "state": JobState.QUEUED, "attempt": attempt + 1, "reason": reason,
                                 "finished_at": None})
        else:
            change = Change(set={**done, "state": JobState.FAILED, "reason": _final_reason(outcome, job) + also})
        again = change.set["attempt"] if change is not None and change.set.get("state") == JobState.QUEUED else 0
        entries: list[tuple] = [("x", outcome.exit_status, round(outcome.cpu_seconds or 0, 2),
                    round(done["finished_at"] - (job["started_at"] or done["finished_at"])), again)]
        if note:
            entries.append(("f", note))
        new = self._end_run(job["id"], attempt, change, done, note=also, entries=tuple(entries))
        if new is None:
            return None
        if new["state"] == JobState.QUEUED.value:
            self.queue.send(pools.work_queue(new), new["id"], 0, 1, new["attempt"], new["priority"])
        self.queue.ack(run.item)
        return new

    def _end_run(self, job_id: str, attempt: int, change: Change | None, done: dict, note: str = "",
                 entries: tuple[tuple, ...] = ()) -> dict | None:
        """End a plain job's run at `attempt` with `change` (None: the end its request asks for), unless
        a request came first.

        A request (qdel: `cancel_requested`; qrerun: `rerun_requested`, both by `Scheduler`) and the
        end of a run are all conditional writes on the job RUNNING at this attempt, and every end
        but the requested one also expects no request: whichever lands first is the truth. A run
        that ends after a request was recorded, however it ended (its exit, its worker stopping or
        lost), ends as asked (`_requested_end`): CANCELLED, or for a qrerun QUEUED at attempt + 1,
        never SUCCEEDED, FAILED or re-queued otherwise. A cancel wins over a rerun. A request that
        comes after the end finds the job moved on. `done`: the run's exit status and times; `note`
        added to the reason. None if the job is no longer RUNNING at `attempt` (the run was taken
        back). `entries`: the history events (code, arguments) the write records, whichever end it
        writes (hyperbatch.core.history).
        """
        running = Expect.state(JobState.RUNNING, attempt=attempt)
        if change is not None:
            for entry in entries:
                history.add(change, *entry, at=done.get("finished_at"))
            target = JobState(change.set["state"])
            expect = Expect.move(target, JobState.RUNNING, attempt=attempt, fields=NO_REQUEST)
            try:
                return self.store.update(job_id, expect, change)
            except StaleTransition:
                pass
        try:
            doc = self.store.get(job_id)
        except NotFound:
            return None
        if not holds(doc, running):
            return None  # taken back, or ended already
        requested = _requested_end(doc, attempt, done, note, entries)
        if requested is None:
            return None
        try:
            return self.store.update(job_id, Expect.move(JobState(requested.set["state"]), JobState.RUNNING,
                                                         attempt=attempt), requested)
        except StaleTransition:
            return None

    def finish_tasks(self, run: Run, results: dict[int, Outcome]) -> dict:
        """Record a chunk's results (`tasks.finish_chunk`): cancelled tasks end CANCELLED whatever they
        returned; positions with no result (the worker stopped first) go back untouched and the item is
        handed back for them; otherwise the item is acknowledged. One commit where the store allows."""
        with self.together():
            return self._finish_tasks(run, results)

    def _finish_tasks(self, run: Run, results: dict[int, Outcome]) -> dict:
        statuses = {pos: o.exit_status for pos, o in results.items()}
        found: dict = {}

        def change(doc: dict) -> Change | None:
            settled = found["settled"] = finish_chunk(doc, run.item.id, statuses)
            if settled is None:
                return None  # recovered as lost already
            cpu = sum(o.cpu_seconds for o in results.values())
            settled.change.set["cpu_seconds"] = (doc["cpu_seconds"] or 0.0) + cpu
            spec = arrays.parse_array(doc["array"])
            notes = [(spec.index_at(pos), o.staging_note) for pos, o in sorted(results.items()) if o.staging_note]
            return history.add_task_files(settled.change, doc, notes, at=self.clock())

        doc = update_array(self.store, run.item.job_id, change)
        settled = found.get("settled")
        if settled is not None:
            self._send_retries(doc, settled.retries, run.attempt + 1)
        if settled is not None and settled.back:
            self.queue.requeue(run.item, min(settled.back), run.attempt)
        else:
            self.queue.ack(run.item)
        return doc

    def _send_retries(self, doc: dict, positions: list[int], attempt: int) -> None:
        if positions:
            self.queue.send_many([(pools.work_queue(doc), doc["id"], p, p + 1, attempt, doc["priority"])
                                  for p in positions])

    # ---- give back ----------------------------------------------------------------------
    def give_back(self, run: Run) -> None:
        """The worker is stopping: return its work untouched, with no attempt used up (of a chunk,
        the tasks not run to their end; those that were are settled, never run again)."""
        if not run.is_array:
            change = Change(set={"state": JobState.QUEUED, "reason": f"worker {self.host} stopped; re-queued"},
                            add={"run_count": -1})
            new = self._end_run(run.job["id"], run.attempt, change, {"finished_at": self.clock()})
            if new is None:
                return
            if new["state"] == JobState.QUEUED.value:  # at a new attempt if a qrerun came first
                self.queue.requeue(run.item, run.item.lo, new["attempt"])
            else:
                self.queue.ack(run.item)  # its cancel came first: it ended CANCELLED
            return
        # Tasks that ran to their end are settled; the rest goes back untouched.
        self.finish_tasks(run, dict(run.results))

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
            chunk = doc["chunks"].get(item.id)
            if chunk is not None and self.chunk_alive(doc, item.id):
                # a duplicate delivery: the chunk's worker is still beating
                self._check_later(item, hold=self.registered(chunk["worker"], doc["id"], chunk["attempt"], item.id))
                return
            self._recover_chunk(item.job_id, item.id, item)
        else:
            running = doc["state"] == JobState.RUNNING.value and doc["attempt"] == item.attempt
            if running and self.job_alive(doc):
                # a duplicate delivery: the job's worker is still beating
                self._check_later(item, hold=self.registered(doc["exec_host"], doc["id"], doc["attempt"]))
                return
            self._recover_job(doc, item.attempt, item)

    def _check_later(self, item: WorkItem, hold: bool = False) -> None:
        """Have a live run's item come back later, unchanged (no attempt is used up).

        A redelivered item (SQS) whose run is registered (`hold`: the
        reconciler watches it) is hidden again for MESSAGE_HOLD_SECONDS: a run
        longer than SQS's 12-hour limit costs a receive and a visibility change
        every 11 hours. Any other redelivered item is released: a new copy
        visible after the lease (SQS: at most 900 s), which comes back to
        `recover_lost` under the same item id (see `SqsWorkQueue.release`),
        and the original deleted. A lease table's item (listed by `expired()`)
        is its worker's own lease: releasing it would take the work from a live
        worker and hand it to the next claimer, so its lease is pushed out by
        one lease instead; should the worker stop beating, it expires and is listed again.
        """
        if item.redelivered:
            if hold and self.queue.extend(item, MESSAGE_HOLD_SECONDS):
                return
            self.queue.release(item, delay=self.lease_seconds)
        else:
            self.queue.extend(item, self.lease_seconds)

    def _recover_job(self, doc: dict, attempt: int, item: WorkItem | None = None, why: str = "") -> None:
        """Re-queue or fail the lost run of `doc` at `attempt`; `item` is its work item, if one is at hand;
        `why` the worker counts as lost (default: it did not beat for a lease)."""
        if doc["state"] == JobState.QUEUED.value and doc["attempt"] == attempt:
            if item is not None:
                self._hand_out_again(item)
            return
        if doc["state"] != JobState.RUNNING.value or doc["attempt"] != attempt:
            if item is not None:
                self.queue.ack(item)
            return
        if item is not None:
            self._fence(doc["exec_host"], doc["id"], item.id, attempt)
        lost = f"worker {doc['exec_host']} lost ({why or self._silent()})"
        now = self.clock()
        then = exits.after_lost_worker(doc.get("rerunnable", True), doc["run_count"])
        lost_runs = doc.get("lost_runs", 0) + 1
        if then == "rerun":
            # A new attempt (so the lost run's item is stale), but no retry used up: see exits.retry_after_exit.
            change = Change(set={"state": JobState.QUEUED, "attempt": attempt + 1, "lost_runs": lost_runs,
                                 "reason": f"{lost}; job requeued to run again (rerunnable)"})
        elif then == "hold":
            change = Change(set={"state": JobState.HELD, "attempt": attempt + 1, "lost_runs": lost_runs,
                                 "reason": f"{exits.TOO_MANY_RUNS} ({doc['run_count']} runs; {lost})"})
        else:
            change = Change(set={"state": JobState.FAILED, "finished_at": now, "exit_status": exits.WORKER_LOST,
                                 "reason": f"job deleted, {lost}; not rerunnable (-r n)"})
        new = self._end_run(doc["id"], attempt, change, {"finished_at": now}, note=f"; {lost}",
                            entries=(("L", doc["exec_host"], change.set.get("attempt", 0)),))
        if new is None:
            return  # the worker finished after all: the item, if it comes back, finds the job final
        if new["state"] == JobState.QUEUED.value:
            if item is not None:
                self.queue.requeue(item, item.lo, new["attempt"])
            else:
                self.queue.send(pools.work_queue(new), new["id"], 0, 1, new["attempt"], new["priority"])
        elif item is not None:
            self.queue.ack(item)

    def _fence(self, host: str | None, job_id: str, item_id: str, attempt: int) -> None:
        """Kill the job a silent worker may still run for this run, before the run is taken back."""
        if self.fence is not None and host:
            self.fence(host, job_id, item_id, attempt)

    def _hand_out_again(self, item: WorkItem) -> None:
        """An item claimed but never started (no store change to send it anew): back to the queue as
        fresh work, not as a redelivery (which would come back to `recover_lost` instead of running)."""
        self.queue.release(replace(item, redelivered=False))

    def _silent(self) -> str:
        return f"no heartbeat for {self.lease_seconds:g}s"

    def _recover_chunk(self, job_id: str, chunk_id: str, item: WorkItem | None = None, why: str = "") -> None:
        """Settle a lost chunk (`tasks.lose_chunk`): its tasks run again as they were (an array is
        rerunnable; a lost worker uses up no retry), except a task lost exits.MAX_RUNS times, which
        fails. `item` is the chunk's work item, if one is at hand."""
        found: dict = {}

        def change(doc: dict) -> Change | None:
            found["before"] = doc
            chunk = found["chunk"] = doc["chunks"].get(chunk_id)
            settled = lose_chunk(doc, chunk_id, exits.WORKER_LOST)
            if settled is None:
                return None
            self._fence(chunk["worker"], job_id, chunk_id, chunk["attempt"])  # idempotent, if this is retried
            lost = f"worker {chunk['worker']} lost ({why or self._silent()})"
            settled.change.set["reason"] = (
                f"{lost}; its tasks requeued to run again" if settled.back else f"{lost}; {exits.TOO_MANY_RUNS}"
            )
            return settled.change

        doc = update_array(self.store, job_id, change)
        if found.get("chunk") is None:
            if item is not None:
                self._hand_out_again(item)
            return
        # Its tasks' work, as the one rule sends it: freed positions as never handed out, retries at their
        # attempt, nothing for an array being cancelled or finished.
        items = outbox.to_send(found["before"], doc)
        if items:
            self.queue.send_many(items)
        if item is not None:
            self.queue.ack(item)


def _requested_end(doc: dict, attempt: int, done: dict, note: str, entries: tuple[tuple, ...]) -> Change | None:
    """The end a running job's request asks for (`Dispatcher._end_run`): CANCELLED for a qdel (it wins),
    QUEUED at attempt + 1 for a qrerun, with PBS's rerun exit status (JOB_EXEC_RERUN), no retry used
    up (`reruns`: exits.free_runs) and not held for too many runs; None if nothing was asked. `entries`
    are the history of the end the run found; a rerun's tells of the rerun instead."""
    if doc["cancel_requested"]:
        reason = doc["reason"].replace("cancel requested", "cancelled") or "cancelled"
        change = Change(set={**done, "state": JobState.CANCELLED, "reason": reason + note})
    elif doc.get("rerun_requested"):
        again = attempt + 1
        change = Change(set={**done, "state": JobState.QUEUED, "attempt": again, "exit_status": exits.RERUN,
                             "finished_at": None, "rerun_requested": None,
                             "reason": f"{doc['reason'] or 'rerun requested'}; re-queued as attempt {again}{note}"},
                        add={"reruns": 1})
        ended = done.get("finished_at") or 0.0
        wall = round(ended - (doc["started_at"] or ended))
        lost = [entry for entry in entries if entry[0] == "L"]
        entries = ((lost[0][0], lost[0][1], again),) if lost else (
            ("x", exits.RERUN, round(done.get("cpu_seconds") or 0, 2), wall, again),)
    else:
        return None
    for entry in entries:
        history.add(change, *entry, at=done.get("finished_at"))
    return change


def _final_reason(outcome: Outcome, job: dict) -> str:
    tries = f"after {job['max_attempts']} attempts" if job["max_attempts"] > 1 else ""
    return " ".join(part for part in (outcome.reason or exits.describe(outcome.exit_status), tries) if part)

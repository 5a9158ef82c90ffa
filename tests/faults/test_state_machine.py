"""A Hypothesis state machine over the real scheduler and dispatcher on the local SQLite adapters.

In one process, on a temporary database, with time on a fake clock: submits (jobs, arrays with a
%limit, afterok dependents), claims and starts, heartbeats, finishes (success or failure), graceful
give-backs, cancels (jobs, array tasks, whole arrays; queued and running), stalls (a worker's agent
stops: no heartbeat, no self-fencing, its job runs on) and their end, time passing with and without
heartbeats, the reconciler, dependency release from the events table, and restarts (the store reopened).

The model keeps the runs that workers hold and plays their agents' part: a worker that could not
renew kills its own job when its lease runs out (hyperbatch.services.agent.Lease, the real rule),
and the reconciler's fence kills the job of a run it takes back. After every step:

- no job or array task has two live runs at once;
- a run taken back was never one whose worker could still renew (the fence only ever kills the job
  of a stalled worker: self-fencing comes first), and it was killed before it was taken back;
- no task is both final and running, and an array's counters match its tasks;
- a finished or cancelled task (or job) is never handed out again, and a final job stays final;
- a job depending afterok on a job or array is released only once that is SUCCEEDED with nothing
  of it pending or running;
- a run that comes back after it was taken (a stall ended) records nothing.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hyperbatch.core import tasks
from hyperbatch import config
from hyperbatch.adapters.local.sqlite import Database, SqliteJobStore, SqliteWorkQueue
from hyperbatch.core import arrays
from hyperbatch.core.cadence import Cadence
from hyperbatch.core.errors import Conflict, NotFound, SpecError
from hyperbatch.core.model import is_array
from hyperbatch.core.states import FINAL, JobState
from hyperbatch.core.tasks import chunk_positions, task_state
from hyperbatch.services.agent import Lease
from hyperbatch.services.dispatch import Dispatcher, Outcome, Run
from hyperbatch.services.lease_recovery import reconcile_once
from hyperbatch.services.release import on_event
from hyperbatch.services.scheduler import Caller, Scheduler

CONFIG = config.load(Path(__file__).resolve().parents[2] / "configurations")
ALICE = Caller("alice")
LEASE, HEARTBEAT = 3.0, 1.0
WORKERS = ("w0", "w1", "w2")
MOST_JOBS = 5
FINAL_STATES = {s.value for s in FINAL}


class Clock:
    """One fake clock for everything: wall-clock stamps in the store and the queue, and the workers'
    monotonic clocks (their leases)."""

    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Held:
    """A run a worker holds, and what its agent is doing about it."""

    run: Run
    worker: str
    lease: Lease
    stalled: bool = False
    dead: bool = False  # its job is no longer running: ended, killed by its agent or fenced
    fenced: bool = False  # killed by the reconciler's fence
    keys: list = field(default_factory=list)  # (job, index) this run covers

    @property
    def live(self) -> bool:
        return not self.dead


class SchedulerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="hyperbatch-machine-"))
        self.clock = Clock()
        self.open()
        self.jobs: list[str] = []
        self.parents: dict[str, str] = {}  # afterok dependent -> parent
        self.held: list[Held] = []
        self.ever_final: set[tuple[str, int | None]] = set()
        self.final_jobs: dict[str, str] = {}
        self.seq = 0

    def open(self) -> None:
        """Open (or reopen, after a restart) the store and the queue, and everyone who uses them."""
        self.db = Database(self.dir / "state.db")
        self.store, self.queue = SqliteJobStore(self.db), SqliteWorkQueue(self.db, clock=self.clock)
        self.scheduler = Scheduler(CONFIG, self.store, self.queue, None)
        self.reconciler = Dispatcher(self.store, self.queue, "reconciler", "local", LEASE, clock=self.clock,
                                     fence=self.fence)
        self.workers = {w: Dispatcher(self.store, self.queue, w, "local", LEASE, clock=self.clock,
                                      together=self.db.together) for w in WORKERS}

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- helpers --------------------------------------------------------------------------------
    def live(self) -> list[Held]:
        return [h for h in self.held if h.live]

    def healthy(self) -> list[Held]:
        return [h for h in self.held if h.live and not h.stalled]

    def pick(self, items: list, n: int):
        return items[n % len(items)]

    def fence(self, host: str, job_id: str, item_id: str, attempt: int) -> None:
        doc = self.store.get(job_id)
        for h in self.live():
            run = h.run
            if (self.workers[h.worker].host, run.item.job_id, run.item.id, run.attempt) == (host, job_id, item_id,
                                                                                          attempt):
                assert h.stalled, f"the reconciler took back a run whose worker could still renew: {run.item}"
                if is_array(doc):
                    assert item_id in doc["chunks"], "fenced after the chunk was settled"
                else:
                    assert (doc["state"], doc["attempt"]) == ("RUNNING", attempt), "fenced after it was taken"
                h.dead = h.fenced = True

    def self_fence(self) -> None:
        """What each agent that can act does when its lease runs out: kill its job, record nothing."""
        for h in self.healthy():
            if h.lease.expired():
                h.dead = True

    def beat(self, h: Held) -> None:
        """One heartbeat of a run whose worker can act, and what its agent does with the answer."""
        before = self.store.get(h.run.item.job_id)
        sent = h.lease.clock()
        signals = self.workers[h.worker].heartbeat(h.run)
        if signals.lease_lost:
            assert self.store.get(h.run.item.job_id) == before, "a heartbeat of a run taken back wrote"
            h.dead = True  # its agent kills the job; nothing is recorded
            return
        h.lease.renew(sent)
        if signals.cancel_all:
            self.end(h, cancelled=True)

    def end(self, h: Held, ok: bool = True, cancelled: bool = False) -> None:
        """The run's job (or chunk of tasks) ended: its worker records the result."""
        worker, run = self.workers[h.worker], h.run
        h.dead = True
        if run.positions:
            doc = self.store.get(run.item.job_id)
            skipped = set() if not cancelled else {p for p in run.positions}
            skipped |= {p for p in run.positions if str(run.spec.index_at(p)) in tasks.by_index(doc, tasks.CANCELLED_MAP)}
            results = {p: Outcome(0 if ok else 1, "") for p in run.positions if p not in skipped}
            worker.finish_tasks(run, results)
        else:
            worker.finish_job(run, Outcome(None, "cancelled", cancelled=True) if cancelled
                              else Outcome(0 if ok else 1, ""))

    # ---- submits --------------------------------------------------------------------------------
    @precondition(lambda self: len(self.jobs) < MOST_JOBS)
    @rule(attempts=st.integers(1, 3), parent=st.none() | st.integers(0, 10))
    def submit_job(self, attempts, parent):
        request = {"command": ["true"], "max_attempts": attempts}
        if parent is not None and self.jobs:
            request["depend"] = f"afterok:{self.pick(self.jobs, parent)}"
        doc = self.scheduler.submit([request], ALICE)[0]
        self.jobs.append(doc["id"])
        if "depend" in request:
            self.parents[doc["id"]] = request["depend"].split(":")[1]

    @precondition(lambda self: len(self.jobs) < MOST_JOBS)
    @rule(size=st.integers(1, 6), limit=st.none() | st.integers(1, 3), attempts=st.integers(1, 3))
    def submit_array(self, size, limit, attempts):
        spec = f"1-{size}" + (f"%{limit}" if limit else "")
        doc = self.scheduler.submit([{"command": ["true"], "array": spec, "max_attempts": attempts}], ALICE)[0]
        self.jobs.append(doc["id"])

    # ---- workers --------------------------------------------------------------------------------
    @rule(worker=st.sampled_from(WORKERS), most=st.integers(1, 4))
    def claim(self, worker, most):
        if any(h.worker == worker for h in self.live()):
            return  # a worker runs its work in series
        lease = Lease(Cadence.fine(LEASE, HEARTBEAT), clock=self.clock)
        item = self.queue.claim("batch", worker, most, LEASE)
        if item is None:
            return
        run = self.workers[worker].start(item)
        if run is None:
            return
        doc = self.store.get(item.job_id)
        if is_array(doc):
            keys = [(item.job_id, run.spec.index_at(p)) for p in run.positions]
        else:
            keys = [(item.job_id, None)]
        handed_again = [k for k in keys if k in self.ever_final]
        assert not handed_again, f"finished or cancelled work handed out again: {handed_again}"
        h = Held(run, worker, lease, keys=keys)
        self.held.append(h)
        if is_array(doc) and not run.positions:
            self.end(h)  # nothing to run in it (every task cancelled): settled at once

    @precondition(lambda self: self.healthy())
    @rule(n=st.integers(0, 10), ok=st.booleans())
    def finish(self, n, ok):
        self.end(self.pick(self.healthy(), n), ok=ok)

    @precondition(lambda self: self.healthy())
    @rule(n=st.integers(0, 10))
    def give_back(self, n):
        """The worker is stopped gracefully: it hands its work back untouched."""
        h = self.pick(self.healthy(), n)
        h.dead = True
        self.workers[h.worker].give_back(h.run)

    @precondition(lambda self: self.healthy())
    @rule(n=st.integers(0, 10))
    def stall(self, n):
        """SIGSTOP: the agent beats no more and cannot fence itself; its job runs on."""
        self.pick(self.healthy(), n).stalled = True

    @precondition(lambda self: any(h.stalled and not h.dead for h in self.held))
    @rule(n=st.integers(0, 10), ok=st.booleans())
    def resume(self, n, ok):
        """SIGCONT: the agent looks at its lease first; if it held on, it carries on."""
        h = self.pick([h for h in self.held if h.stalled and not h.dead], n)
        h.stalled = False
        if h.lease.expired():
            h.dead = True  # its supervisor kills the job at its first look
        else:
            self.beat(h)

    @precondition(lambda self: any(h.fenced for h in self.held))
    @rule(n=st.integers(0, 10), ok=st.booleans())
    def taken_run_comes_back(self, n, ok):
        """A fenced run's worker is let go on and tries to record its run anyway: nothing is written."""
        h = self.pick([h for h in self.held if h.fenced], n)
        job_id = h.run.item.job_id
        before = self.store.get(job_id)
        assert self.workers[h.worker].heartbeat(h.run).lease_lost
        self.end(h, ok=ok)
        h.fenced = False  # it has come back
        assert self.store.get(job_id) == before, "a run taken back recorded something"

    # ---- time -----------------------------------------------------------------------------------
    @rule(dt=st.sampled_from([0.5, 1.0]))
    def time_passes(self, dt):
        """A heartbeat's time: every worker that can act beats, then the daemon's reconciler runs."""
        for h in self.healthy():
            self.beat(h)
        self.pass_time(dt)

    @rule(dt=st.sampled_from([2.5, 4.0]))
    def time_passes_without_heartbeats(self, dt):
        """The store was out of reach (or the workers starved) for a while; then the reconciler runs."""
        self.pass_time(dt)

    def pass_time(self, dt: float) -> None:
        self.clock.now += dt
        self.self_fence()  # agents that can act look at their leases every few milliseconds
        reconcile_once(self.scheduler, self.reconciler)  # the daemon's reconciler runs every second

    # ---- users ----------------------------------------------------------------------------------
    @precondition(lambda self: self.jobs)
    @rule(n=st.integers(0, 10), task=st.none() | st.integers(0, 10))
    def cancel(self, n, task):
        job_id = self.pick(self.jobs, n)
        doc = self.store.get(job_id)
        index = None
        if task is not None and is_array(doc):
            spec = arrays.parse_array(doc["array"])
            index = spec.index_at(task % spec.size)
        try:
            self.scheduler.cancel(job_id, ALICE, index)
        except (Conflict, NotFound, SpecError):
            pass  # finished already: qdel says so

    @rule()
    def release(self):
        """The daemon's events loop: final states release (or cancel) their dependents."""
        for self.seq, event in self.store.events_after(self.seq):
            on_event(self.scheduler, event)

    @rule()
    def restart(self):
        """The daemon stops and starts: everything reopens the store; workers and their runs carry on."""
        self.open()

    # ---- invariants -----------------------------------------------------------------------------
    @invariant()
    def no_two_live_runs_of_one_task(self):
        covered = Counter(k for h in self.live() for k in h.keys)
        twice = [k for k, n in covered.items() if n > 1]
        assert not twice, f"two live runs at once of {twice}"

    @invariant()
    def tasks_and_counters_agree_and_final_stays_final(self):
        for job_id in self.jobs:
            doc = self.store.get(job_id)
            if not is_array(doc):
                if doc["state"] in FINAL_STATES:
                    assert self.final_jobs.setdefault(job_id, doc["state"]) == doc["state"], "final changed"
                    self.ever_final.add((job_id, None))
                    assert not any(h.live and (job_id, None) in h.keys for h in self.held), "final yet running"
                continue
            self.check_array(doc)

    def check_array(self, doc: dict) -> None:
        spec = arrays.parse_array(doc["array"])
        job_id = doc["id"]
        running = [p for c in doc["chunks"].values() for p in chunk_positions(c)]
        assert len(running) == len(set(running)), f"a task in two chunks: {doc['chunks']}"
        assert doc["running"] == len(running)
        assert sum(doc[k] for k in ("pending", "running", "succeeded", "failed", "cancelled")) == doc["total"]
        states = Counter(task_state(doc, spec, p)["state"] for p in range(spec.size))
        assert states["SUCCEEDED"] == doc["succeeded"], (states, doc)
        assert states["FAILED"] == doc["failed"] == len(tasks.by_index(doc, tasks.FAILED_MAP)), (states, doc)
        # a task cancelled while it runs shows RUNNING until its worker stops it and its chunk settles it
        assert states["RUNNING"] == doc["running"], (states, doc)
        assert states["CANCELLED"] == doc["cancelled"], (states, doc)
        assert states["QUEUED"] == doc["pending"], (states, doc)
        live = {k for h in self.held if h.live for k in h.keys}
        running_indices = {spec.index_at(p) for p in running}
        for pos in range(spec.size):
            index = spec.index_at(pos)
            final = task_state(doc, spec, pos)["state"] in FINAL_STATES and index not in running_indices
            if final:
                self.ever_final.add((job_id, index))
                assert (job_id, index) not in live, f"{job_id}[{index}] is final yet running"
            if str(index) in tasks.by_index(doc, tasks.FAILED_MAP) or str(index) in tasks.by_index(doc, tasks.RETRY_MAP):
                assert index not in running_indices, f"{job_id}[{index}] failed or waiting to retry, yet running"

    @invariant()
    def afterok_dependents_wait_for_all_of_their_parent(self):
        for child, parent in self.parents.items():
            if self.store.get(child)["state"] not in ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED"):
                continue  # waiting still, or cancelled (by a user, or because its parent can never succeed)
            doc = self.store.get(parent)
            assert doc["state"] == JobState.SUCCEEDED.value, f"{child} released while {parent} is {doc['state']}"
            assert doc["pending"] == doc["running"] == 0 and not doc["chunks"], f"{child} released early"
            assert not any(h.live and h.run.item.job_id == parent for h in self.held), f"{child} released early"


BOUNDS = dict(stateful_step_count=40, deadline=None, report_multiple_bugs=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
SchedulerMachine.TestCase.settings = settings(max_examples=100, **BOUNDS)
test_scheduler_state_machine = SchedulerMachine.TestCase


class WithoutFencing(SchedulerMachine):
    """The same machine with a reconciler that takes runs back without killing their jobs (as on AWS,
    where no one can reach another machine's processes, were workers not to fence themselves)."""

    def open(self) -> None:
        super().open()
        self.reconciler.fence = None


def test_the_machine_catches_a_run_taken_back_while_its_stalled_job_runs_on():
    """Hypothesis stops at the first counterexample, so a larger budget costs nothing when the machine
    finds the overlap early (it does in well under a second) and keeps a slow, loaded run from
    giving up before it does."""
    machine = WithoutFencing.TestCase
    machine.settings = settings(max_examples=400, derandomize=True, database=None, phases=[Phase.generate],
                                **BOUNDS)
    with pytest.raises(AssertionError, match="running|two live runs"):
        machine("runTest").runTest()

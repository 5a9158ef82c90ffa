"""hyperbatch.core.outbox.to_send: what a job's change makes runnable, against what the core sends today.

Two kinds of proof. Unit tests per transition. Then flows on the local backend
(Scheduler + Dispatcher on SQLite) with the store wrapped to record every
(old, new) document of a create or update and the queue wrapped to record
every send, send_many and requeue: to_send over the recorded transitions must
send what the core sent.

"What the core sent" is compared task by task after dropping what no claimer
could take (a range's positions already handed out, a retry no longer
waiting, anything of an array being cancelled): the core sends an array's
whole range again on release (`Scheduler.resend`, `reevaluate`) and gives a
cancelled chunk back as a message, where to_send sends only the free gaps.
Plain jobs are compared exactly. An item claimed but never started is handed
out again without a store change (`WorkQueue.release`, not recorded here): it
makes no new work runnable, so to_send rightly sends nothing for it.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hyperbatch.core import arrays, tasks

from hyperbatch import config
from hyperbatch.adapters.local import open_local
from hyperbatch.services.dispatch import Dispatcher, Outcome
from hyperbatch.core.errors import Conflict, NotFound, SpecError
from hyperbatch.core.model import is_array, new_job
from hyperbatch.core.outbox import sendable, to_send
from hyperbatch.core.tasks import free_ranges
from hyperbatch.services.release import on_event
from hyperbatch.services.scheduler import Caller, Scheduler

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configurations"
ALICE = Caller("alice")


def job(**fields):
    return new_job(**{"id": "J", "queue": "batch", **fields})


def array(spec="0-9", retrying=None, **fields):
    """An array document; `retrying`: {task index: attempt} of the tasks due for a retry."""
    size = arrays.parse_array(spec).size
    retries = {tasks.RETRY_MAP: tasks.pages_by_index(spec, retrying)} if retrying is not None else {}
    return new_job(**{"id": "A", "queue": "batch", "array": spec, "total": size, "pending": size, **retries,
                      **fields})


def with_retries(doc, retrying):
    return dict(doc, **{tasks.RETRY_MAP: tasks.pages_by_index(doc["array"], retrying)})


# ---- per transition -----------------------------------------------------------------------------

def test_a_new_queued_job_is_sent_once_at_its_attempt():
    assert to_send(None, job(priority=5)) == [("batch", "J", 0, 1, 1, 5)]
    for state in ("WAITING", "HELD", "CANCELLED"):
        assert to_send(None, job(state=state)) == []


def test_a_job_is_sent_when_it_becomes_queued_at_a_new_attempt_or_again():
    waiting, queued = job(state="WAITING"), job()
    running = job(state="RUNNING")
    assert to_send(waiting, queued) == [("batch", "J", 0, 1, 1, 0)]  # released
    assert to_send(job(state="HELD"), job(state="WAITING")) == []
    assert to_send(queued, running) == []  # claimed
    assert to_send(running, job(attempt=2)) == [("batch", "J", 0, 1, 2, 0)]  # retried
    assert to_send(running, job()) == [("batch", "J", 0, 1, 1, 0)]  # given back, same attempt
    assert to_send(queued, job(reason="x")) == []  # QUEUED at the same attempt: its message stands
    assert to_send(job(attempt=1), job(attempt=2)) == [("batch", "J", 0, 1, 2, 0)]
    for final in ("SUCCEEDED", "FAILED", "CANCELLED"):
        assert to_send(running, job(state=final)) == []
    assert to_send(queued, None) == []  # deleted (TTL, the undo of a failed create)


def test_a_rerun_is_sent_only_once_its_run_has_ended():
    """qrerun flags the running job: nothing is sent until its end makes it QUEUED at a new attempt."""
    running = job(state="RUNNING")
    flagged = job(state="RUNNING", rerun_requested=True)
    assert to_send(running, flagged) == []
    assert to_send(flagged, job(attempt=2, exit_status=-11)) == [("batch", "J", 0, 1, 2, 0)]


def test_a_job_moved_to_another_queue_is_sent_there():
    assert to_send(job(), job(queue="west")) == [("west", "J", 0, 1, 1, 0)]  # qmove of a queued job
    assert to_send(job(state="HELD"), job(state="HELD", queue="west")) == []  # held: sent once released
    moved = to_send(array("0-9"), array("0-9", queue="west"))
    assert moved == [("west", "A", 0, 10, 1, 0)]


def test_a_job_of_another_size_is_sent_to_its_pool_and_again_when_it_changes_size():
    big = job(pool="batch--large")
    assert to_send(None, big) == [("batch--large", "J", 0, 1, 1, 0)]
    assert to_send(big, job()) == [("batch", "J", 0, 1, 1, 0)]  # qalter back to the default size
    assert to_send(big, big) == []
    array = new_job(id="A", queue="batch", pool="batch--large", array="1-4", total=4, pending=4)
    assert to_send(None, array) == [("batch--large", "A", 0, 4, 1, 0)]


def test_a_new_array_is_one_item_of_its_whole_range():
    assert to_send(None, array("1-100", priority=3)) == [("batch", "A", 0, 100, 1, 3)]
    assert to_send(None, array(state="HELD")) == []
    assert to_send(None, array(state="WAITING")) == []
    assert to_send(None, array(state="CANCELLED", cancel_requested=True)) == []


def test_claiming_a_chunk_sends_nothing_the_tail_is_the_queue_adapters():
    old = array()
    new = array(state="RUNNING", dispatched=[[0, 4]], chunks={"m": {"lo": 0, "hi": 4}}, pending=6, running=4)
    assert to_send(old, new) == []
    # A retry claimed: its entry goes.
    assert to_send(array(dispatched=[[0, 10]], retrying={"3": 2}), array(dispatched=[[0, 10]])) == []


def test_failed_tasks_are_sent_as_retries_one_position_each():
    old = array("1-10", state="RUNNING", dispatched=[[0, 10]])
    new = array("1-10", state="RUNNING", dispatched=[[0, 10]], retrying={"2": 2, "10": 2, "5": 3})
    assert to_send(old, new) == [("batch", "A", 1, 2, 2, 0), ("batch", "A", 4, 5, 3, 0), ("batch", "A", 9, 10, 2, 0)]
    # An entry whose attempt changed is a new retry; one left alone is not sent again.
    assert to_send(new, array("1-10", dispatched=[[0, 10]], retrying={"2": 3, "10": 2, "5": 3})) == [
        ("batch", "A", 1, 2, 3, 0)]


def test_a_chunk_given_back_sends_the_range_that_became_free():
    old = array(state="RUNNING", dispatched=[[0, 8]])
    new = array(dispatched=[[0, 2], [6, 8]])
    assert to_send(old, new) == [("batch", "A", 2, 6, 1, 0)]
    # free before and after: only the part that is new
    assert to_send(array(dispatched=[[0, 4]]), array(dispatched=[[0, 1]])) == [("batch", "A", 1, 4, 1, 0)]


def test_an_array_released_from_a_hold_sends_its_gaps_and_its_retries():
    held = array("0-9", state="HELD", dispatched=[[0, 3], [5, 6]], retrying={"1": 2})
    queued = dict(held, state="QUEUED")
    assert to_send(held, dict(held, state="WAITING")) == []
    assert to_send(dict(held, state="WAITING"), queued) == [
        ("batch", "A", 3, 5, 1, 0), ("batch", "A", 6, 10, 1, 0), ("batch", "A", 1, 2, 2, 0)]


def test_nothing_is_sent_for_an_array_being_cancelled_or_finished():
    running = array(state="RUNNING", dispatched=[[0, 4]])
    assert to_send(running, with_retries(dict(running, cancel_requested=True), {"1": 2})) == []
    assert to_send(running, dict(running, state="FAILED", dispatched=[[0, 2]])) == []


def test_sendable_and_free_ranges():
    assert free_ranges([], 0, 5) == [(0, 5)]
    assert free_ranges([[1, 2], [3, 5]], 0, 6) == [(0, 1), (2, 3), (5, 6)]
    assert free_ranges([[1, 2], [3, 5]], 2, 4) == [(2, 3)]
    assert free_ranges([[0, 6]], 0, 6) == []
    assert sendable(None) == ([], {})
    assert sendable(array(state="HELD")) == ([], {})
    assert sendable(array(retrying={"4": 2}, dispatched=[[0, 9]])) == ([(9, 10)], {"0": "4=2"})  # position 4


# ---- recording the core on the local backend ----------------------------------------------------

class Log:
    """What happened, in order: ("op", name), ("write", old, new), ("send", item), ("requeue", item)."""

    def __init__(self):
        self.entries: list[tuple] = []

    def op(self, name: str) -> None:
        self.entries.append(("op", name))


class RecordingStore:
    def __init__(self, inner, log: Log):
        self.inner, self.log = inner, log

    def create(self, docs, edges, workflow=None):
        self.inner.create(docs, edges, workflow)
        for doc in docs:
            self.log.entries.append(("write", None, copy.deepcopy(self.inner.get(doc["id"]))))

    def update(self, job_id, expect, change):
        old = self.inner.get(job_id)
        new = self.inner.update(job_id, expect, change)
        self.log.entries.append(("write", copy.deepcopy(old), copy.deepcopy(new)))
        return new

    def __getattr__(self, name):
        return getattr(self.inner, name)


class RecordingQueue:
    def __init__(self, inner, store, log: Log):
        self.inner, self.store, self.log = inner, store, log

    def send(self, queue, job_id, lo, hi, attempt, priority=0):
        self.log.entries.append(("send", (queue, job_id, lo, hi, attempt, priority)))
        self.inner.send(queue, job_id, lo, hi, attempt, priority)

    def send_many(self, items):
        for item in items:
            self.log.entries.append(("send", tuple(item)))
        self.inner.send_many(items)

    def requeue(self, item, lo, attempt):
        if lo < item.hi:  # a requeue is a send of [lo, hi) at `attempt` (SqsWorkQueue: a new message)
            priority = self.store.get(item.job_id)["priority"]
            self.log.entries.append(("requeue", (item.queue, item.job_id, lo, item.hi, attempt, priority)))
        self.inner.requeue(item, lo, attempt)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def units(item, doc) -> list[tuple]:
    """An item as what a claimer can take from it while the job is `doc`: the job itself, or array tasks."""
    queue, job_id, lo, hi, attempt, priority = item
    if not is_array(doc):
        return [(queue, job_id, None, attempt, priority)]
    free, retrying = sendable(doc)
    if attempt == 1:
        return [(queue, job_id, p, 1, priority) for p in range(lo, hi) if any(a <= p < b for a, b in free)]
    return [(queue, job_id, lo, attempt, priority)] if tasks.TaskMap(retrying).get(lo) == attempt else []


def compare(log: Log, never_started_ops=("lose_unstarted",)) -> tuple[Counter, Counter]:
    """(what to_send sends, what the core sent), task by task; asserts the documented differences."""
    outbox, core = Counter(), Counter()
    docs: dict[str, dict] = {}
    op, written_since_op = None, set()
    for entry in log.entries:
        kind = entry[0]
        if kind == "op":
            op, written_since_op = entry[1], set()
        elif kind == "write":
            _, old, new = entry
            docs[new["id"]] = new
            written_since_op.add(new["id"])
            sent = to_send(old, new)
            for item in sent:
                found = units(item, new)
                # to_send only ever sends what a claimer can take, each task once
                assert len(found) == (item[3] - item[2] if item[4] == 1 else 1), (item, new)
                outbox.update(found)
        else:
            item = entry[1]
            if kind == "requeue" and item[1] not in written_since_op:
                # A message replaced, no store change: work that was runnable already (never started).
                assert op in never_started_ops, (op, item)
                continue
            core.update(units(item, docs[item[1]]))
    assert outbox - core == Counter(), outbox - core
    assert core - outbox == Counter(), core - outbox
    return outbox, core


class Flow:
    """Scheduler and Dispatchers over the local backend, store and queue recorded."""

    def __init__(self, root):
        self.backend = open_local(root)
        self.log = Log()
        self.store = RecordingStore(self.backend.store, self.log)
        self.queue = RecordingQueue(self.backend.queue, self.backend.store, self.log)
        self.config = config.load(CONFIG_DIR)
        self.scheduler = Scheduler(self.config, self.store, self.queue, self.backend.logs)
        self.workers = [Dispatcher(self.store, self.queue, f"w{i}", "r", 30) for i in range(2)]
        # Recovery after the lease: an hour ahead, every heartbeat is stale.
        self.later = Dispatcher(self.store, self.queue, "rec", "r", 30, clock=lambda: time.time() + 3600)
        self.seq = 0

    def submit(self, *requests, **request):
        self.log.op("submit")
        reqs = list(requests) or [request]
        for r in reqs:
            r.setdefault("command", ["true"])
        return self.scheduler.submit(reqs, ALICE)

    def claim(self, max_tasks=100, worker=0, queue="batch"):
        self.log.op("claim")
        dispatcher = self.workers[worker]
        item = self.queue.claim(queue, dispatcher.worker, max_tasks, 30)
        return dispatcher.start(item) if item else None

    def finish(self, run, status=0, failing=()):
        self.log.op("finish")
        if run.positions:
            spec = run.spec
            return self.workers[0].finish_tasks(
                run, {p: Outcome(1 if spec.index_at(p) in failing else 0) for p in run.positions})
        return self.workers[0].finish_job(run, Outcome(status, f"exit status {status}"))

    def drain(self):
        """Run whatever is queued, releasing dependents, until nothing is left."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            self.deliver()
            if not any(self.backend.queue.backlog(q) for q in ("batch", "west")):
                return
            ran = False
            for queue in ("batch", "west"):
                if (run := self.claim(max_tasks=3, queue=queue)) is not None:
                    self.finish(run)
                    ran = True
            if not ran:
                time.sleep(0.02)  # an array at its %limit comes back after a short back-off
        raise AssertionError("work left after 20 s")

    def deliver(self):
        self.log.op("deliver")
        while batch := self.backend.store.events_after(self.seq):
            for self.seq, event in batch:
                on_event(self.scheduler, event)


def test_flows_send_through_to_send_what_the_core_sends(tmp_path):
    flow = Flow(tmp_path)
    # submit: a lone job, a batch with an array, a held job, and dependents (arrays in queue west)
    lone = flow.submit(command=["true"], max_attempts=2)[0]
    arr, prio, held = flow.submit({"array": "1-10", "max_attempts": 2, "queue": "west"}, {"priority": 4},
                                  {"hold": True})
    child = flow.submit(depend=f"afterok:{lone['id']}")[0]
    grandchild = flow.submit(array="0-3", queue="west", depend=f"afterany:{child['id']}")[0]
    never = flow.submit(depend=f"afternotok:{lone['id']}")[0]
    assert [d["state"] for d in (arr, prio, held, child, grandchild, never)] == [
        "QUEUED", "QUEUED", "HELD", "WAITING", "WAITING", "WAITING"]
    # a job fails once and is retried
    run = flow.claim()
    assert run.job["id"] == prio["id"]  # priority first
    flow.finish(run)
    run = flow.claim()
    assert run.job["id"] == lone["id"]
    flow.finish(run, status=3)
    # array chunks: a claim narrowed (the tail stays for others), a chunk given back, failed tasks retried
    chunk = flow.claim(max_tasks=4, queue="west")
    assert chunk.positions == [0, 1, 2, 3]
    run = flow.claim(max_tasks=3, worker=1, queue="west")
    assert run.positions == [4, 5, 6]
    flow.log.op("give_back")
    flow.workers[1].give_back(run)
    flow.finish(chunk, failing={2, 3})
    run = flow.claim()
    assert (run.job["id"], run.attempt) == (lone["id"], 2)
    flow.finish(run)
    flow.deliver()  # child released, never cancelled
    assert flow.backend.store.get(never["id"])["state"] == "CANCELLED"
    # lost workers: a job re-queued at attempt 2, an array chunk's tasks handed out again
    run = flow.claim()
    assert run.job["id"] == child["id"]
    flow.log.op("lose")
    flow.later.recover_lost(run.item)
    assert flow.backend.store.get(child["id"])["attempt"] == 2
    run = flow.claim(max_tasks=2, queue="west")
    assert run.positions == [7, 8]
    flow.log.op("lose")
    flow.later.recover_lost(run.item)
    doc = flow.backend.store.get(arr["id"])
    assert tasks.by_index(doc, tasks.RETRY_MAP) == {"2": 2, "3": 2}  # the lost tasks use up no retry: positions 7 and 8 are free again
    assert not any(lo <= 7 < hi or lo <= 8 < hi for lo, hi in doc["dispatched"])
    # hold and release: an array with retries waiting, a job held at submission
    flow.log.op("hold")
    flow.scheduler.hold(arr["id"], ALICE)
    flow.log.op("release")
    flow.scheduler.release(arr["id"], ALICE)
    flow.log.op("release")
    flow.scheduler.release(held["id"], ALICE)
    # a job claimed and never started, its worker lost: its message is replaced
    flow.log.op("claim_unstarted")
    item = flow.queue.claim("batch", "ghost", 100, 30)
    assert (item.job_id, item.attempt) == (child["id"], 2)
    flow.log.op("lose_unstarted")
    flow.later.recover_lost(item)
    # drain everything
    flow.drain()
    final = {d["id"]: flow.backend.store.get(d["id"])["state"] for d in (lone, arr, prio, held, child, grandchild)}
    assert set(final.values()) == {"SUCCEEDED"}, final
    outbox, core = compare(flow.log)
    assert outbox == core and sum(outbox.values()) > 25


def test_a_rerun_job_is_sent_once_by_the_end_of_its_run(tmp_path):
    flow = Flow(tmp_path)
    doc = flow.submit()[0]
    run = flow.claim()
    flow.log.op("rerun")
    flow.scheduler.rerun(doc["id"], ALICE)
    assert flow.claim() is None  # nothing to claim while the run goes on
    flow.finish(run)  # it ended on its own after the request: re-queued all the same
    again = flow.claim()
    assert (again.job["id"], again.attempt) == (doc["id"], 2)
    flow.finish(again)
    assert flow.backend.store.get(doc["id"])["state"] == "SUCCEEDED"
    outbox, core = compare(flow.log)
    assert outbox == core and sum(outbox.values()) == 2


def test_an_array_released_by_reevaluate_keeps_its_waiting_retries(tmp_path):
    flow = Flow(tmp_path)
    parent = flow.submit()[0]
    flow.finish(flow.claim())
    flow.deliver()
    arr = flow.submit(array="1-4", max_attempts=2, depend=f"afterok:{parent['id']}")[0]
    assert arr["state"] == "QUEUED"
    flow.finish(flow.claim(), failing={2})
    flow.log.op("hold")
    flow.scheduler.hold(arr["id"], ALICE)
    assert flow.claim() is None  # a worker drops the retry's message while the array is held
    flow.log.op("release")
    flow.scheduler.release(arr["id"], ALICE)  # HELD -> WAITING -> reevaluate -> QUEUED
    outbox, core = compare(flow.log)
    assert outbox == core
    while (run := flow.claim()) is not None:  # the retry of task 2 was sent again: it runs
        flow.finish(run)
    done = flow.backend.store.get(arr["id"])
    assert (done["state"], done["succeeded"]) == ("SUCCEEDED", 4)


# ---- any interleaving ---------------------------------------------------------------------------

class Transitions(RuleBasedStateMachine):
    """Random flows of submits, claims, results, give-backs, lost workers, holds, releases, cancels."""

    @initialize()
    def setup(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.flow = Flow(self.tmp.name)
        self.ids: list[str] = []
        self.runs: list[tuple[int, object]] = []
        self.unstarted: list = []

    def teardown(self):
        if hasattr(self, "flow"):
            # Run the rest to the end (claims, retries, releases of dependents), still recorded.
            for worker, run in self.runs:
                self.flow.log.op("finish")
                self.flow.workers[worker].give_back(run)
            for item in self.unstarted:
                self.flow.log.op("lose_unstarted")
                self.flow.later.recover_lost(item)
            self.flow.drain()
            compare(self.flow.log)
            self.flow.backend.db.conn.close()
        self.tmp.cleanup()

    def _pick(self, which):
        return self.ids[which % len(self.ids)] if self.ids else None

    @rule(kind=st.sampled_from(["job", "array", "limited"]), attempts=st.integers(1, 3), size=st.integers(1, 6),
          hold=st.booleans(), depend=st.sampled_from(["", "afterok", "afterany", "afternotok"]),
          which=st.integers(0, 50), priority=st.integers(0, 2), count=st.integers(1, 3))
    def submit(self, kind, attempts, size, hold, depend, which, priority, count):
        request = {"max_attempts": attempts, "priority": priority}
        if kind != "job":
            request["array"] = f"1-{size}" + ("%2" if kind == "limited" else "")
        if hold:
            request["hold"] = True
        if depend and self.ids:
            request["depend"] = f"{depend}:{self._pick(which)}"
        docs = self.flow.submit(*[dict(request) for _ in range(count)])
        self.ids += [d["id"] for d in docs]

    @rule(worker=st.integers(0, 1), max_tasks=st.integers(1, 4))
    def claim(self, worker, max_tasks):
        run = self.flow.claim(max_tasks, worker)
        if run is not None:
            self.runs.append((worker, run))

    @rule()
    def claim_unstarted(self):
        self.flow.log.op("claim_unstarted")
        item = self.flow.queue.claim("batch", "ghost", 2, 30)
        if item is not None:
            self.unstarted.append(item)

    @precondition(lambda self: self.unstarted)
    @rule(which=st.integers(0, 50))
    def lose_unstarted(self, which):
        item = self.unstarted.pop(which % len(self.unstarted))
        self.flow.log.op("lose_unstarted")
        self.flow.later.recover_lost(item)

    @precondition(lambda self: self.runs)
    @rule(which=st.integers(0, 50), status=st.integers(0, 2), fail_mask=st.integers(0, 63))
    def finish(self, which, status, fail_mask):
        worker, run = self.runs.pop(which % len(self.runs))
        self.flow.log.op("finish")
        dispatcher = self.flow.workers[worker]
        if run.positions:
            dispatcher.finish_tasks(run, {p: Outcome((fail_mask >> (p % 6)) & 1) for p in run.positions})
        else:
            dispatcher.finish_job(run, Outcome(status, "x"))

    @precondition(lambda self: self.runs)
    @rule(which=st.integers(0, 50))
    def give_back(self, which):
        worker, run = self.runs.pop(which % len(self.runs))
        self.flow.log.op("give_back")
        self.flow.workers[worker].give_back(run)

    @precondition(lambda self: self.runs)
    @rule(which=st.integers(0, 50))
    def lose(self, which):
        _, run = self.runs.pop(which % len(self.runs))
        self.flow.log.op("lose")
        self.flow.later.recover_lost(run.item)

    @precondition(lambda self: self.ids)
    @rule(which=st.integers(0, 50), action=st.sampled_from(["hold", "release", "cancel", "cancel_task"]),
          index=st.integers(1, 6))
    def control(self, which, action, index):
        job_id = self._pick(which)
        self.flow.log.op(action)
        try:
            if action == "hold":
                self.flow.scheduler.hold(job_id, ALICE)
            elif action == "release":
                self.flow.scheduler.release(job_id, ALICE)
            elif action == "cancel":
                self.flow.scheduler.cancel(job_id, ALICE)
            else:
                self.flow.scheduler.cancel(job_id, ALICE, index=index)
        except (Conflict, NotFound, SpecError):  # refused as a user would be: nothing changed
            pass

    @rule()
    def deliver(self):
        self.flow.deliver()

    @invariant()
    def sends_agree(self):
        if hasattr(self, "flow"):
            compare(self.flow.log)


TestTransitions = Transitions.TestCase
TestTransitions.settings = settings(
    max_examples=120, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)

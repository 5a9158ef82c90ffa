"""Array jobs: one record, chunked claims, %limits, per-task retries, cancels and lost chunks."""

import tempfile
import time
from collections import Counter

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import pytest

from hyperbatch.core import tasks
from hyperbatch.core import arrays
from hyperbatch.core.errors import JobFinished

from hyperbatch import config
from hyperbatch.adapters.local import open_local
from hyperbatch.services.dispatch import Dispatcher, Outcome
from hyperbatch.services.scheduler import Caller, Scheduler
from hyperbatch.core.tasks import chunk_positions, task_state

ALICE = Caller("alice")


def finish(harness, run, failing=()):
    spec = run.spec
    results = {p: Outcome(1 if spec.index_at(p) in failing else 0) for p in run.positions}
    return harness.worker.finish_tasks(run, results)


def test_an_array_is_one_record_run_in_chunks(harness):
    array = harness.submit(array="1-10")
    assert array["total"] == 10 and array["pending"] == 10
    first = harness.claim(max_tasks=4)
    assert [first.spec.index_at(p) for p in first.positions] == [1, 2, 3, 4]
    assert harness.job(array["id"])["state"] == "RUNNING"
    second = harness.claim(max_tasks=100)
    assert len(second.positions) == 6
    finish(harness, first)
    doc = finish(harness, second)
    assert (doc["state"], doc["succeeded"], doc["running"], doc["exit_status"]) == ("SUCCEEDED", 10, 0, 0)
    assert len(harness.backend.store.query(owner="alice").items) == 1


def test_a_concurrency_limit_caps_running_tasks(harness):
    array = harness.submit(array="1-10%2")
    run = harness.claim(max_tasks=10)
    assert len(run.positions) == 2
    assert harness.claim(max_tasks=10) is None  # at the limit: the rest waits
    finish(harness, run)
    time.sleep(0.25)  # the limited item comes back after a short back-off
    assert len(harness.claim(max_tasks=10).positions) == 2
    assert harness.job(array["id"])["running"] == 2


def test_failed_tasks_are_retried_alone_then_recorded(harness):
    array = harness.submit(array="1-5", max_attempts=2)
    finish(harness, harness.claim(), failing={2, 4})
    doc = harness.job(array["id"])
    assert tasks.by_index(doc, tasks.RETRY_MAP) == {"2": 2, "4": 2} and doc["pending"] == 2 and doc["state"] == "QUEUED"
    for _ in range(2):
        run = harness.claim()
        assert run.attempt == 2 and len(run.positions) == 1
        finish(harness, run, failing={2})
    doc = harness.job(array["id"])
    assert (doc["state"], doc["succeeded"], doc["failed"], tasks.by_index(doc, tasks.FAILED_MAP)) == ("FAILED", 4, 1, {"2": 1})
    assert doc["reason"] == "1 of 5 tasks failed (indices 2)"


def test_task_rows_show_each_tasks_state(harness):
    array = harness.submit(array="0-8:2", max_attempts=1)
    run = harness.claim(max_tasks=2)
    finish(harness, run, failing={2})
    harness.claim(max_tasks=1)
    doc = harness.job(array["id"])
    spec = arrays.parse_array(doc["array"])
    rows = [task_state(doc, spec, p) for p in range(spec.size)]
    assert [(r["index"], r["state"]) for r in rows] == [
        (0, "SUCCEEDED"), (2, "FAILED"), (4, "RUNNING"), (6, "QUEUED"), (8, "QUEUED")
    ]
    assert rows[1]["exit_status"] == 1


def test_cancel_one_task_before_it_runs(harness):
    array = harness.submit(array="1-4")
    harness.scheduler.cancel(array["id"], ALICE, index=3)
    run = harness.claim()
    assert [run.spec.index_at(p) for p in run.positions] == [1, 2, 4]
    doc = finish(harness, run)
    assert (doc["succeeded"], doc["cancelled"], doc["state"]) == (3, 1, "CANCELLED")


def test_cancel_the_whole_array_while_a_chunk_runs(harness):
    array = harness.submit(array="1-100")
    run = harness.claim(max_tasks=10)
    doc = harness.scheduler.cancel(array["id"], ALICE)
    assert (doc["cancelled"], doc["running"], doc["state"]) == (90, 10, "RUNNING")
    assert harness.worker.heartbeat(run).cancel_all
    doc = harness.worker.finish_tasks(run, {run.positions[0]: Outcome(0)})  # the rest was not reached
    # The one that returned 0 ended after the cancel was accepted: cancelled too.
    assert (doc["state"], doc["succeeded"], doc["cancelled"]) == ("CANCELLED", 0, 100)
    assert harness.claim() is None


def test_running_tasks_whose_cancel_was_accepted_end_cancelled_whatever_they_return(harness):
    """qdel ID[2] and qdel ID[] answered 0 while their tasks ran: those tasks never count as succeeded."""
    array = harness.submit(array="1-3")
    run = harness.claim()
    harness.scheduler.cancel(array["id"], ALICE, index=2)
    doc = finish(harness, run)  # every task returned 0 before a heartbeat told the worker
    assert (doc["state"], doc["succeeded"], doc["cancelled"]) == ("CANCELLED", 2, 1)
    assert task_state(doc, run.spec, 1)["state"] == "CANCELLED"

    whole = harness.submit(array="1-2")
    run = harness.claim()
    assert harness.scheduler.cancel(whole["id"], ALICE)["state"] == "RUNNING"
    doc = finish(harness, run)
    assert (doc["state"], doc["succeeded"], doc["cancelled"]) == ("CANCELLED", 0, 2)


def test_cancel_of_a_finished_task_or_array_is_told_it_finished(harness):
    array = harness.submit(array="1-2")
    run = harness.claim(max_tasks=1)
    finish(harness, run)
    with pytest.raises(JobFinished, match=r"Job has finished .*\[1\]"):
        harness.scheduler.cancel(array["id"], ALICE, index=1)
    finish(harness, harness.claim())
    with pytest.raises(JobFinished):
        harness.scheduler.cancel(array["id"], ALICE)
    assert harness.job(array["id"])["state"] == "SUCCEEDED"


def test_a_lost_chunk_runs_again_without_using_a_retry(harness):
    array = harness.submit(array="1-3")
    harness.claim()
    harness.lose_lease()
    doc = harness.job(array["id"])
    assert (doc["running"], doc["pending"], tasks.by_index(doc, tasks.RETRY_MAP), doc["dispatched"]) == (0, 3, {}, [])
    assert doc["lost_runs"] == 1 and "its tasks requeued to run again" in doc["reason"]
    run = harness.claim()
    assert (run.positions, run.attempt) == ([0, 1, 2], 1)
    finish(harness, run)
    done = harness.job(array["id"])
    assert (done["state"], done["run_count"]) == ("SUCCEEDED", 2)  # run_count counts runs: the lost one too


def test_a_lost_retry_chunk_keeps_its_attempt(harness):
    array = harness.submit(array="1-3", max_attempts=2)
    finish(harness, harness.claim(), failing={2})  # index 2 fails once: retried at attempt 2
    run = harness.claim()
    assert (run.positions, run.attempt) == ([1], 2)
    harness.lose_lease()
    assert tasks.by_index(harness.job(array["id"]), tasks.RETRY_MAP) == {"2": 2}
    run = harness.claim()
    assert (run.positions, run.attempt) == ([1], 2)
    finish(harness, run)
    assert harness.job(array["id"])["state"] == "SUCCEEDED"


def test_an_array_that_loses_too_many_chunks_fails_them(harness):
    from hyperbatch.core import exits

    array = harness.submit(array="1-2")
    for _ in range(exits.MAX_RUNS - 1):
        harness.claim()
        harness.lose_lease()
    harness.claim()
    harness.lose_lease()
    doc = harness.job(array["id"])
    assert doc["state"] == "FAILED" and tasks.by_index(doc, tasks.FAILED_MAP) == {"1": exits.WORKER_LOST, "2": exits.WORKER_LOST}


def test_a_lost_lease_of_a_chunk_whose_worker_beats_is_left_to_it(harness):
    array = harness.submit(array="1-3", max_attempts=2)
    run = harness.claim()
    harness.worker.recover_lost(run.item)  # its worker is alive: the lease is renewed, nothing else
    doc = harness.job(array["id"])
    assert (list(doc["chunks"]), doc["running"], tasks.by_index(doc, tasks.RETRY_MAP)) == ([run.item.id], 3, {})
    assert not harness.worker.heartbeat(run).lease_lost
    harness.lose_lease()  # an hour later it is silent: its tasks are handed out again
    doc = harness.job(array["id"])
    assert (doc["chunks"], doc["running"], doc["pending"], tasks.by_index(doc, tasks.RETRY_MAP)) == ({}, 0, 3, {})


def test_a_stopping_worker_settles_the_tasks_it_finished_and_hands_back_only_the_rest(harness):
    """Defect 5, graceful: `hyper local down` mid-chunk must not run finished tasks again."""
    array = harness.submit(array="1-5")
    run = harness.claim(max_tasks=5)
    for pos in run.positions[:2]:
        run.done(pos, Outcome(0))
    harness.worker.give_back(run)  # the third was running when the stop came: no result
    doc = harness.job(array["id"])
    assert (doc["succeeded"], doc["pending"], doc["running"], doc["state"]) == (2, 3, 0, "QUEUED")
    again = harness.claim(max_tasks=5)
    assert [again.spec.index_at(p) for p in again.positions] == [3, 4, 5] and again.attempt == 1
    doc = finish(harness, again)
    assert (doc["state"], doc["succeeded"], doc["run_count"]) == ("SUCCEEDED", 5, 1)


def test_after_a_crash_only_what_ran_since_the_last_heartbeat_runs_again(harness):
    """Defect 5, crash: each heartbeat records the chunk's progress."""
    array = harness.submit(array="1-10", max_attempts=2)
    run = harness.claim(max_tasks=10)
    for pos in run.positions[:5]:
        run.done(pos, Outcome(0))
    assert not harness.worker.heartbeat(run).lease_lost
    assert harness.job(array["id"])["succeeded"] == 5  # recorded by the heartbeat
    for pos in run.positions[5:7]:
        run.done(pos, Outcome(0))  # finished after the last heartbeat, then the worker dies
    harness.lose_lease()
    doc = harness.job(array["id"])
    assert doc["succeeded"] == 5 and (doc["pending"], tasks.by_index(doc, tasks.RETRY_MAP)) == (5, {})  # as they were: no retry used
    retried = []
    while (again := harness.claim()) is not None:
        retried += [again.spec.index_at(p) for p in again.positions]
        assert again.attempt == 1
        finish(harness, again)
    assert sorted(retried) == [6, 7, 8, 9, 10]
    doc = harness.job(array["id"])
    assert (doc["state"], doc["succeeded"], doc["run_count"]) == ("SUCCEEDED", 10, 2)  # run_count shows it


def test_a_heartbeat_never_settles_a_chunks_last_task(harness):
    array = harness.submit(array="1-3", max_attempts=2)
    run = harness.claim(max_tasks=3)
    for pos in run.positions:
        run.done(pos, Outcome(1 if pos == 0 else 0))
    harness.worker.heartbeat(run)
    doc = harness.job(array["id"])
    assert (doc["succeeded"], doc["running"], tasks.by_index(doc, tasks.RETRY_MAP)) == (1, 1, {"1": 2})  # task 1's retry is due
    doc = harness.worker.finish_tasks(run, run.results)
    assert (doc["succeeded"], doc["running"], doc["chunks"]) == (2, 0, {})


def test_hold_and_release_an_array(harness):
    array = harness.submit(array="1-6")
    harness.scheduler.hold(array["id"], ALICE)
    assert harness.claim() is None
    harness.scheduler.release(array["id"], ALICE)
    finish(harness, harness.claim())
    assert harness.job(array["id"])["state"] == "SUCCEEDED"


def test_a_million_task_array_costs_one_record(harness):
    array = harness.submit(array="1-1000000")
    assert harness.backend.queue.backlog("batch") == 1_000_000
    run = harness.claim(max_tasks=64)
    finish(harness, run)
    doc = harness.job(array["id"])
    assert doc["dispatched"] == [[0, 64]] and doc["pending"] == 1_000_000 - 64
    assert harness.backend.db.conn.execute("SELECT COUNT(*) FROM work").fetchone()[0] == 1


class ArrayAccounting(RuleBasedStateMachine):
    """Any interleaving of claims, results, lost workers and cancels accounts for every task exactly once."""

    @initialize(size=st.integers(1, 30), limit=st.one_of(st.none(), st.integers(1, 5)), attempts=st.integers(1, 3))
    def setup(self, size, limit, attempts):
        self.tmp = tempfile.TemporaryDirectory()
        backend = open_local(self.tmp.name)
        cfg = config.load("configurations")
        self.scheduler = Scheduler(cfg, backend.store, backend.queue, backend.logs)
        self.backend = backend
        self.workers = [Dispatcher(backend.store, backend.queue, f"w{i}", "r", 30) for i in range(3)]
        # Recovery happens after the lease: its clock is an hour ahead, so every heartbeat is stale.
        self.reconciler = Dispatcher(backend.store, backend.queue, "rec", "r", 30, clock=lambda: time.time() + 3600)
        spec = f"1-{size}" + (f"%{limit}" if limit else "")
        self.id = self.scheduler.submit([{"command": ["true"], "array": spec, "max_attempts": attempts}], ALICE)[0]["id"]
        self.runs = []

    def doc(self):
        return self.backend.store.get(self.id)

    @rule(worker=st.integers(0, 2), max_tasks=st.integers(1, 8))
    def claim(self, worker, max_tasks):
        dispatcher = self.workers[worker]
        item = self.backend.queue.claim("batch", dispatcher.worker, max_tasks, 30)
        run = dispatcher.start(item) if item else None
        if run:
            self.runs.append((dispatcher, run))

    @precondition(lambda self: self.runs)
    @rule(which=st.integers(0, 100), fail_mask=st.integers(0, 255), cut=st.integers(0, 8))
    def finish(self, which, fail_mask, cut):
        dispatcher, run = self.runs.pop(which % len(self.runs))
        done = run.positions[: max(0, len(run.positions) - cut)] if cut < 3 else run.positions
        dispatcher.finish_tasks(run, {**{p: Outcome((fail_mask >> (p % 8)) & 1) for p in done}, **run.results})

    @precondition(lambda self: self.runs)
    @rule(which=st.integers(0, 100), done=st.integers(0, 8), fail_mask=st.integers(0, 255))
    def beat(self, which, done, fail_mask):
        """The worker got through some tasks; its heartbeat records that progress."""
        dispatcher, run = self.runs[which % len(self.runs)]
        for pos in run.positions[:done]:
            if pos not in run.results:
                run.done(pos, Outcome((fail_mask >> (pos % 8)) & 1))
        dispatcher.heartbeat(run)

    @precondition(lambda self: self.runs)
    @rule(which=st.integers(0, 100))
    def lose(self, which):
        _, run = self.runs.pop(which % len(self.runs))
        self.reconciler.recover_lost(run.item)

    @precondition(lambda self: self.runs)
    @rule(which=st.integers(0, 100))
    def stop_worker(self, which):
        dispatcher, run = self.runs.pop(which % len(self.runs))
        dispatcher.give_back(run)

    @rule(index=st.integers(1, 30))
    def cancel_task(self, index):
        doc = self.doc()
        spec = arrays.parse_array(doc["array"])
        pos = spec.position_of(index)
        if pos is not None and task_state(doc, spec, pos)["state"] in ("QUEUED", "RUNNING"):
            self.scheduler.cancel(self.id, ALICE, index=index)

    @precondition(lambda self: not self.doc()["cancel_requested"])
    @rule()
    def cancel_all(self):
        if self.doc()["state"] not in ("SUCCEEDED", "FAILED", "CANCELLED"):
            self.scheduler.cancel(self.id, ALICE)

    @invariant()
    def counted_once(self):
        doc = self.doc()
        counts = [doc[k] for k in ("pending", "running", "succeeded", "failed", "cancelled")]
        assert min(counts) >= 0, counts
        assert sum(counts) == doc["total"], counts
        assert set(doc["chunks"]) == {r.item.id for _, r in self.runs}
        assert doc["running"] == sum(len(chunk_positions(c)) for c in doc["chunks"].values()), doc
        assert doc["running"] <= sum(len(r.positions) for _, r in self.runs)

    def teardown(self):
        # Drain: every task must reach a final state and the rows must agree with the counters.
        for _ in range(1000):
            while self.runs:
                dispatcher, run = self.runs.pop()
                dispatcher.finish_tasks(run, {p: Outcome(0) for p in run.positions})
            item = self.backend.queue.claim("batch", "drain", 8, 30)
            if item is None:
                time.sleep(0.001)
                if not self.backend.queue.backlog("batch") and not self.backend.queue.in_flight("batch"):
                    break
                continue
            run = self.workers[0].start(item)
            if run:
                self.runs.append((self.workers[0], run))
        doc = self.doc()
        assert doc["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"), doc
        spec = arrays.parse_array(doc["array"])
        rows = Counter(task_state(doc, spec, p)["state"] for p in range(spec.size))
        assert rows == Counter({s: doc[k] for s, k in (("SUCCEEDED", "succeeded"), ("FAILED", "failed"),
                                                       ("CANCELLED", "cancelled")) if doc[k]})
        self.tmp.cleanup()


TestArrayAccounting = ArrayAccounting.TestCase
TestArrayAccounting.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
)

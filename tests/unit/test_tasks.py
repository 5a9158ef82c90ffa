"""The array's bookkeeping operations (hyperbatch.core.tasks), on documents: pure, no store."""

from hyperbatch.core import tasks
from hyperbatch.core.model import Expect, apply, new_job

COUNTERS = ("pending", "running", "succeeded", "failed", "cancelled")


def array(spec="1-5", cancelled_indices=(), **fields):
    """An array document; `cancelled_indices`: its tasks cancelled already."""
    size = int(spec.split("%")[0].split("-")[1]) - int(spec.split("-")[0]) + 1
    if cancelled_indices:
        fields[tasks.CANCELLED_MAP] = tasks.pages_by_index(spec, dict.fromkeys(cancelled_indices, 1))
    return new_job(id="A", array=spec, total=size, **{"pending": size, **fields})


def write(doc, change):
    """What update_array writes: the change, then the derived state."""
    new = apply(doc, Expect(), change)
    derived = tasks.derived_fields(new)
    return {**new, **derived}


def test_a_range_of_only_cancelled_tasks_is_settled_not_run():
    doc = array("1-5%1", cancelled_indices=[3], pending=4, cancelled=1)
    claim = tasks.claim_chunk(doc, "c1", 2, 3, 1, "w", 0.0)
    assert claim.positions == [] and (claim.lo, claim.hi) == (2, 3)
    new = write(doc, claim.change)
    assert new["chunks"] == {} and new["dispatched"] == [[2, 3]]
    assert [new[k] for k in COUNTERS] == [4, 0, 0, 0, 1]  # nothing counted twice, nothing running
    assert tasks.claim_chunk(new, "c2", 2, 3, 1, "w", 0.0).change is None  # handed out: nothing more


def test_a_chunk_steps_over_cancelled_tasks_and_takes_the_room_the_limit_leaves():
    doc = array("1-6%2", cancelled_indices=[2, 3], pending=4, cancelled=2)
    claim = tasks.claim_chunk(doc, "c1", 0, 6, 1, "w", 0.0)
    assert claim.positions == [0, 3] and (claim.lo, claim.hi) == (0, 4)
    new = write(doc, claim.change)
    assert new["chunks"]["c1"]["skip"] == [1, 2] and new["running"] == 2 and new["state"] == "RUNNING"
    assert tasks.claim_chunk(new, "c2", 4, 6, 1, "w", 0.0).full


def test_settling_a_chunk_counts_each_task_once():
    doc = write(array("1-4"), tasks.claim_chunk(array("1-4"), "c1", 0, 4, 1, "w", 0.0).change)
    settled = tasks.finish_chunk(doc, "c1", {0: 0, 1: 3, 2: 0, 3: 0})
    new = write(doc, settled.change)
    assert [new[k] for k in COUNTERS] == [0, 0, 3, 1, 0]
    assert (new["state"], tasks.by_index(new, tasks.FAILED_MAP), new["chunks"]) == ("FAILED", {"2": 3}, {})


def test_a_lost_chunk_runs_again_as_it_was_until_it_was_lost_too_often():
    from hyperbatch.core import exits

    doc = array("1-2")
    doc = write(doc, tasks.claim_chunk(doc, "c1", 0, 2, 1, "w", 0.0).change)
    settled = tasks.lose_chunk(doc, "c1", -20)
    doc = write(doc, settled.change)
    # Freed, no attempt used up: handed out again as never handed out.
    assert (settled.back, doc[tasks.RETRY_MAP], doc["dispatched"], doc["pending"]) == ([0, 1], {}, [], 2)
    assert tasks.by_index(doc, tasks.LOST_MAP) == {"1": 1, "2": 1} and doc["lost_runs"] == 1
    assert write(doc, tasks.claim_chunk(doc, "again", 0, 2, 1, "w", 0.0).change)["run_count"] == 2  # the lost run counts
    for n in range(2, exits.MAX_RUNS + 1):
        doc = write(doc, tasks.claim_chunk(doc, f"c{n}", 0, 1, 1, "w", 0.0).change)
        doc = write(doc, tasks.lose_chunk(doc, f"c{n}", -20).change)
    assert tasks.by_index(doc, tasks.FAILED_MAP) == {"1": -20} and doc["pending"] == 1  # lost MAX_RUNS times: failed


def test_cancelling_a_finished_task_or_array_changes_nothing():
    doc = array("1-2")
    doc = write(doc, tasks.claim_chunk(doc, "c1", 0, 1, 1, "w", 0.0).change)
    doc = write(doc, tasks.finish_chunk(doc, "c1", {0: 0}).change)
    assert tasks.cancel_tasks(doc, "r", index=1) is None  # task 1 succeeded: its counters stay
    doc = write(doc, tasks.cancel_tasks(doc, "r", index=2))
    assert [doc[k] for k in COUNTERS] == [0, 0, 1, 0, 1] and doc["state"] == "CANCELLED"
    assert tasks.cancel_tasks(doc, "r") is None


def test_a_dead_letter_of_a_held_array_fails_nothing():
    doc = array("1-3", state="HELD")
    assert tasks.fail_tasks(doc, "m1", 0, 3, 1, -1) is None
    queued = array("1-3")
    doc = write(queued, tasks.fail_tasks(queued, "m1", 0, 3, 1, -1))
    assert (doc["state"], doc["failed"], doc["pending"]) == ("FAILED", 3, 0)


# ---- task maps --------------------------------------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402


def test_a_task_map_keeps_runs_of_positions_as_short_text():
    tm = tasks.TaskMap(None)
    for pos in (3, 4, 5, 6, 7, 9):
        tm.set(pos, 1)
    tm.set(12, 2)
    tm.set_range(20, 25, 2)
    assert tm.pages() == {"0": "3-7,9,12=2,20-24"}
    assert tasks.TaskMap(tm.pages()).get(22) == 2 and tasks.TaskMap(tm.pages()).get(8) is None
    tm.set_range(0, 30, None)
    assert tm.pages() == {}


def test_a_million_tasks_that_fail_alike_take_a_few_bytes():
    tm = tasks.TaskMap(None)
    tm.set_range(0, 1_000_000, 1)
    pages = tm.pages()
    assert len(pages) == -(-1_000_000 // tasks.PAGE_SIZE) and sum(len(t) for t in pages.values()) < 1000
    assert tasks.TaskMap(pages).count() == 1_000_000


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40_000), st.integers(0, 40), st.one_of(st.none(), st.integers(-29, 3))),
                max_size=40))
def test_a_task_map_holds_what_a_dict_of_positions_would(ops):
    tm, model = tasks.TaskMap(None), {}
    for lo, n, value in ops:
        tm.set_range(lo, lo + n, value)
        for pos in range(lo, lo + n):
            if value is None:
                model.pop(pos, None)
            else:
                model[pos] = value
    assert dict(tm.items()) == model
    again = tasks.TaskMap(tm.pages())  # through its text, as a store keeps it
    assert dict(again.items()) == model and again.count() == len(model)
    assert all(tasks.decode_runs(text) for text in tm.pages().values())  # no empty page is kept

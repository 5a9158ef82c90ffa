"""The array's bookkeeping operations (hyperbatch.core.tasks), on documents: pure, no store."""

from hyperbatch.core import tasks
from hyperbatch.core.model import Expect, apply, new_job

COUNTERS = ("pending", "running", "succeeded", "failed", "cancelled")


def array(spec="1-5", **fields):
    size = int(spec.split("%")[0].split("-")[1]) - int(spec.split("-")[0]) + 1
    return new_job(id="A", array=spec, total=size, **{"pending": size, **fields})


def write(doc, change):
    """What update_array writes: the change, then the derived state."""
    new = apply(doc, Expect(), change)
    derived = tasks.derived_fields(new)
    return {**new, **derived}


def test_a_range_of_only_cancelled_tasks_is_settled_not_run():
    doc = array("1-5%1", cancelled_tasks={"3": True}, pending=4, cancelled=1)
    claim = tasks.claim_chunk(doc, "c1", 2, 3, 1, "w", 0.0)
    assert claim.positions == [] and (claim.lo, claim.hi) == (2, 3)
    new = write(doc, claim.change)
    assert new["chunks"] == {} and new["dispatched"] == [[2, 3]]
    assert [new[k] for k in COUNTERS] == [4, 0, 0, 0, 1]  # nothing counted twice, nothing running
    assert tasks.claim_chunk(new, "c2", 2, 3, 1, "w", 0.0).change is None  # handed out: nothing more


def test_a_chunk_steps_over_cancelled_tasks_and_takes_the_room_the_limit_leaves():
    doc = array("1-6%2", cancelled_tasks={"2": True, "3": True}, pending=4, cancelled=2)
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
    assert (new["state"], new["failed_tasks"], new["chunks"]) == ("FAILED", {"2": 3}, {})


def test_a_lost_chunk_runs_again_as_it_was_until_it_was_lost_too_often():
    from hyperbatch.core import exits

    doc = array("1-2")
    doc = write(doc, tasks.claim_chunk(doc, "c1", 0, 2, 1, "w", 0.0).change)
    settled = tasks.lose_chunk(doc, "c1", -20)
    doc = write(doc, settled.change)
    # Freed, no attempt used up: handed out again as never handed out.
    assert (settled.back, doc["retrying"], doc["dispatched"], doc["pending"]) == ([0, 1], {}, [], 2)
    assert doc["lost_tasks"] == {"1": 1, "2": 1} and doc["lost_runs"] == 1
    assert write(doc, tasks.claim_chunk(doc, "again", 0, 2, 1, "w", 0.0).change)["run_count"] == 2  # the lost run counts
    for n in range(2, exits.MAX_RUNS + 1):
        doc = write(doc, tasks.claim_chunk(doc, f"c{n}", 0, 1, 1, "w", 0.0).change)
        doc = write(doc, tasks.lose_chunk(doc, f"c{n}", -20).change)
    assert doc["failed_tasks"] == {"1": -20} and doc["pending"] == 1  # lost MAX_RUNS times: failed


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

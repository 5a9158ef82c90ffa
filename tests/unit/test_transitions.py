"""The transition table is the rule: expectations come from it, and a forbidden move is refused by both stores."""

import pytest

from hyperbatch.adapters.aws.items import update_request
from hyperbatch.core.errors import IllegalTransition
from hyperbatch.core.model import Change, Expect, apply, new_job
from hyperbatch.core.states import ACTIVE, FINAL, TRANSITIONS, JobState, allowed, pbs_state, sources

MOVES = [(a, b) for a in JobState for b in JobState if b in TRANSITIONS[a]]  # in a fixed order, for xdist
FORBIDDEN = [(a, b) for a in JobState for b in JobState if a != b and b not in TRANSITIONS[a]]


def test_final_states_never_change_and_every_active_state_can_be_cancelled():
    assert all(not TRANSITIONS[s] for s in FINAL)
    assert all(allowed(s, JobState.CANCELLED) for s in ACTIVE)


def test_a_job_that_never_started_can_fail_but_not_succeed():
    """QUEUED -> FAILED: work dead-lettered before any worker ran it ends with a reason, not queued forever."""
    assert allowed(JobState.QUEUED, JobState.FAILED)
    assert not allowed(JobState.QUEUED, JobState.SUCCEEDED)
    assert sources(JobState.FAILED) == {JobState.QUEUED, JobState.RUNNING}


@pytest.mark.parametrize("source,target", MOVES)
def test_every_move_in_the_table_builds_and_applies(source, target):
    doc = new_job(id="J", state=source.value)
    expect = Expect.move(target, source)
    assert expect.states == {source}
    assert apply(doc, expect, Change(set={"state": target}))["state"] == target.value
    update_request(expect, Change(set={"state": target}), queue="batch", retention_seconds=1, now=0)


@pytest.mark.parametrize("source,target", FORBIDDEN)
def test_a_forbidden_move_raises_before_anything_is_written(source, target):
    doc = new_job(id="J", state=source.value)
    with pytest.raises(IllegalTransition):
        Expect.move(target, source)
    # An expectation written by hand that admits the forbidden source is refused by both stores' rule.
    by_hand = Expect.state(source)
    with pytest.raises(IllegalTransition):
        apply(doc, by_hand, Change(set={"state": target}))
    with pytest.raises(IllegalTransition):
        update_request(by_hand, Change(set={"state": target}), queue="batch", retention_seconds=1, now=0)


def test_a_state_change_must_say_what_it_moves_from():
    with pytest.raises(IllegalTransition, match="Expect.move"):
        apply(new_job(id="J"), Expect(version=0), Change(set={"state": JobState.RUNNING}))


def test_the_default_sources_are_the_tables():
    assert Expect.move(JobState.QUEUED).states == {JobState.WAITING, JobState.HELD, JobState.RUNNING}
    assert Expect.move(JobState.CANCELLED).states == ACTIVE


def test_a_running_job_asked_to_rerun_shows_pbs_substate_60_unless_deleted_since():
    """OpenPBS req_rerunjob2: the job stays R in JOB_SUBSTATE_RERUN while MoM kills it."""
    running = new_job(id="J", state="RUNNING")
    assert pbs_state(running) == ("R", 42)
    assert pbs_state({**running, "rerun_requested": True}) == ("R", 60)
    assert pbs_state({**running, "rerun_requested": True, "cancel_requested": True}) == ("R", 42)  # qdel wins
    assert pbs_state({**running, "state": "QUEUED", "attempt": 2}) == ("Q", 10)

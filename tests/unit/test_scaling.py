import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperbatch.core.errors import SpecError
from hyperbatch.core.scaling import plan, wanted_workers


@pytest.mark.parametrize(
    "backlog, ratio, max_workers, wanted",
    [(0, 1, 10, 0), (1, 1, 10, 1), (10, 3, 10, 4), (9, 3, 10, 3), (1000, 1, 10, 10), (5, 10, 10, 1), (5, 1, 0, 0)],
)
def test_wanted_workers(backlog, ratio, max_workers, wanted):
    assert wanted_workers(backlog, ratio, max_workers) == wanted


@pytest.mark.parametrize("args", [(1, 0, 10), (-1, 1, 10), (1, 1, -1)])
def test_wanted_workers_rejects(args):
    with pytest.raises(SpecError):
        wanted_workers(*args)


def test_plan_starts_the_difference_by_weight():
    assert plan(10, {}, {"a": 1, "b": 1}, 1, 100) == {"a": 5, "b": 5}
    # a already runs more than its share of 10 (2.5): the 4 missing workers all go to b.
    assert plan(10, {"a": 4, "b": 2}, {"a": 1, "b": 3}, 1, 100) == {"a": 0, "b": 4}
    assert plan(10, {"a": 4}, {"a": 1, "b": 1}, 2, 100) == {"a": 0, "b": 1}  # b is the one short of its share


def test_plan_never_negative_and_lists_every_region():
    assert plan(0, {"a": 5}, {"a": 1, "b": 0}, 1, 10) == {"a": 0, "b": 0}
    assert plan(3, {"a": 5}, {"a": 1, "b": 1}, 1, 10) == {"a": 0, "b": 0}


def test_running_in_unweighted_regions_counts():
    assert plan(4, {"old-region": 3}, {"a": 1}, 1, 10) == {"a": 1}


def test_plan_capped_by_max_workers():
    assert plan(1000, {"a": 2}, {"a": 1, "b": 1}, 1, 10) == {"a": 3, "b": 5}


def test_plan_respects_region_capacity_minus_running():
    assert plan(10, {"a": 3}, {"a": 1, "b": 1}, 1, 100, {"a": 4, "b": 100}) == {"a": 1, "b": 6}
    assert plan(10, {"a": 6}, {"a": 1, "b": 1}, 1, 100, {"a": 4, "b": 2}) == {"a": 0, "b": 2}
    assert plan(10, {}, {"a": 1, "b": 1}, 1, 100, {"a": 2}) == {"a": 2, "b": 8}


@given(
    st.integers(0, 10_000),
    st.dictionaries(st.sampled_from("abc"), st.integers(0, 20)),
    st.dictionaries(st.sampled_from("abc"), st.sampled_from([0, 1, 2.5]), min_size=1),
    st.integers(1, 10),
    st.integers(0, 60),
)
def test_plan_never_exceeds_max_workers(backlog, running, weights, ratio, max_workers):
    new = plan(backlog, running, weights, ratio, max_workers)
    assert set(new) == set(weights)
    assert sum(running.values()) + sum(new.values()) <= max(max_workers, sum(running.values()))
    if any(weights.values()):
        assert sum(new.values()) == max(0, wanted_workers(backlog, ratio, max_workers) - sum(running.values()))


def test_workers_started_one_at_a_time_still_follow_the_weights():
    weights = {"us-east-1": 1, "us-west-2": 3, "eu-west-1": 0}
    running = {r: 0 for r in weights}
    for backlog in range(1, 5):  # jobs arrive one by one; each scaler pass starts what is missing
        for region, n in plan(backlog, running, weights, 1, 4).items():
            running[region] += n
    assert running == {"us-east-1": 1, "us-west-2": 3, "eu-west-1": 0}

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperbatch.core.errors import SpecError
from hyperbatch.core.routing import split


def test_examples():
    assert split(4, {"a": 1, "b": 3, "c": 0}) == {"a": 1, "b": 3, "c": 0}
    assert split(0, {"a": 1, "b": 1}) == {"a": 0, "b": 0}
    assert split(5, {"a": 1}) == {"a": 5}
    assert split(3, {}) == {}
    assert split(3, {"a": 0}) == {"a": 0}


def test_ties_go_by_region_name():
    assert split(1, {"b": 1, "a": 1}) == {"a": 1, "b": 0}
    assert split(10, {"c": 1, "b": 1, "a": 1}) == {"a": 4, "b": 3, "c": 3}


def test_largest_remainder_not_floor_then_first():
    # quotas 0.6, 1.2, 2.2 -> floors 0, 1, 2; one left goes to the largest remainder (a)
    assert split(4, {"a": 0.6, "b": 1.2, "c": 2.2}) == {"a": 1, "b": 1, "c": 2}


def test_capacity_overflow_goes_by_weight():
    assert split(10, {"a": 1, "b": 1, "c": 2}, {"a": 0}) == {"a": 0, "b": 3, "c": 7}
    assert split(10, {"a": 1, "b": 1, "c": 1}, {"a": 1}) == {"a": 1, "b": 5, "c": 4}
    assert split(10, {"a": 8, "b": 1, "c": 1}, {"a": 2, "b": 3}) == {"a": 2, "b": 3, "c": 5}


def test_capacity_shortfall_returns_what_fits():
    assert split(10, {"a": 1, "b": 1}, {"a": 1, "b": 2}) == {"a": 1, "b": 2}
    assert split(10, {"a": 1, "b": 0}, {"a": 3, "b": 100}) == {"a": 3, "b": 0}
    assert split(10, {"a": 1}, {"a": -4}) == {"a": 0}


def test_missing_capacity_is_unlimited():
    assert split(10, {"a": 1, "b": 1}, {"a": 2}) == {"a": 2, "b": 8}


@pytest.mark.parametrize(
    "n, weights, hint",
    [(-1, {"a": 1}, "zero or more"), (1, {"a": -1}, "weight for a"), (1, {"a": math.nan}, "weight for a")],
)
def test_rejects(n, weights, hint):
    with pytest.raises(SpecError, match=hint):
        split(n, weights)


regions = st.sampled_from(["a", "b", "c", "d", "e"])
weights_st = st.dictionaries(regions, st.sampled_from([0, 0.5, 1, 2, 3, 7.5, 10]), min_size=1)


@given(st.integers(0, 500), weights_st, st.data())
def test_split_properties(n, weights, data):
    capacity = data.draw(st.none() | st.dictionaries(st.sampled_from(sorted(weights)), st.integers(-2, 200)))
    out = split(n, weights, capacity)
    assert set(out) == set(weights)
    assert all(v >= 0 for v in out.values())
    assert all(out[r] == 0 for r, w in weights.items() if w == 0)
    cap = {r: math.inf for r in weights} | {r: max(0, c) for r, c in (capacity or {}).items()}
    assert all(out[r] <= cap[r] for r in weights)
    fits = sum(min(cap[r], n) for r, w in weights.items() if w > 0)
    assert sum(out.values()) == min(n, fits)


@given(st.integers(0, 500), weights_st)
def test_split_follows_weights_without_capacity(n, weights):
    out = split(n, weights)
    total = sum(weights.values())
    for r, w in weights.items():
        quota = n * w / total if total else 0
        assert abs(out[r] - quota) < 1  # largest remainder stays within one of the exact share
        for s, v in weights.items():
            if w > v:
                assert out[r] >= out[s]


@given(st.integers(0, 200), weights_st)
def test_deterministic_and_order_independent(n, weights):
    reversed_weights = dict(reversed(list(weights.items())))
    assert split(n, weights) == split(n, reversed_weights)

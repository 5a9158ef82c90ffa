import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperbatch.core.arrays import MAX_ARRAY_SIZE, ArraySpec, array_state, format_indices, parse_array
from hyperbatch.core.errors import SpecError
from hyperbatch.core.states import JobState


@pytest.mark.parametrize(
    "text, spec, size",
    [
        ("1-100", ArraySpec(1, 100), 100),
        ("0-10:2", ArraySpec(0, 10, 2), 6),
        ("0-9:2", ArraySpec(0, 9, 2), 5),
        ("1-1000%10", ArraySpec(1, 1000, 1, 10), 1000),
        ("0-10:2%3", ArraySpec(0, 10, 2, 3), 6),
        ("7", ArraySpec(7, 7), 1),
        ("  3-4 \n", ArraySpec(3, 4), 2),
        ("0-0", ArraySpec(0, 0), 1),
    ],
)
def test_parse(text, spec, size):
    assert parse_array(text) == spec
    assert parse_array(text).size == size


@pytest.mark.parametrize(
    "spec, text",
    [
        (ArraySpec(1, 100), "1-100"),
        (ArraySpec(0, 10, 2), "0-10:2"),
        (ArraySpec(1, 1000, limit=10), "1-1000%10"),
        (ArraySpec(0, 10, 2, 3), "0-10:2%3"),
        (ArraySpec(7, 7), "7"),
        (ArraySpec(7, 7, limit=2), "7%2"),
        (ArraySpec(7, 7, 3), "7-7:3"),
    ],
)
def test_str(spec, text):
    assert str(spec) == text


@pytest.mark.parametrize(
    "text, hint",
    [
        ("5-1", "array range '5-1': the end must not be below the start, as in 1-100"),
        ("-1-5", "indices must be zero or more"),
        ("-3", "indices must be zero or more"),
        ("0-10:0", "the step must be 1 or more, as in 0-10:2"),
        ("1-10%0", "limit of tasks running at once must be 1 or more"),
        ("0-10000000", f"more than the maximum of {MAX_ARRAY_SIZE}"),
        ("abc", "use START-END[:STEP][%LIMIT], as in 1-100"),
        ("", "use START-END[:STEP][%LIMIT]"),
        ("1-", "use START-END"),
        ("1-10:", "use START-END"),
        ("7:2", "use START-END"),
        ("1,2", "use START-END"),
        ("+1-3", "use START-END"),
        ("1-٣", "use START-END"),
        ("1" * 40, "use START-END"),
    ],
)
def test_parse_rejects(text, hint):
    with pytest.raises(SpecError) as err:
        parse_array(text)
    assert hint in str(err.value)


def test_constructor_validates_too():
    with pytest.raises(SpecError, match="the step must be 1 or more"):
        ArraySpec(0, 10, -1)
    with pytest.raises(SpecError, match="zero or more"):
        ArraySpec(-1, 10)


def test_max_size_is_allowed():
    assert parse_array(f"1-{MAX_ARRAY_SIZE}").size == MAX_ARRAY_SIZE
    assert parse_array(f"0-{2 * MAX_ARRAY_SIZE - 1}:2").size == MAX_ARRAY_SIZE


def test_index_at_and_position_of():
    spec = parse_array("3-11:4")  # 3, 7, 11
    assert list(spec.indices()) == [3, 7, 11]
    assert [spec.index_at(p) for p in range(3)] == [3, 7, 11]
    assert [spec.position_of(i) for i in (3, 7, 11)] == [0, 1, 2]
    assert [spec.position_of(i) for i in (0, 2, 4, 12, 15, -1)] == [None] * 6
    with pytest.raises(IndexError):
        spec.index_at(3)
    with pytest.raises(IndexError):
        spec.index_at(-1)


specs = st.builds(
    lambda start, span, step, limit: ArraySpec(start, start + span, step, limit),
    st.integers(0, 10**6),
    st.integers(0, 5000),
    st.integers(1, 50),
    st.none() | st.integers(1, 1000),
)


@given(specs)
def test_positions_and_indices_agree(spec):
    indices = list(spec.indices())
    assert len(indices) == spec.size
    assert [spec.index_at(p) for p in range(spec.size)] == indices
    assert all(spec.position_of(spec.index_at(p)) == p for p in range(spec.size))
    assert indices[-1] <= spec.end


@given(specs, st.integers(-10, 10**6 + 6000))
def test_position_of_is_none_off_the_range(spec, index):
    pos = spec.position_of(index)
    assert (pos is not None) == (index in set(spec.indices()))


@given(specs)
def test_str_round_trips(spec):
    assert parse_array(str(spec)) == spec


@pytest.mark.parametrize(
    "counts, state",
    [
        ((1, 1, 0, 5, 0), JobState.RUNNING),
        ((0, 1, 0, 0, 0), JobState.RUNNING),
        ((3, 0, 2, 1, 1), JobState.QUEUED),
        ((0, 0, 5, 1, 1), JobState.FAILED),
        ((0, 0, 5, 0, 1), JobState.CANCELLED),
        ((0, 0, 5, 0, 0), JobState.SUCCEEDED),
    ],
)
def test_array_state(counts, state):
    assert array_state(*counts) is state


def test_format_indices():
    assert format_indices([9, 1, 2, 3, 7, 10, 2]) == "1-3,7,9-10"
    assert format_indices([]) == ""
    assert format_indices([5]) == "5"


@given(st.sets(st.integers(0, 10_000)))
def test_format_indices_lists_each_index_once_in_ranges(indices):
    text = format_indices(indices)
    listed = set()
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        listed.update(range(int(first), int(last or first) + 1))
    assert listed == set(indices)
    assert " " not in text and ",," not in text

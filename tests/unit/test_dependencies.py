import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperbatch.core.dependencies import KINDS, Dependency, evaluate, format_depend, parse_depend
from hyperbatch.core.errors import SpecError
from hyperbatch.core.states import JobState

A, B, C = "101", "102", "103"


def test_parse_pbs_syntax():
    assert parse_depend(f"afterok:{A}:{B},afterany:{C}") == [
        Dependency("afterok", A),
        Dependency("afterok", B),
        Dependency("afterany", C),
    ]
    assert parse_depend(f"depend=afternotok:{A}") == [Dependency("afternotok", A)]
    assert parse_depend(f" afterok : {A} , AFTERANY:{B} ") == [Dependency("afterok", A), Dependency("afterany", B)]


def test_empty_is_no_dependencies():
    assert parse_depend("") == []
    assert parse_depend("  ") == []
    assert parse_depend("depend=") == []


def test_duplicates_removed_order_kept():
    assert parse_depend(f"afterok:{B}:{A}:{B},afterany:{C},afterok:{A}") == [
        Dependency("afterok", B),
        Dependency("afterok", A),
        Dependency("afterany", C),
    ]


def test_whole_array_brackets_mean_the_array():
    assert parse_depend(f"afterok:{A}[]") == [Dependency("afterok", A)]


def test_ids_as_pbs_prints_them_name_the_same_jobs():
    assert parse_depend(f"afterok:{A}.login1:{B}[].login1,afterany:{C}.login1.example.com") == [
        Dependency("afterok", A), Dependency("afterok", B), Dependency("afterany", C),
    ]


def test_array_task_is_refused_with_hint():
    with pytest.raises(SpecError) as err:
        parse_depend(f"afterok:{A}[3]")
    assert "array task cannot be a dependency" in str(err.value)
    assert f"afterok:{A}[]" in str(err.value)


@pytest.mark.parametrize(
    "text, hint",
    [
        (f"before:{A}", "unknown kind 'before'; use afterok, afterany or afternotok"),
        (f"after:{A}", "use afterok, afterany or afternotok"),
        ("afterok", "give one or more job ids after 'afterok:'"),
        ("afterok:", "give one or more job ids"),
        (f"afterok:{A}::{B}", "give one or more job ids"),
        (f"afterok:{A},,afterany:{B}", "remove the empty entry"),
        ("afterok:12a.server", "'12a.server' is not a job id, as in afterok:1234"),
        ("afterok:abc", "is not a job id"),
    ],
)
def test_parse_rejects(text, hint):
    with pytest.raises(SpecError) as err:
        parse_depend(text)
    assert hint in str(err.value)


def test_constructor_checks_kind():
    with pytest.raises(SpecError, match="afterok, afterany or afternotok"):
        Dependency("beforeok", A)


def test_str_and_format():
    assert str(Dependency("afterok", A)) == f"afterok:{A}"
    deps = [Dependency("afterok", A), Dependency("afterok", B), Dependency("afterany", C), Dependency("afterok", C)]
    assert format_depend(deps) == f"afterok:{A}:{B},afterany:{C},afterok:{C}"
    assert format_depend([]) == ""


ids = st.sampled_from([A, B, C, "104", "1050"])
dep_lists = st.lists(st.builds(Dependency, st.sampled_from(KINDS), ids), unique=True)


@given(dep_lists)
def test_format_parse_round_trip(deps):
    assert parse_depend(format_depend(deps)) == deps
    assert parse_depend("depend=" + format_depend(deps)) == deps


S = JobState


@pytest.mark.parametrize(
    "kind, state, verdict",
    [
        ("afterok", S.SUCCEEDED, "met"),
        ("afterok", S.FAILED, "never"),
        ("afterok", S.CANCELLED, "never"),
        ("afterany", S.SUCCEEDED, "met"),
        ("afterany", S.FAILED, "met"),
        ("afterany", S.CANCELLED, "met"),
        ("afternotok", S.FAILED, "met"),
        ("afternotok", S.CANCELLED, "met"),
        ("afternotok", S.SUCCEEDED, "never"),
    ]
    + [(kind, state, "wait") for kind in KINDS for state in (S.WAITING, S.HELD, S.QUEUED, S.RUNNING)],
)
def test_evaluate_one(kind, state, verdict):
    assert evaluate([Dependency(kind, A)], {A: state})[0] == verdict


def test_evaluate_reasons():
    assert evaluate([Dependency("afterok", A)], {A: S.FAILED}) == (
        "never",
        f"dependency afterok:{A} can never be met: {A} FAILED",
    )
    assert evaluate([Dependency("afternotok", A)], {A: S.SUCCEEDED}) == (
        "never",
        f"dependency afternotok:{A} can never be met: {A} SUCCEEDED",
    )
    assert evaluate([Dependency("afterany", B)], {}) == (
        "never",
        f"dependency afterany:{B} can never be met: {B} does not exist",
    )


def test_evaluate_combinations():
    deps = [Dependency("afterok", A), Dependency("afterany", B)]
    assert evaluate([], {}) == ("met", "")
    assert evaluate(deps, {A: S.SUCCEEDED, B: S.FAILED}) == ("met", "")
    assert evaluate(deps, {A: S.SUCCEEDED, B: S.RUNNING}) == ("wait", "")
    # impossible wins over waiting, whatever the order
    assert evaluate(deps, {A: S.CANCELLED, B: S.RUNNING})[0] == "never"
    assert evaluate(deps, {A: S.QUEUED, B: S.SUCCEEDED, C: S.FAILED}) == ("wait", "")
    assert evaluate(deps + [Dependency("afterok", C)], {A: S.QUEUED, B: S.QUEUED, C: S.FAILED})[0] == "never"


def test_evaluate_accepts_state_strings():
    assert evaluate([Dependency("afterok", A)], {A: "SUCCEEDED"}) == ("met", "")


def test_missing_kind_is_named_as_written():
    with pytest.raises(SpecError) as err:
        parse_depend(A)
    assert f"unknown kind '{A}'" in str(err.value)

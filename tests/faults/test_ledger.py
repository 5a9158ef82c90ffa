"""The ledger check itself: each invariant it asserts fails on a ledger that breaks it."""

import pytest

from tests.faults.ledger import check

A, B = "01M97CD6XA4NW", "01M97CD7MT5G1"


def write(tmp_path, *lines):
    path = tmp_path / "ledger.csv"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def run(job, index, attempt, pid, start, end, done=True):
    """A run's lines: its start, a tick at `end`, and `done` at `end` when it finished."""
    lines = [f"{job},{index},{attempt},{pid},{start},{start},start", f"{job},{index},{attempt},{pid},{start},{end},tick"]
    return lines + ([f"{job},{index},{attempt},{pid},{start},{end},done"] if done else [])


def test_a_clean_ledger_passes_and_a_killed_run_counts_until_its_last_line(tmp_path):
    path = write(tmp_path, *run(A, "", 1, 10, 1.0, 2.0, done=False), *run(A, "", 2, 11, 2.5, 3.0),
                 *run(B, 1, 1, 12, 1.0, 1.5), *run(B, 2, 1, 13, 1.5, 2.0), "cut short,")
    runs = check(path, {A: None, B: [1, 2]}, limits={B: 1}, no_rerun=True)
    assert [(r.job, r.index, r.attempt, r.done) for r in runs] == [
        (A, None, 1, False), (B, 1, 1, True), (B, 2, 1, True), (A, None, 2, True)]


@pytest.mark.parametrize("lines, kw, problem", [
    (run(A, "", 1, 10, 1.0, 2.0, done=False), {}, "gap"),
    (run(A, "", 1, 10, 1.0, 3.0, done=False) + run(A, "", 2, 11, 2.5, 4.0), {}, "overlap"),
    (run(B, "", 1, 10, 1.0, 2.0), {"expected": {B: [1]}}, "no index"),
    (run(B, 1, 1, 10, 1.0, 2.0) + run(B, 2, 1, 11, 1.5, 2.5), {"expected": {B: [1, 2]}, "limits": {B: 1}},
     "over its limit"),
    (run(B, 1, 1, 10, 1.0, 2.0) + run(B, 3, 1, 11, 2.0, 2.5), {"expected": {B: [1]}, "never": {B: [3]}},
     "cancelled before it started"),
    (run(A, "", 1, 10, 1.0, 2.0) + run(A, "", 1, 11, 3.0, 4.0), {"no_rerun": True}, "run again after it finished"),
    (run(A, "", 1, 10, 1.0, 2.0) + run(B, "", 1, 11, 1.0, 2.0), {}, "nobody expected"),
])
def test_each_broken_invariant_fails_the_check(tmp_path, lines, kw, problem):
    expected = kw.pop("expected", {A: None})
    with pytest.raises(AssertionError, match=problem):
        check(write(tmp_path, *lines), expected, **kw)

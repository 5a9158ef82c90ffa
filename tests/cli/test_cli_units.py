"""Pure helpers of the job commands, in process."""

from __future__ import annotations

import pytest

from hyperbatch.cli import output
from hyperbatch.cli.pbs import common, qstat, qsub
from hyperbatch.cli.errors import UsageError


@pytest.mark.parametrize(
    ("argv", "options", "command", "dashdash"),
    [
        (["run.sh"], ["run.sh"], [], False),
        (["-N", "x", "--", "a", "--", "b"], ["-N", "x"], ["a", "--", "b"], True),
        (["-N", "--", "--", "true"], ["-N", "--"], ["true"], True),  # "--" as -N's value
        (["-hN", "--", "--", "true"], ["-hN", "--"], ["true"], True),
        (["-Nname", "--", "true"], ["-Nname"], ["true"], True),
        (["--name=x", "--", "true"], ["--name=x"], ["true"], True),
        (["-h", "--wait", "--"], ["-h", "--wait"], [], True),
        (["--retries", "2", "run.sh"], ["--retries", "2", "run.sh"], [], False),
    ],
)
def test_split_dashdash(argv, options, command, dashdash):
    assert qsub._split_dashdash(argv) == (options, command, dashdash)


@pytest.mark.parametrize(
    ("job", "code"),
    [
        ({"state": "SUCCEEDED", "exit_status": 0}, 0),
        ({"state": "SUCCEEDED", "exit_status": None}, 0),  # an array: no single status
        ({"state": "FAILED", "exit_status": 255}, 255),
        ({"state": "FAILED", "exit_status": 256 + 15}, 143),
        ({"state": "FAILED", "exit_status": 256 + 200}, 255),
        ({"state": "FAILED", "exit_status": -1}, 1),
        ({"state": "FAILED", "exit_status": None}, 1),
        ({"state": "CANCELLED", "exit_status": None}, 1),
    ],
)
def test_exit_code_for(job, code):
    assert common.exit_code_for(job) == code


def test_parse_ref():
    assert common.parse_ref("01JD4V8ZK2N3Q") == ("01JD4V8ZK2N3Q", None, False)
    assert common.parse_ref("01JD4V8ZK2N3Q[]") == ("01JD4V8ZK2N3Q", None, True)
    assert common.parse_ref(" 01JD4V8ZK2N3Q[17] ") == ("01JD4V8ZK2N3Q", 17, False)
    for bad in ("", "A[", "A[x]", "A[1][2]", "[3]"):
        with pytest.raises(UsageError):
            common.parse_ref(bad)


def test_split_items_quotes():
    assert common.split_items("A=1,B='x,y',C=\"p q\", D") == ["A=1", "B=x,y", "C=p q", "D"]
    with pytest.raises(UsageError):
        common.split_items("A='x")


def test_spec_position():
    assert qstat._spec_position("1-100%10", 3) == (True, 2)
    assert qstat._spec_position("0-10:2", 6) == (True, 3)
    assert qstat._spec_position("0-10:2", 5) == (True, None)
    assert qstat._spec_position("7", 7) == (True, 0)
    assert qstat._spec_position("1,3,5", 3) == (False, None)


def test_time_use_and_hms():
    assert output.hms(0) == "00:00:00"
    assert output.hms(360000 + 61) == "100:01:01"
    assert output.time_use({"cpu_seconds": 59.9}) == "00:00:59"
    assert output.time_use({"started_at": 100.0, "finished_at": 190.0}) == "00:01:30"
    assert output.time_use({"started_at": 100.0}, now=3700.0) == "01:00:00"
    assert output.time_use({"started_at": None}) == "0"


def test_table_cuts_long_cells_but_never_ids():
    job = {"id": "X" * 30, "name": "n" * 40, "owner": "o", "state": "QUEUED", "queue": "q"}
    text = output.table([output.job_row(job)])
    row = text.splitlines()[2]
    assert row.startswith("X" * 30 + " ") and ("n" * 23 + "*") in row

"""Pure helpers of the job commands, in process."""

from __future__ import annotations

import pytest

from hyperbatch.cli.pbs import common, qsub
from hyperbatch.cli.errors import CliError, UsageError


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
    assert common.parse_ref("1234") == ("1234", None, False)
    assert common.parse_ref("1234.host") == ("1234.host", None, False)
    assert common.parse_ref("1234[]") == ("1234", None, True)
    assert common.parse_ref(" 1234[17].host ") == ("1234.host", 17, False)
    for bad in ("", "A[", "12[x]", "12[1][2]", "[3]", "12.host[3]"):
        with pytest.raises(CliError, match="illegally formed job identifier"):
            common.parse_ref(bad)


def test_split_items_quotes():
    assert common.split_items("A=1,B='x,y',C=\"p q\", D") == ["A=1", "B=x,y", "C=p q", "D"]
    with pytest.raises(UsageError):
        common.split_items("A='x")


def test_getopt_is_glibc_getopt():
    from hyperbatch.cli.pbs.getopt import BadOption, getopt

    assert getopt(["-fx", "1", "-Fjson", "-u", "bob", "2"], "fxF:u:") == (
        [("-f", None), ("-x", None), ("-F", "json"), ("-u", "bob")], ["1", "2"])
    assert getopt(["-a", "--", "-x"], "ax") == ([("-a", None)], ["-x"])
    assert getopt(["1", "-x"], "x", permute=False) == ([], ["1", "-x"])
    assert getopt(["--json", "-x"], "x", ("--json",)) == ([("--json", None), ("-x", None)], [])
    for args, message in ((["-q"], "invalid option -- 'q'"), (["-u"], "option requires an argument -- 'u'"),
                          (["--nope"], "unrecognized option '--nope'")):
        with pytest.raises(BadOption, match=message):
            getopt(args, "u:")


def test_workflow_cancel_orders_each_step_after_every_step_that_depends_on_it():
    from hyperbatch.cli.workflow import dependents_first

    rows = [{"step": "a", "depends_on": {}}, {"step": "b", "depends_on": {"a": "afterok"}},
            {"step": "c", "depends_on": {"a": "afterany"}}, {"step": "d", "depends_on": {"b": "afterok", "c": "afterany"}},
            {"step": "lone", "depends_on": {}}]
    order = dependents_first(rows)
    assert sorted(order) == ["a", "b", "c", "d", "lone"]
    for row in rows:
        for parent in row["depends_on"]:
            assert order.index(row["step"]) < order.index(parent)

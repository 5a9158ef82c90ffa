"""The option table (core/options.py): one reader for qsub's command line, #PBS directives and the API."""

import shlex

import pytest

from hyperbatch.core import options
from hyperbatch.core.directives import parse_directives
from hyperbatch.core.errors import SpecError

CTX = options.Context(now=1775814994.0, environ={"HOME": "/home/alice", "DEBUG": "1"}, host="login1", cwd="/work")

# A value for every option that takes one.
SAMPLES = {
    "-a": "2359", "-A": "acct", "-c": "c=5", "-C": "#MY", "-e": "logs/", "-j": "eo", "-J": "0-10:2%3", "-k": "o",
    "-l": "walltime=1:00:00,select=1:ncpus=2:mem=4GB", "-m": "abe", "-M": "me@example.com", "-N": "sweep",
    "-o": "out.txt", "-p": "-5", "-P": "proj", "-q": "west", "-r": "n", "-R": "e", "-S": "/bin/zsh",
    "-u": "bob", "-v": "DEBUG,A='x,y'", "-W": "depend=afterok:1234,umask=022,block=true", "-d": "big",
    "--retries": "2", "--stage-in": "data/in.txt:input.txt", "--stage-out": "results/*.csv",
    "--notify": "https://hooks.example.com/jobs",
}


def _rows():
    return [pytest.param(option, id=option.flag) for option in options.OPTIONS]


@pytest.mark.parametrize("option", _rows())
def test_every_option_reads_the_same_as_a_flag_and_as_a_directive(option):
    value = SAMPLES.get(option.flag)
    assert (value is None) == (option.metavar is None), f"{option.flag}: sample value"
    pairs = [(option.flag, value)]
    text = option.flag if value is None else f"{option.flag} {shlex.quote(value)}"
    script = f"#!/bin/sh\n#PBS {text}\necho\n"
    if option.refused:
        with pytest.raises(SpecError) as on_line:
            options.parse_occurrences(pairs, CTX)
        with pytest.raises(SpecError) as in_script:
            parse_directives(script, ctx=CTX)
        reason = str(on_line.value)
        assert reason == f"{option.flag}: {option.refused}" and "\n" not in reason
        assert str(in_script.value) == f"script line 2: {reason}"
    elif not option.directive:
        assert options.parse_occurrences(pairs, CTX)  # the command line takes it
        with pytest.raises(SpecError) as in_script:
            parse_directives(script, ctx=CTX)
        assert str(in_script.value) == f"script line 2: {option.flag}: {option.in_directive_refused}"
    else:
        on_line = options.parse_occurrences(pairs, CTX)
        assert on_line, f"{option.flag} sets nothing"
        assert parse_directives(script, ctx=CTX) == on_line


def test_refused_options_are_exactly_these():
    assert {o.flag: o.refused.split(":")[0] for o in options.OPTIONS if o.refused} == {
        "-I": "interactive jobs are not supported",
        "-X": "interactive jobs are not supported",
        "-G": "interactive jobs are not supported",
        "-u": "jobs run as the submitting user; -u cannot change that",
    }


@pytest.mark.parametrize(
    "flag, value, fields",
    [
        ("-a", "2359", {"execution_time": pytest.approx(1775861940.0, abs=86400 * 2)}),
        ("-e", "logs/", {"error_path": "/work/logs/"}),
        ("-o", "login1:/abs/out", {"output_path": "/abs/out"}),
        ("-J", "0-10:2%3", {"array": "0-10:2%3"}),
        ("-l", "walltime=1:00:00,select=1:ncpus=2:mem=4GB", {"walltime": 3600, "resources": {"select": "1:ncpus=2:mem=4gb"}}),
        ("-v", "DEBUG,A='x,y'", {"env": {"DEBUG": "1", "A": "x,y"}}),
        ("-W", "depend=afterok:1234,umask=022,block=true",
         {"depend": "afterok:1234", "umask": "0022", "block": True}),
        ("-W", "depend=afterok:1234,afterany:1235",
         {"depend": "afterok:1234,afterany:1235"}),
        ("-W", "sandbox=private,max_run_subjobs=4", {"sandbox": "PRIVATE", "max_run_subjobs": 4}),
        ("-r", "n", {"rerunnable": False}),
        ("--retries", "2", {"max_attempts": 3}),
        ("-k", "oe", {"keep": "oe"}),
        ("-c", "w=10", {"checkpoint": "w=10"}),
        ("-W", "stagein=in.txt@login1:/data/in.txt,b\\,c@login1:/d/b\\,c",
         {"stagein": ["in.txt@login1:/data/in.txt", "b\\,c@login1:/d/b\\,c"]}),
        ("--stage-in", "s3://bucket/k/in.csv", {"stagein": ["in.csv@s3://bucket/k/in.csv"]}),
        ("--stage-out", "results/*.csv:s3://bucket/out/", {"stageout": ["results/*.csv@s3://bucket/out/"]}),
        ("--notify", " http://127.0.0.1:8080/hook ", {"notify": ["http://127.0.0.1:8080/hook"]}),
    ],
)
def test_values_become_canonical_fields(flag, value, fields):
    assert options.parse_occurrences([(flag, value)], CTX) == fields


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("-o", "elsewhere:/x", "illegal -o value 'elsewhere:/x': output is delivered on the submit host"),
        ("-q", "batch@other", "destination 'batch@other': HyperBatch has one server"),
        ("-c", "u", "illegal -c value 'u'"),
        ("-k", "x", "illegal -k value 'x'"),
        ("-m", "abz", "illegal -m value 'abz'"),
        ("-R", "n", "illegal -R value 'n'"),
        ("-S", "bash", "give the shell's absolute path"),
        ("-W", "block=maybe", "block=maybe: use true or false"),
        ("-W", "umask=999", "umask '999'"),
        ("-W", "sandbox=tmp", "sandbox 'tmp'"),
        ("-W", "stageout=a@b:c", "illegal -W value: stageout host 'b': files are staged from and to the submit host"),
        ("-W", "=x", "illegal -W value '=x'"),
        ("-v", "UNSET_HERE", "cannot send environment with the job: UNSET_HERE is not set"),
    ],
)
def test_bad_values_say_what_is_wrong(flag, value, message):
    with pytest.raises(SpecError) as err:
        options.parse_occurrences([(flag, value)], CTX)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_finish_ties_options_together():
    fields = options.finish({"array": "1-8", "max_run_subjobs": 2, "output_path": "o/", "mail_points": "abj"},
                            workdir="/work")
    assert fields["array"] == "1-8%2" and fields["output_path"] == "/work/o/"
    assert fields["resources"] == {"ncpus": 1, "nodect": 1, "place": "pack", "select": "1:ncpus=1"}
    for bad, message in (
        ({"array": "1-8", "rerunnable": False}, "cannot submit non-rerunable Array Job"),
        ({"mail_points": "j"}, "mail option 'j' can not be used without array job"),
        ({"max_run_subjobs": 2}, "max_run_subjobs applies to array jobs"),
        ({"array": "1-8%3", "max_run_subjobs": 2}, "give the array's limit once"),
        ({"output_path": "rel"}, "give an absolute path"),
    ):
        with pytest.raises(SpecError, match=message):
            options.finish(bad)


def test_combine_lets_the_command_line_win_and_merges_lists():
    header = {"name": "a", "resources": {"ncpus": 2}, "env": {"A": "1", "B": "1"}, "walltime": 60}
    line = {"name": "b", "resources": {"mem": "1gb"}, "env": {"B": "2"}}
    assert options.combine(header, line) == {
        "name": "b", "resources": {"ncpus": 2, "mem": "1gb"}, "env": {"A": "1", "B": "2"}, "walltime": 60}


@pytest.mark.parametrize("name", list(options.FIELDS))
def test_every_field_reads_its_canonical_value_back(name):
    samples = {
        "name": "x", "queue": "batch", "definition": "d", "array": "1-4", "max_run_subjobs": 2,
        "depend": "afterok:1234", "priority": 3, "max_attempts": 2, "walltime": "1:00", "resources":
        {"select": "1:ncpus=2"}, "env": {"A": "1", "PBS_O_HOME": "/h"}, "hold": True, "account": "a",
        "project": "p", "checkpoint": "n", "output_path": "/o", "error_path": "/e/", "join": "oe", "keep": "n",
        "remove_files": "oe", "shell": "/bin/sh", "rerunnable": "n", "execution_time": 1775814994.0,
        "mail_points": "n", "mail_users": "me", "umask": "22", "sandbox": "HOME",
        "stagein": "a@h:/x/a,b@h:/x/b", "stageout": ["*.csv@s3://b/out/"], "notify": "https://h.example/x",
    }
    once = options.check_field(name, samples[name])
    assert options.check_field(name, once) == once


def test_the_api_request_model_has_the_tables_fields():
    from hyperbatch.api import JobRequest

    assert set(options.FIELDS) <= set(JobRequest.model_fields)
    body = JobRequest.model_validate({"command": ["true"], "walltime": "0:5:0", "rerunnable": "n",
                                      "resources": {"ncpus": "2", "mem": "4GB"}}).model_dump(exclude_none=True)
    assert body == {"command": ["true"], "walltime": 300, "rerunnable": False, "resources": {"ncpus": 2, "mem": "4gb"}}

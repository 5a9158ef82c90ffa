import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperbatch.core.arrays import ArraySpec
from hyperbatch.core.directives import parse_directives
from hyperbatch.core.errors import SpecError

A, B = "101", "102"


def test_full_header():
    script = f"""#!/bin/bash
#PBS -N sweep -q short
#PBS -l walltime=01:00:00,ncpus=2
#PBS -l mem=4gb
#HYPER --definition big -J 1-100%5 --retries 2
#PBS -W depend=afterok:{A}:{B}
#PBS -p 10 -v A=1,B=two -v C=3
# an ordinary comment

#PBS -h -o /tmp/out.txt -e /tmp/err/ -j oe -m abe -M me@example.com -A acct -S /bin/sh -r n
echo hello
#PBS -N ignored-after-the-first-command
"""
    assert parse_directives(script) == {
        "name": "sweep",
        "queue": "short",
        "walltime": 3600,
        "resources": {"ncpus": 2, "mem": "4gb"},
        "definition": "big",
        "array": "1-100%5",
        "max_attempts": 3,
        "depend": f"afterok:{A}:{B}",
        "priority": 10,
        "env": {"A": "1", "B": "two", "C": "3"},
        "hold": True,
        "output_path": "/tmp/out.txt",
        "error_path": "/tmp/err/",
        "join": "oe",
        "mail_points": "abe",
        "mail_users": "me@example.com",
        "account": "acct",
        "shell": "/bin/sh",
        "rerunnable": False,
    }


def test_no_directives():
    assert parse_directives("") == {}
    assert parse_directives("echo hi\n#PBS -N x\n") == {}
    assert parse_directives("#!/bin/sh\n# just a comment\n\necho hi\n") == {}


def test_shebang_only_skipped_on_first_line():
    assert parse_directives("#!/bin/bash\n#PBS -N a") == {"name": "a"}
    assert parse_directives("#PBS -N first\n#!/not/a/shebang\n#PBS -q q") == {"name": "first", "queue": "q"}


def test_later_lines_override_scalars_and_lists_merge():
    script = "#PBS -N one -l ncpus=1 -v A=1\n#PBS -N two -l ncpus=2,mem=1gb -v B=2 -l walltime=10:00\n#PBS -t 0-4:2"
    assert parse_directives(script) == {
        "name": "two",
        "resources": {"ncpus": 2, "mem": "1gb"},
        "env": {"A": "1", "B": "2"},
        "walltime": 600,
        "array": "0-4:2",
    }


def test_canonical_forms():
    got = parse_directives(f"#PBS -J ' 7 '\n#PBS -W depend=afterok:{A}[],afterok:{B}")
    assert got == {"array": "7", "depend": f"afterok:{A}:{B}"}


def test_option_spellings():
    assert parse_directives("#PBS -hNname\n#PBS -z -qq1 --retries=0 -d def") == {
        "hold": True,
        "quiet": True,
        "name": "name",
        "queue": "q1",
        "max_attempts": 1,
        "definition": "def",
    }
    assert parse_directives("#HYPER\n  #PBS -N indented\r\n#HYPERX -N not-a-directive") == {"name": "indented"}
    assert parse_directives('#PBS -v "A=1,B=\'x,y\'"') == {"env": {"A": "1", "B": "x,y"}}
    assert parse_directives("#PBS -N one \\\n   -q two\necho") == {"name": "one", "queue": "two"}


def test_prefixes():
    script = "#!/bin/sh\n#PBS -N pbs\n#HYPER -q hyper\n#MINE -p 3\necho\n"
    assert parse_directives(script) == {"name": "pbs", "queue": "hyper"}
    assert parse_directives(script, prefix="#MINE") == {"priority": 3}
    assert parse_directives(script, prefix="") == {}


@pytest.mark.parametrize(
    "script, message",
    [
        ("#PBS -Z 1", "script line 1: unknown option '-Z'"),
        ("#!/bin/sh\n\n#PBS --frobnicate", "script line 3: unknown option '--frobnicate'"),
        ("#PBS -N", "script line 1: option -N needs a value"),
        ("#PBS -N bad/name", "script line 1: illegal -N value: job name 'bad/name': use letters, digits"),
        ("#PBS -N " + "x" * 231, "script line 1: Job name is too long: at most 230 characters"),
        ("#PBS -J 5-1", "script line 1: illegal -J value: array range '5-1': the end must not be below the start, as in 1-100"),
        ("#PBS -W group_list=x", "script line 1: -W group_list: not supported: jobs run with the submitting"),
        ("#PBS -W frobnicate=1", "script line 1: -W frobnicate: unknown attribute; HyperBatch takes depend, block"),
        ("#PBS -I", "script line 1: -I: interactive jobs are not supported"),
        ("#PBS -C '#X'", "script line 1: -C: -C sets how directives are found: give it on the command line"),
        ("#PBS --wait", "script line 1: --wait: --wait belongs on the command line"),
        ("#PBS -V", "-V needs qsub's environment; over the API, send the variables in env"),
        ("#PBS -l nodes=2", "-l nodes: not supported: a job runs on one host"),
        ("#PBS -l select=2:ncpus=1", "2 chunks need 2 hosts"),
        ("#PBS -l frobs=2", "Unknown resource: frobs"),
        ("#PBS -j x", "illegal -j value 'x'"),
        ("#PBS -r maybe", "illegal -r value 'maybe'"),
        ("#PBS -a 2460", "illegal -a value '2460'"),
        ("#PBS -W depend=before:" + A, "use afterok, afterany or afternotok"),
        (f"#PBS -W depend=afterok:{A}[2]", "array task cannot be a dependency"),
        ("#PBS -p 5000", "script line 1: illegal -p value: priority 5000: must be from -1024 to 1023"),
        ("#PBS --retries -1", "--retries '-1': give a whole number from 0 to 99"),
        ("#PBS --retries 100", "from 0 to 99"),
        ("#PBS -l walltime=abc", "walltime 'abc': use HH:MM:SS, as in 01:30:00"),
        ("#PBS -l ncpus", "give key=value"),
        ("#PBS -v HOME", "give VAR=value"),
        ("#PBS -h yes", "unexpected 'yes'"),
        ("#PBS -hx", "unknown option '-x'"),
        ("#PBS --wait=1", "option --wait takes no value"),
        ("#PBS -N a # comment", "remove the trailing comment"),
        ('#PBS -N "unclosed', "script line 1: a quote is not closed"),
        ("#PBS -q ''", "option -q needs a value"),
    ],
)
def test_errors(script, message):
    with pytest.raises(SpecError) as err:
        parse_directives(script)
    assert message in str(err.value)


names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
arrays = st.builds(
    lambda s, span, step: ArraySpec(s, s + span, step), st.integers(0, 1000), st.integers(0, 1000), st.integers(1, 9)
)


@given(names, arrays, st.integers(-1024, 1023), st.integers(1, 10**6))
def test_round_trip_of_values(name, array, priority, walltime):
    script = f"#!/bin/sh\n#PBS -N {name} -J {array} -p {priority} -l walltime={walltime}\nrun\n"
    got = parse_directives(script)
    assert got == {"name": name, "array": str(array), "priority": priority, "walltime": walltime}

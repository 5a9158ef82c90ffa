import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperbatch.core.errors import SpecError
import time

from hyperbatch.core.options import (
    parse_env,
    parse_execution_time,
    parse_priority,
    parse_resources,
    parse_walltime,
    resource_list,
)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("01:00:00", 3600),
        ("01:30:00", 5400),
        ("90:00", 5400),
        ("45", 45),
        ("100:00:00", 360000),
        ("0:0:1", 1),
        ("1h", 3600),
        ("30m", 1800),
        ("90s", 90),
        ("2h30m", 9000),
        ("1h0m5s", 3605),
        ("2H", 7200),
        (" 10:00 ", 600),
    ],
)
def test_parse_walltime(text, seconds):
    assert parse_walltime(text) == seconds


@pytest.mark.parametrize(
    "text, hint",
    [
        ("abc", "walltime 'abc': use HH:MM:SS, as in 01:30:00"),
        ("", "use HH:MM:SS"),
        ("1:2:3:4", "use HH:MM:SS"),
        ("1.5", "use HH:MM:SS"),
        ("-5", "use HH:MM:SS"),
        ("30m2h", "use HH:MM:SS"),
        ("1d", "use HH:MM:SS"),
        ("01:60:00", "must be below 60"),
        ("1:61", "must be below 60"),
        ("0", "must be more than zero"),
        ("00:00:00", "must be more than zero"),
        ("0h", "must be more than zero"),
    ],
)
def test_parse_walltime_rejects(text, hint):
    with pytest.raises(SpecError) as err:
        parse_walltime(text)
    assert hint in str(err.value)


@given(st.integers(1, 10**7))
def test_walltime_round_trip(seconds):
    hours, rest = divmod(seconds, 3600)
    assert parse_walltime(f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}") == seconds


def test_parse_resources():
    assert parse_resources("walltime=01:00:00,ncpus=2,mem=4gb") == {"walltime": 3600, "ncpus": 2, "mem": "4gb"}
    assert parse_resources("select=1:ncpus=2:mem=4GB,walltime=0:5:0") == {"select": "1:ncpus=2:mem=4gb", "walltime": 300}
    assert parse_resources("select=ncpus=1:mpiprocs=4:ngpus=1,place=scatter:excl") == {
        "select": "1:ncpus=1:ngpus=1:mpiprocs=4", "place": "scatter:excl"}
    assert parse_resources("mem=954MB,ngpus=0") == {"mem": "954mb", "ngpus": 0}
    assert parse_resources("") == {}
    assert parse_resources("ncpus=1,ncpus=4") == {"ncpus": 4}


@pytest.mark.parametrize(
    "text, hint",
    [
        ("ncpus", "give key=value, as in walltime=01:00:00"),
        ("=2", "give key=value"),
        ("mem=", "give key=value"),
        ("gpu_type=a100", "Unknown resource: gpu_type"),
        ("nodes=2:ppn=4", "-l nodes: not supported: a job runs on one host"),
        ("select=2:ncpus=4", "select '2:ncpus=4': 2 chunks need 2 hosts"),
        ("select=1:ncpus=4+1:ncpus=2", "give one chunk"),
        ("select=1:host=a", "Unknown resource in select: host"),
        ("ncpus=0", "ncpus 0: must be from 1"),
        ("mem=1.5gb", "mem '1.5gb': give a whole number"),
        ("cput=1:00", "CPU-time limits are not enforced"),
        ("place=sideways", "place 'sideways'"),
    ],
)
def test_parse_resources_rejects(text, hint):
    with pytest.raises(SpecError) as err:
        parse_resources(text)
    assert hint in str(err.value)


def test_resource_list_derives_select_and_the_job_wide_values():
    assert resource_list({}) == {"ncpus": 1, "nodect": 1, "place": "pack", "select": "1:ncpus=1"}
    assert resource_list({"ncpus": 4, "mem": "8gb"}) == {
        "mem": "8gb", "ncpus": 4, "nodect": 1, "place": "pack", "select": "1:ncpus=4:mem=8gb"}
    from_select = resource_list({"select": "1:ncpus=2:ngpus=1", "place": "scatter"})
    assert from_select == {"ncpus": 2, "ngpus": 1, "nodect": 1, "place": "scatter", "select": "1:ncpus=2:ngpus=1"}
    assert resource_list(from_select) == from_select  # what qstat shows can be sent back
    with pytest.raises(SpecError, match="disagree"):
        resource_list({"select": "1:ncpus=2", "ncpus": 4})


@pytest.mark.parametrize(
    "text, parts",
    [
        ("1830", (2026, 4, 10, 18, 30, 0)),  # later today
        ("0930", (2026, 4, 11, 9, 30, 0)),  # passed today: tomorrow
        ("0956.30", (2026, 4, 11, 9, 56, 30)),  # this very minute counts as passed
        ("091200", (2026, 5, 9, 12, 0, 0)),  # the 9th has passed: next month
        ("03011200", (2027, 3, 1, 12, 0, 0)),  # March has passed: next year
        ("2604301200", (2026, 4, 30, 12, 0, 0)),
        ("202001011200", (2020, 1, 1, 12, 0, 0)),  # in the past: eligible at once
    ],
)
def test_parse_execution_time_as_cvtdate(text, parts, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        now = time.mktime((2026, 4, 10, 9, 56, 22, 0, 0, -1))
        assert time.localtime(parse_execution_time(text, now))[:6] == parts
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("text", ["2460", "1261", "123", "18:30", "1830.5", "1830.60", "202613011200", "320100"])
def test_parse_execution_time_rejects(text):
    with pytest.raises(SpecError, match="illegal -a value"):
        parse_execution_time(text, 1775814994.0)


def test_parse_env():
    assert parse_env("A=1,B=two words,C=") == {"A": "1", "B": "two words", "C": ""}
    assert parse_env("X=a=b") == {"X": "a=b"}
    assert parse_env("_Y1=it's") == {"_Y1": "it's"}
    assert parse_env("A='x,y',B=\"p, q\",C=z") == {"A": "x,y", "B": "p, q", "C": "z"}
    assert parse_env("A=1, B=2,") == {"A": "1", "B": "2"}
    assert parse_env("") == {}


@pytest.mark.parametrize(
    "text, hint",
    [
        ("A", "environment 'A': give VAR=value"),
        ("A=1,HOME", "environment 'HOME': give VAR=value"),
        ("PBS_O_HOME=/x", "PBS_O_* variables are set by qsub"),
        ("=1", "give VAR=value"),
        ("1A=x", "variable name '1A'"),
        ("A-B=x", "variable name 'A-B'"),
    ],
)
def test_parse_env_rejects(text, hint):
    with pytest.raises(SpecError) as err:
        parse_env(text)
    assert hint in str(err.value)


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
values = st.text(st.characters(blacklist_characters=",\"'", blacklist_categories=("Cs",)), max_size=10)


@given(st.dictionaries(names, values, max_size=5))
def test_env_round_trip(env):
    assert parse_env(",".join(f"{k}={v}" for k, v in env.items())) == env


@pytest.mark.parametrize("text, value", [("0", 0), ("-1024", -1024), ("1023", 1023), (" +5 ", 5), (7, 7)])
def test_parse_priority(text, value):
    assert parse_priority(text) == value


@pytest.mark.parametrize("text", ["1024", "-1025", "x", "1.5", "", "1_0", True])
def test_parse_priority_rejects(text):
    with pytest.raises(SpecError, match="-1024 to 1023"):
        parse_priority(text)


def test_parse_env_takes_bare_names_from_qsubs_environment():
    assert parse_env("A,B=2", {"A": "from-env"}) == {"A": "from-env", "B": "2"}
    with pytest.raises(SpecError, match="cannot send environment with the job: C is not set"):
        parse_env("C", {})

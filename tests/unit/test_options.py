import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperbatch.core.errors import SpecError
from hyperbatch.core.options import parse_env, parse_priority, parse_resources, parse_walltime


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
    assert parse_resources("walltime=01:00:00,ncpus=2,mem=4gb") == {
        "walltime": "01:00:00",
        "ncpus": "2",
        "mem": "4gb",
    }
    assert parse_resources("select=1:ncpus=2:mem=4gb,walltime=1:00:00") == {
        "select": "1:ncpus=2:mem=4gb",
        "walltime": "1:00:00",
    }
    assert parse_resources("gpu_type=a100") == {"gpu_type": "a100"}
    assert parse_resources("") == {}
    assert parse_resources("ncpus=1,ncpus=4") == {"ncpus": "4"}


@pytest.mark.parametrize("text", ["ncpus", "=2", "ncpus=2,mem", "mem="])
def test_parse_resources_rejects(text):
    with pytest.raises(SpecError, match="give key=value, as in walltime=01:00:00"):
        parse_resources(text)


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

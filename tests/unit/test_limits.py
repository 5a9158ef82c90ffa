"""hyperbatch.core.limits: the bounds a job request keeps, each said in words a user can act on."""

import pytest

from hyperbatch.core import limits
from hyperbatch.core.errors import SpecError


@pytest.mark.parametrize("fields, message", [
    ({"env": {"A": "x\0y"}}, "env: the value of A contains a NUL byte"),
    ({"env": {"A=B": "x"}}, "env: environment variable name 'A=B'"),
    ({"env": {"": "x"}}, "env: environment variable name ''"),
    ({"env": {"A": "x" * limits.MAX_ENV_BYTES}}, "env: the variables are larger than 64 KiB"),
    ({"command": ["echo", "a\0b"]}, "command: argument 1 contains a NUL byte"),
    ({"command": [""]}, "command: the program to run (argument 0) is empty"),
    ({"command": ["x"] * (limits.MAX_ARGS + 1)}, "command: 4097 arguments"),
    ({"workdir": "/tmp/a\0b"}, "workdir: contains a NUL byte"),
    ({"walltime": 10**400}, "walltime: give 1 to 31536000 seconds (up to 8760:00:00, a year), not a number of 401 digits"),
    ({"walltime": 0}, "walltime: give 1 to"),
    ({"walltime": limits.MAX_WALLTIME_SECONDS + 1}, "walltime: give 1 to"),
    ({"walltime": True}, "walltime: give seconds as a whole number"),
    ({"walltime": 1.5}, "walltime: give seconds as a whole number"),
    ({"priority": 10**400}, "priority: give a whole number from -1024 to 1023, not a number of 401 digits"),
    ({"priority": "high"}, "priority: give a whole number from -1024 to 1023"),
    ({"script": "#!/bin/sh\n\0"}, "script: the script contains a NUL byte"),
    ({"script": "   \n"}, "script: the script is empty"),
    ({"name": "two words"}, "name: job name 'two words'"),
    ({"script_name": "a\0b"}, "script_name: contains a NUL byte"),
])
def test_a_request_past_a_limit_is_refused_naming_the_field(fields, message):
    with pytest.raises(SpecError) as caught:
        limits.check_request(fields)
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_request_at_the_limits_passes():
    limits.check_request({
        "name": "n" * 64,
        "command": ["prog", "x" * (limits.MAX_COMMAND_BYTES - 6)],  # "prog\0" and the argument's NUL
        "env": {"A": "y" * (limits.MAX_ENV_BYTES - 3)},  # "A=" and the NUL
        "walltime": limits.MAX_WALLTIME_SECONDS,
        "priority": limits.PRIORITY_MIN,
        "workdir": "/" + "d" * (limits.MAX_PATH_BYTES - 1),
        "resources": {"mem": "4gb", "select": "1:ncpus=2"},
        "script": "#!/bin/sh\necho é\n",
    })


def test_absent_fields_are_not_checked():
    limits.check_request({"walltime": None, "env": None, "command": None})


@pytest.mark.parametrize("body, deeper", [
    ({}, False),
    ([[[]]], False),
    ({"a" * 3: "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}, False),  # brackets in strings do not count
    (1, False),
])
def test_depth_of_ordinary_bodies(body, deeper):
    assert limits.nests_deeper(body) is deeper


def test_depth_limit_is_exact():
    def nested(depth):
        value: object = 1
        for level in range(depth):
            value = {"k": value} if level % 2 else [value]
        return value

    assert not limits.nests_deeper(nested(limits.MAX_JSON_DEPTH))
    assert limits.nests_deeper(nested(limits.MAX_JSON_DEPTH + 1))
    assert limits.nests_deeper(nested(5000))  # no recursion: no RecursionError either

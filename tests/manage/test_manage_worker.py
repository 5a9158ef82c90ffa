"""`hyper worker start`: what it refuses, in one line, before any worker starts.

That it runs jobs once started is shown against AWS in a box (tests/aws_box/test_onprem.py).
"""

from __future__ import annotations

import json

import pytest

PROD = {"kind": "aws", "url": "https://abc.execute-api.us-east-1.amazonaws.com/prod/", "region": "us-east-1",
        "stack_name": "HyperBatch"}
LOCAL = {"kind": "local", "url": "http://127.0.0.1:8765", "token_file": "/tmp/token"}


def _select(env, name: str) -> None:
    env.home.mkdir(mode=0o700)
    (env.home / "hosts.json").write_text(json.dumps({"selected": name, "hosts": {"local": LOCAL, "prod": PROD}}))


def test_a_local_host_is_refused_with_what_to_do(env):
    _select(env, "local")
    result = env.run("worker", "start", "--queue", "batch")
    assert result.returncode == 1
    assert result.stderr.startswith("hyper: host 'local' is local mode") and "hyper hosts select" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--queue", "nope"], "no queue 'nope' in "),
    (["--queue", "batch", "--definition", "huge"], "queue batch runs its jobs on standard, not 'huge'"),
    (["--queue", "batch", "--name", "lab/1"], "worker name 'lab/1': use letters"),
    (["--queue", "batch", "--mem", "lots"], "--mem 'lots': give a whole number"),
])
def test_bad_input_is_one_line_exit_2(env, args, message):
    _select(env, "prod")
    result = env.run("worker", "start", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_the_configuration_must_be_the_hosts_deployment(env):
    _select(env, "prod")
    settings = json.loads((env.config / "settings.json").read_text())
    (env.config / "settings.json").write_text(json.dumps({**settings, "stack_name": "Other"}))
    result = env.run("worker", "start", "--queue", "batch")
    assert result.returncode == 2
    assert "is deployment 'Other', the selected host 'prod' is 'HyperBatch'" in result.stderr


def test_without_credentials_it_says_so_in_one_line(env):
    _select(env, "prod")
    result = env.run("worker", "start", "--queue", "batch")
    assert result.returncode == 1
    assert "cannot read stack HyperBatch-Control in us-east-1" in result.stderr and "no AWS credentials" in result.stderr
    assert result.stderr.count("\n") == 1

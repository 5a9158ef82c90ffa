"""qsub, run as the installed console script against the fake API."""

from __future__ import annotations

import json
import socket

import pytest

from tests.cli.conftest import TOKEN, USER


def _only_submit(api):
    posts = api.calls("POST", "/jobs")
    assert len(posts) == 1, posts
    return posts[0]["body"]


SCRIPT = """#!/bin/bash
#PBS -N from-directive
#PBS -l walltime=00:10:00
#HYPER -q fast
echo "hello from $PBS_ARRAY_INDEX"
"""


def test_script_file_prints_id_alone_and_sends_text(cli, api):
    script = cli.workdir / "run.sh"
    script.write_text(SCRIPT)
    result = cli("qsub", "run.sh")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    body = _only_submit(api)
    assert result.stdout == f"{next(iter(api.jobs))}\n"
    assert body["script"] == SCRIPT  # exactly the file's text: the server parses the directives
    assert body["script_name"] == "run.sh"
    assert body["workdir"] == str(cli.workdir)
    assert "command" not in body and "hold" not in body and "name" not in body


def test_bearer_token_and_user_header(cli, api):
    assert cli("qsub", "--", "true").returncode == 0
    request = api.calls("POST", "/jobs")[0]
    assert request["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert request["headers"]["x-hyper-user"] == USER
    assert request["headers"]["content-type"] == "application/json"


def test_options_become_request_fields(cli, api):
    result = cli(
        "qsub",
        "-N", "sweep",
        "-q", "fast",
        "-d", "big",
        "-J", "1-10%2",
        "-W", "depend=afterok:101.testhost:102.testhost",
        "-W", "depend=afterany:103.testhost",
        "-p", "-5",
        "--retries", "2",
        "-l", "walltime=01:00:00,mem=1gb",
        "-l", "ncpus=2",
        "-v", "A=1,B,C='x,y'",
        "-h",
        "--", "python3", "-c", "print(1)", "-N", "not-an-option",
        env={"B": "from-env"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    body = _only_submit(api)
    assert body == {
        "command": ["python3", "-c", "print(1)", "-N", "not-an-option"],
        "name": "sweep",
        "queue": "fast",
        "definition": "big",
        "array": "1-10%2",
        "depend": "afterok:101.testhost:102.testhost,afterany:103.testhost",
        "priority": -5,
        "max_attempts": 3,
        "walltime": "01:00:00",
        "resources": {"mem": "1gb", "ncpus": "2"},
        "env": {"A": "1", "B": "from-env", "C": "x,y"},
        "hold": True,
        "workdir": str(cli.workdir),
    }


def test_t_is_an_alias_of_J_and_long_options(inproc, api):
    assert inproc("qsub", "-t", "0-10:2", "--name", "n", "--queue", "q", "--", "true")[0] == 0
    body = _only_submit(api)
    assert (body["array"], body["name"], body["queue"]) == ("0-10:2", "n", "q")


def test_hold_flag_clusters_with_value_options(inproc, api):
    assert inproc("qsub", "-hN", "--", "--", "true")[0] == 0  # -N's value is "--"
    body = _only_submit(api)
    assert body["hold"] is True and body["name"] == "--" and body["command"] == ["true"]


def test_script_on_stdin(cli, api):
    result = cli("qsub", "-N", "piped", input="#!/bin/sh\necho hi\n")
    assert result.returncode == 0, result.stderr
    body = _only_submit(api)
    assert body["script"] == "#!/bin/sh\necho hi\n"
    assert body["script_name"] == "STDIN"


def test_V_passes_environment_without_secrets(inproc, api):
    env = {"MY_SETTING": "1", "AWS_SECRET_ACCESS_KEY": "x", "GITHUB_TOKEN": "t", "DB_PASSWORD": "p", "OVER": "env"}
    assert inproc("qsub", "-V", "-v", "OVER=cli", "--", "true", env=env)[0] == 0
    sent = _only_submit(api)["env"]
    assert sent["MY_SETTING"] == "1" and sent["OVER"] == "cli"
    assert not {"AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "DB_PASSWORD", "HYPERBATCH_HOME"} & set(sent)


@pytest.mark.parametrize(
    ("final", "code"),
    [
        ({"state": "SUCCEEDED", "exit_status": 0}, 0),
        ({"state": "FAILED", "exit_status": 3}, 3),
        ({"state": "FAILED", "exit_status": 256 + 9}, 137),  # killed by SIGKILL, as a shell says
        ({"state": "FAILED", "exit_status": -3}, 1),  # walltime: a scheduler-side failure
        ({"state": "CANCELLED", "exit_status": None}, 1),
    ],
)
def test_wait_exit_status(cli, api, final, code):
    job_id = "1.testhost"  # the fake's first id
    api.progress[job_id] = [final]
    result = cli("qsub", "--wait", "--", "true")
    assert result.returncode == code, result.stderr
    assert result.stdout == f"{job_id}\n"
    assert result.stderr == ""


def test_wait_polls_through_running(cli, api):
    job_id = "1.testhost"
    api.progress[job_id] = [{"state": "RUNNING"}, {"state": "RUNNING"}, {"state": "SUCCEEDED", "exit_status": 0}]
    result = cli("qsub", "--wait", "--", "true")
    assert result.returncode == 0, result.stderr
    assert len(api.calls("GET", f"/jobs/{job_id}")) == 3


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-x", "--", "true"], "invalid option -- 'x'"),
        (["-p", "x", "--", "true"], "'x' is not a valid integer"),
        (["missing.sh"], "not found"),
        ([], "no job to submit"),  # stdin is an empty pipe
    ],
)
def test_usage_errors_exit_2_with_one_line(cli, api, args, needle):
    result = cli("qsub", *args)
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("qsub: "), result.stderr
    assert needle in lines[0]
    assert api.calls("POST") == []


def test_a_fifo_is_refused_without_waiting_for_a_writer(cli, api):
    """Issue 9, item 11: `qsub FIFO` hung, waiting for someone to write to it."""
    import os

    os.mkfifo(cli.workdir / "pipe")
    result = cli("qsub", "pipe", timeout=10)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "qsub: script pipe is a FIFO, not a file; to submit what it gives, use qsub < pipe\n"
    assert api.calls("POST") == []


def test_a_device_is_refused(inproc, api):
    assert inproc("qsub", "/dev/null")[0::2] == (
        2, "qsub: script /dev/null is a device, not a file; to submit what it gives, use qsub < /dev/null\n")
    assert api.calls("POST") == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--retries", "-1", "--", "true"], "--retries"),
        (["-W", "group_list=x", "--", "true"], "only depend="),
        (["-W", "depend=", "--", "true"], "needs a value"),
        (["-l", "mem", "--", "true"], "KEY=VALUE"),
        (["-v", "SURELY_NOT_SET_ANYWHERE", "--", "true"], "not set in your environment"),
        (["-v", "A='x", "--", "true"], "unbalanced"),
        (["--"], "nothing to run"),
        (["a.sh", "b.sh"], "unexpected extra argument"),
    ],
)
def test_more_usage_errors(inproc, api, args, needle):
    code, out, err = inproc("qsub", *args)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and err.startswith("qsub: ") and needle in err, err
    assert api.calls("POST") == []


def test_script_and_command_together_is_a_usage_error(inproc, api):
    (inproc.workdir / "a.sh").write_text("echo a\n")
    code, _, err = inproc("qsub", "a.sh", "--", "true")
    assert code == 2 and "not both" in err


def test_binary_empty_and_directory_scripts_are_refused(inproc, api):
    (inproc.workdir / "prog").write_bytes(b"\x7fELF\x00\x01\x02")
    (inproc.workdir / "latin1.sh").write_bytes(b"echo caf\xe9\n")
    (inproc.workdir / "empty.sh").write_text("\n  \n")
    code, _, err = inproc("qsub", "prog")
    assert code == 2 and "binary" in err and "qsub -- PROGRAM" in err.replace("[OPTIONS] ", "")
    code, _, err = inproc("qsub", "latin1.sh")
    assert code == 2 and "UTF-8" in err
    code, _, err = inproc("qsub", "empty.sh")
    assert code == 2 and "empty" in err
    code, _, err = inproc("qsub", ".")
    assert code == 2 and "directory" in err
    assert api.calls("POST") == []


def test_options_after_the_script(inproc, api):
    (inproc.workdir / "a.sh").write_text("echo a\n")
    assert inproc("qsub", "a.sh", "-N", "late")[0] == 0
    assert _only_submit(api)["name"] == "late"


def test_server_422_message_passes_through_exit_2(cli, api):
    message = "line 3: #PBS -J 5-1: the end must not be below the start, as in 1-100"
    api.override("POST", "/jobs", (422, {"error": "InvalidSpec", "message": message}))
    result = cli("qsub", "--", "true")
    assert result.returncode == 2
    assert result.stderr == f"qsub: {message}\n"
    assert result.stdout == ""


def test_server_multiline_message_is_one_line(inproc, api):
    api.override("POST", "/jobs", (400, {"error": "InvalidSpec", "message": "bad queue 'x'\nknown: a, b"}))
    assert inproc("qsub", "--", "true") == (2, "", "qsub: bad queue 'x'; known: a, b\n")


def test_bad_token_exits_1_with_message(inproc, api, home):
    (home / "token").write_text("wrong\n")
    assert inproc("qsub", "--", "true") == (1, "", "qsub: missing or bad bearer token\n")


def test_server_error_exits_1(inproc, api):
    api.override("POST", "/jobs", (500, {"error": "Internal", "message": "boom"}))
    assert inproc("qsub", "--", "true") == (1, "", "qsub: server error (HTTP 500): boom\n")


def test_no_host_configured(cli, api, home):
    (home / "hosts.json").unlink()
    result = cli("qsub", "--", "true")
    assert result.returncode == 1
    assert result.stderr == (
        "qsub: no HyperBatch host: start one with `hyper local up` "
        "or import one with `hyper hosts import-deployment`\n"
    )


def test_unreachable_host(cli, api, home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    hosts = json.loads((home / "hosts.json").read_text())
    hosts["hosts"]["local"]["url"] = f"http://127.0.0.1:{port}"
    (home / "hosts.json").write_text(json.dumps(hosts))
    result = cli("qsub", "--", "true")
    assert result.returncode == 1
    assert result.stderr == f"qsub: cannot reach HyperBatch at http://127.0.0.1:{port}: is `hyper local up` running?\n"


def test_help_uses_double_dash_only(cli, api):
    result = cli("qsub", "--help")
    assert result.returncode == 0
    assert "-h " in result.stdout and "--wait" in result.stdout and "Submit" in result.stdout
    assert api.requests == []

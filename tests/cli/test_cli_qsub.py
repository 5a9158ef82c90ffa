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


def test_script_file_prints_id_alone_and_sends_what_its_header_says(cli, api):
    script = cli.workdir / "run.sh"
    script.write_text(SCRIPT)
    result = cli("qsub", "run.sh")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    body = _only_submit(api)
    assert result.stdout == f"{next(iter(api.jobs))}\n"
    assert body["script"] == SCRIPT  # exactly the file's text
    assert body["script_name"] == "run.sh"
    assert body["workdir"] == str(cli.workdir)
    # qsub reads the header itself, as PBS's does, and says so: the server does not read it again.
    assert (body["name"], body["walltime"], body["queue"], body["directive_prefix"]) == (
        "from-directive", 600, "fast", "")
    assert "command" not in body and "hold" not in body


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
        "-l", "walltime=01:00:00,mem=1GB",
        "-l", "ncpus=2",
        "-v", "A=1,B,C='x,y'",
        "-h",
        "-A", "acct", "-P", "proj", "-m", "abe", "-M", "me@example.com", "-c", "n", "-S", "/bin/sh",
        "-o", "out.txt", "-e", "logs/", "-j", "oe", "-k", "n", "-R", "e", "-W", "umask=022",
        "--", "python3", "-c", "print(1)", "-N", "not-an-option",
        env={"B": "from-env"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    body = _only_submit(api)
    env = body.pop("env")
    assert {k: env[k] for k in ("A", "B", "C")} == {"A": "1", "B": "from-env", "C": "x,y"}
    assert env["PBS_O_WORKDIR"] == str(cli.workdir) and env["PBS_O_LOGNAME"] == USER
    assert {"PBS_O_HOME", "PBS_O_PATH", "PBS_O_HOST", "PBS_O_SYSTEM"} <= set(env)
    assert body == {
        "command": ["python3", "-c", "print(1)", "-N", "not-an-option"],
        "name": "sweep",
        "queue": "fast",
        "definition": "big",
        "array": "1-10%2",
        "depend": "afterok:101:102,afterany:103",
        "priority": -5,
        "max_attempts": 3,
        "walltime": 3600,
        "resources": {"mem": "1gb", "ncpus": 2, "nodect": 1, "place": "pack", "select": "1:ncpus=2:mem=1gb"},
        "hold": True,
        "account": "acct",
        "project": "proj",
        "mail_points": "abe",
        "mail_users": "me@example.com",
        "checkpoint": "n",
        "shell": "/bin/sh",
        "output_path": f"{cli.workdir}/out.txt",
        "error_path": f"{cli.workdir}/logs/",
        "join": "oe",
        "keep": "n",
        "remove_files": "e",
        "umask": "0022",
        "workdir": str(cli.workdir),
        "directive_prefix": "",
    }


def test_t_is_an_alias_of_J_and_long_options(inproc, api):
    assert inproc("qsub", "-t", "0-10:2", "--name", "n", "--queue", "q", "--", "true")[0] == 0
    body = _only_submit(api)
    assert (body["array"], body["name"], body["queue"]) == ("0-10:2", "n", "q")


def test_hold_flag_clusters_with_value_options(inproc, api):
    assert inproc("qsub", "-hN", "--", "--", "true")[0] == 0  # -N's value is "--"
    body = _only_submit(api)
    assert body["hold"] is True and body["name"] == "--" and body["command"] == ["true"]


# One value for every option of the table that takes one; flags take none.
SAMPLES = {
    "-a": "2359", "-A": "acct", "-c": "w=10", "-e": "err.txt", "-j": "oe", "-J": "1-4%2", "-k": "oe",
    "-l": "walltime=10:00,select=1:ncpus=2:mem=2gb", "-m": "be", "-M": "me@example.com", "-N": "named",
    "-o": "out/", "-p": "7", "-P": "proj", "-q": "west", "-r": "n", "-R": "oe", "-S": "/bin/sh",
    "-v": "A=1,B='x,y'", "-W": "depend=afterany:1234,umask=027,sandbox=private", "-d": "standard",
    "--retries": "3", "--stage-in": "data/in.txt:in.txt", "--stage-out": "results/*.csv",
    "--notify": "https://hooks.example.com/jobs",
}


def _table_cases():
    from hyperbatch.core.options import OPTIONS

    for option in OPTIONS:
        if option.refused or not option.directive or option.flag in ("-C",):
            continue
        value = SAMPLES.get(option.flag)
        if option.metavar is not None:
            assert value is not None, f"add a sample value for {option.flag}"
        yield option.flag, value


@pytest.mark.parametrize(("flag", "value"), list(_table_cases()))
def test_every_option_means_the_same_on_the_command_line_and_in_a_directive(inproc, api, flag, value):
    """The option table is the one reader of both: the request qsub sends is the same either way."""
    (inproc.workdir / "out").mkdir(exist_ok=True)
    args = [flag] if value is None else [flag, value]
    quoted = " ".join(a if " " not in a and "'" not in a else f'"{a}"' for a in args)
    (inproc.workdir / "plain.sh").write_text("#!/bin/sh\necho hi\n")
    (inproc.workdir / "directive.sh").write_text(f"#!/bin/sh\n#PBS {quoted}\necho hi\n")
    env = {"PBS_DPREFIX": "#PBS"} if flag == "-V" else {}
    code_line, out_line, err_line = inproc("qsub", *args, "plain.sh", env=env)
    code_directive, out_directive, err_directive = inproc("qsub", "directive.sh", env=env)
    assert (code_line, err_line) == (0, ""), err_line
    assert (code_directive, err_directive) == (0, ""), err_directive
    line, directive = (call["body"] for call in api.calls("POST", "/jobs"))
    for body in (line, directive):
        body.pop("script"), body.pop("script_name")
    assert line == directive
    assert (out_line == "") == (flag == "-z") and (out_directive == "") == (flag == "-z")


def _refused_cases():
    from hyperbatch.core.options import OPTIONS

    yield ("-I",)
    yield ("-X",)
    yield ("-u", "bob")
    yield ("-W", "group_list=staff")
    yield ("-W", "stagein=in@elsewhere.example:/data")
    yield ("-W", "interactive=true")
    yield ("-l", "nodes=2:ppn=4")
    yield ("-l", "select=2:ncpus=4")
    yield ("-l", "cput=10:00")
    yield ("-l", "foo=1")
    yield ("-q", "batch@elsewhere")
    assert {o.flag for o in OPTIONS if o.refused} == {"-I", "-X", "-G", "-u"}


@pytest.mark.parametrize("args", list(_refused_cases()))
def test_a_refused_option_gives_the_same_one_line_reason_on_the_command_line_and_in_a_directive(inproc, api, args):
    (inproc.workdir / "plain.sh").write_text("#!/bin/sh\necho hi\n")
    (inproc.workdir / "directive.sh").write_text(f"#!/bin/sh\n\n#PBS {' '.join(args)}\necho hi\n")
    code, out, err = inproc("qsub", *args, "plain.sh")
    assert (code, out) == (2, "") and len(err.splitlines()) == 1 and err.startswith("qsub: "), err
    reason = err.removeprefix("qsub: ").strip()
    code, out, err = inproc("qsub", "directive.sh")
    assert (code, out) == (2, "")
    assert err == f"qsub: script line 3: {reason}\n"
    assert api.calls("POST") == []


def test_interactive_is_refused_with_one_line(cli, api):
    result = cli("qsub", "-I")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "qsub: -I: interactive jobs are not supported: HyperBatch runs batch jobs only; "
        "submit a script and follow its output with qlog -f\n"
    )


def test_command_line_wins_over_directives_and_lists_merge(inproc, api):
    (inproc.workdir / "job.sh").write_text(
        "#!/bin/sh\n#PBS -N header -l walltime=10:00,ncpus=2 -v A=1,B=1 -W depend=afterok:1234\necho\n"
    )
    assert inproc("qsub", "-N", "line", "-l", "mem=1gb", "-v", "B=2", "job.sh")[0] == 0
    body = _only_submit(api)
    assert body["name"] == "line" and body["walltime"] == 600
    assert body["resources"]["ncpus"] == 2 and body["resources"]["mem"] == "1gb"
    assert (body["env"]["A"], body["env"]["B"]) == ("1", "2")


def test_directive_prefix_from_C_or_PBS_DPREFIX(inproc, api):
    (inproc.workdir / "job.sh").write_text("#!/bin/sh\n#PBS -N pbs\n#MY -N mine\necho\n")
    assert inproc("qsub", "-C", "#MY", "job.sh")[0] == 0
    assert inproc("qsub", "job.sh", env={"PBS_DPREFIX": "#MY"})[0] == 0
    assert inproc("qsub", "-C", "", "job.sh")[0] == 0
    names = [call["body"].get("name") for call in api.calls("POST", "/jobs")]
    assert names == ["mine", "mine", None]


def test_V_and_bare_v_in_a_directive_read_qsubs_environment(inproc, api):
    (inproc.workdir / "job.sh").write_text("#!/bin/sh\n#PBS -V\n#PBS -v ONLY_HERE\necho\n")
    assert inproc("qsub", "job.sh", env={"MY_SETTING": "1", "ONLY_HERE": "x", "API_TOKEN": "t"})[0] == 0
    env = _only_submit(api)["env"]
    assert env["MY_SETTING"] == "1" and env["ONLY_HERE"] == "x" and "API_TOKEN" not in env


def test_z_prints_no_id(cli, api):
    result = cli("qsub", "-z", "--", "true")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert len(api.calls("POST", "/jobs")) == 1


def test_a_defers_to_a_time_in_the_local_zone(inproc, api):
    import time

    assert inproc("qsub", "-a", "202612311830.15", "--", "true")[0] == 0
    when = _only_submit(api)["execution_time"]
    assert time.localtime(when)[:6] == (2026, 12, 31, 18, 30, 15)


@pytest.mark.parametrize(
    ("final", "code", "stderr"),
    [
        ({"state": "SUCCEEDED", "exit_status": 0}, 0, ""),
        ({"state": "FAILED", "exit_status": 3}, 3, ""),
        ({"state": "FAILED", "exit_status": 256 + 15}, 15, ""),  # 271 & 0xFF, as PBS's qsub -W block
        ({"state": "FAILED", "exit_status": -29}, 227, ""),  # walltime: -29 & 0xFF
        ({"state": "CANCELLED", "exit_status": None}, 3, "qsub: 1.testhost Job to be deleted at request of alice\n"),
    ],
)
def test_block_exits_with_the_jobs_status_as_pbs(cli, api, final, code, stderr):
    job_id = "1.testhost"
    api.progress[job_id] = [final]
    result = cli("qsub", "-W", "block=true", "--", "true")
    assert (result.returncode, result.stdout, result.stderr) == (code, f"{job_id}\n", stderr)


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
        ({"state": "FAILED", "exit_status": -29}, 1),  # walltime: a scheduler-side failure
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
        (["-p", "x", "--", "true"], "illegal -p value: priority 'x'"),
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
        (["-W", "group_list=x", "--", "true"], "-W group_list: not supported"),
        (["-W", "depend=", "--", "true"], "needs a value"),
        (["-l", "mem", "--", "true"], "give key=value"),
        (["-v", "SURELY_NOT_SET_ANYWHERE", "--", "true"], "cannot send environment with the job"),
        (["-J", "1-4", "-r", "n", "--", "true"], "cannot submit non-rerunable Array Job"),
        (["-m", "j", "--", "true"], "mail option 'j' can not be used without array job"),
        (["-a", "2599", "--", "true"], "illegal -a value"),
        (["-M", ",,", "--", "true"], "illegal -M value ',,': give user[@host][,user[@host]...] with no empty item"),
        (["-M", "ann@lab,bob#2", "--", "true"], "('bob#2' is none)"),
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

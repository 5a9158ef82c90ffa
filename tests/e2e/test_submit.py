"""Submitting scripts and commands, exit statuses, and reading output (qsub, qstat -f, qlog)."""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import time

import pytest

from tests.e2e.conftest import BIN

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_submit")]


DIRECTIVES = """\
#!/bin/bash
#PBS -N from-directive
#PBS -l walltime=00:05:00
#PBS -v GREETING=hello-e2e
echo "greeting=$GREETING jobid=$PBS_JOBID name=$PBS_JOBNAME"
"""


def test_directives_set_name_walltime_and_environment(hb):
    script = hb.script(DIRECTIVES, "directives.sh")
    job_id = hb.submit(script)  # asserts qsub printed the id alone

    job = hb.wait_state(job_id, "SUCCEEDED")
    assert job["name"] == "from-directive"
    attrs = hb.full(job_id)
    assert attrs["Job_Name"] == "from-directive"
    assert attrs["Resource_List.walltime"] == "00:05:00"
    assert "GREETING=hello-e2e" in attrs["Variable_List"].split(",")
    assert attrs["job_state"] == "F" and attrs["hyper_state"] == "SUCCEEDED"
    assert attrs["Exit_status"] == "0"

    out = hb.run("qlog", job_id).stdout
    assert out == f"greeting=hello-e2e jobid={job_id} name=from-directive\n"


def test_command_line_name_wins_over_directive(hb):
    script = hb.script(DIRECTIVES, "directives2.sh")
    job_id = hb.submit("-N", "other", script)
    hb.wait_state(job_id, "SUCCEEDED")
    assert hb.full(job_id)["Job_Name"] == "other"
    assert hb.run("qlog", job_id).stdout == f"greeting=hello-e2e jobid={job_id} name=other\n"


def test_failing_job_reports_its_exit_status(hb):
    script = hb.script("#!/bin/bash\necho about to fail\nexit 3\n", "fail3.sh")
    proc = hb.run("qsub", "--retries", "0", "--wait", script, check=False, timeout=45)
    assert proc.returncode == 3, proc
    job_id = proc.stdout.strip()
    assert proc.stdout == job_id + "\n"
    hb.submitted.append(job_id)

    attrs = hb.full(job_id)
    assert attrs["job_state"] == "F"
    assert attrs["hyper_state"] == "FAILED"
    assert attrs["Exit_status"] == "3"
    assert attrs["run_count"] == "1"
    assert hb.job(job_id)["max_attempts"] == 1
    assert hb.run("qlog", job_id).stdout == "about to fail\n"


def test_job_killed_by_a_signal(hb):
    script = hb.script("#!/bin/bash\nkill -9 $$\necho never printed\n", "kill9.sh")
    proc = hb.run("qsub", "--retries", "0", "--wait", script, check=False, timeout=45)
    assert proc.returncode == 137, proc  # 128 + 9, as a shell reports it
    job_id = proc.stdout.strip()
    hb.submitted.append(job_id)

    attrs = hb.full(job_id)
    assert attrs["hyper_state"] == "FAILED"
    assert attrs["Exit_status"] == "265"  # PBS: 256 + signal number
    assert "signal 9" in attrs.get("comment", "")
    assert hb.run("qlog", job_id).stdout == ""


def test_successful_wait_exits_zero(hb):
    proc = hb.run("qsub", "--wait", "--", "echo", "fine", timeout=45)
    job_id = proc.stdout.strip()
    assert proc.stdout == job_id + "\n"
    assert hb.job(job_id)["state"] == "SUCCEEDED"
    assert hb.run("qlog", job_id).stdout == "fine\n"


def test_stdout_and_stderr(hb):
    script = hb.script(
        "#!/bin/bash\necho to-stdout-1\necho to-stderr-1 >&2\necho to-stdout-2\necho to-stderr-2 >&2\n",
        "streams.sh",
    )
    job_id = hb.submit(script)
    hb.wait_state(job_id, "SUCCEEDED")
    out = hb.run("qlog", job_id)
    assert out.stdout == "to-stdout-1\nto-stdout-2\n"
    assert out.stderr == ""
    err = hb.run("qlog", "-e", job_id)
    assert err.stdout == "to-stderr-1\nto-stderr-2\n"


def _read_until(proc, wanted: bytes, timeout: float) -> bytes:
    """Read proc's stdout (binary) until `wanted` has appeared; bounded by `timeout`."""
    got = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while wanted not in got:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {wanted!r}; read so far {got!r}"
            if selector.select(left):
                chunk = os.read(proc.stdout.fileno(), 4096)
                assert chunk, f"output ended before {wanted!r}; read {got!r}"
                got += chunk
    return got


def test_qlog_follow_prints_live_and_ends_with_the_job(hb):
    go = hb.workdir / "go"
    script = hb.script(
        "#!/bin/bash\n"
        'echo "tick 1"\n'
        # wait (bounded) until the test has seen tick 1 through qlog -f, then print over ~2 s
        'for i in $(seq 300); do [ -e "$PBS_O_WORKDIR/go" ] && break; sleep 0.1; done\n'
        'for i in 2 3 4 5; do echo "tick $i"; sleep 0.4; done\n'
        "echo done\n",
        "ticks.sh",
    )
    job_id = hb.submit(script)
    hb.wait_state(job_id, "RUNNING")
    follower = subprocess.Popen(
        [str(BIN / "qlog"), "-f", job_id], env=hb.env, cwd=hb.workdir,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        first = _read_until(follower, b"tick 1\n", timeout=20)
        assert follower.poll() is None, "qlog -f returned while the job was still running"
        assert hb.job(job_id)["state"] == "RUNNING"
        go.touch()
        rest, err = follower.communicate(timeout=45)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, err
    assert err == b""
    assert (first + rest).decode() == "".join(f"tick {i}\n" for i in range(1, 6)) + "done\n"
    assert hb.job(job_id)["state"] == "SUCCEEDED"


def test_script_on_stdin(hb):
    job_id = hb.submit("-N", "from-stdin", input="#!/bin/bash\necho read from stdin\n")
    hb.wait_state(job_id, "SUCCEEDED")
    assert hb.full(job_id)["Job_Name"] == "from-stdin"
    assert hb.run("qlog", job_id).stdout == "read from stdin\n"


def test_a_job_over_its_walltime_is_killed_and_failed_with_the_reason(hb, tmp_path):
    pidfile = tmp_path / "walltime.pid"
    job_id = hb.submit("-l", "walltime=00:00:02", "--retries", "0", "--",
                       "bash", "-c", f"echo $$ > {pidfile}; exec sleep 60")
    job = hb.wait_state(job_id, "FAILED", timeout=30)
    assert job["exit_status"] == -29  # PBS Pro's JOB_EXEC_KILL_WALLTIME
    attrs = hb.full(job_id)
    assert attrs["Exit_status"] == "-29"
    assert re.fullmatch(r"job killed: walltime \d+ exceeded limit 2", attrs["comment"]), attrs["comment"]
    stderr = hb.run("qlog", "-e", job_id).stdout
    assert re.fullmatch(r"=>> PBS: job killed: walltime \d+ exceeded limit 2\n", stderr), stderr
    pid = int(pidfile.read_text())
    deadline = time.time() + 10
    while time.time() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}"), "the job's process outlived its walltime"
    assert hb.run("qsub", "--wait", "-l", "walltime=00:00:01", "--retries", "0", "--", "sleep", "30",
                  check=False).returncode == 1  # a scheduler-side failure: negative status, exit 1

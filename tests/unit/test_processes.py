import os
import signal
import subprocess
import time

from hyperbatch.support.processes import signal_group


def test_group_zero_and_init_are_never_signalled():
    # killpg(0) would hit the caller's own group: refusing it keeps this test process alive.
    assert signal_group(0, signal.SIGTERM) is False
    assert signal_group(1, signal.SIGTERM) is False


def test_a_group_is_signalled_and_a_gone_one_reported():
    proc = subprocess.Popen(["sleep", "30"], process_group=0)
    assert signal_group(proc.pid, signal.SIGKILL) is True
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert signal_group(proc.pid, signal.SIGKILL) is False
    assert os.getpgrp() != proc.pid


def test_a_zombie_or_a_gone_process_is_not_alive_a_running_one_is():
    from hyperbatch.support.processes import process_alive

    proc = subprocess.Popen(["sleep", "30"])
    assert process_alive(proc.pid)
    proc.kill()
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert not process_alive(proc.pid)
    proc.wait()
    assert not process_alive(proc.pid)


def test_a_job_record_reads_back_whole_and_an_unreadable_one_as_none(tmp_path):
    from hyperbatch.support.processes import STARTING, JobRecord, read_job_record

    path = tmp_path / "w.job"
    for record in (JobRecord(4242, "01M7Y8Y0CXBNC", "17", 3), JobRecord(STARTING, "01M7Y8Y0CXBNC", "17", 3),
                   JobRecord(0)):
        path.write_bytes(record.encode())
        assert read_job_record(path) == record
    path.write_bytes(b"4242        \n")  # what agents wrote before records named their run
    assert read_job_record(path) == JobRecord(4242)
    path.write_bytes(b"garbage\n")
    assert read_job_record(path) is None
    assert read_job_record(tmp_path / "missing.job") is None


def test_a_process_is_known_by_the_environment_it_started_with():
    from hyperbatch.support.processes import started_with

    proc = subprocess.Popen(["sleep", "30"], env={**os.environ, "HYPER_WORKER_ID": "w-1"})
    try:
        # Until the child has exec'd, /proc shows the environment it was forked with (the test's own).
        deadline = time.monotonic() + 5
        while not started_with(proc.pid, "HYPER_WORKER_ID", "w-1") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert started_with(proc.pid, "HYPER_WORKER_ID", "w-1")
        assert not started_with(proc.pid, "HYPER_WORKER_ID", "w-2")  # its pid, someone else's process
    finally:
        proc.kill()
        proc.wait()
    assert not started_with(proc.pid, "HYPER_WORKER_ID", "w-1")


FAKE_SUDO = """#!{python}
# Records its arguments, then does what sudo would: runs the command after `--` with only the
# variables it was asked to preserve (and HOME), as the same user (a test cannot switch users).
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_SUDO_RECORD"], "a") as f:
    f.write(json.dumps(args) + "\\n")
split = args.index("--")
options, command = args[:split], args[split + 1:]
kept = [o.split("=", 1)[1] for o in options if o.startswith("--preserve-env=")]
names = kept[0].split(",") if kept else []
env = {{n: os.environ[n] for n in names if n in os.environ}}
env["HOME"] = "/home/" + options[options.index("-u") + 1]
os.execvpe(command[0], command, {{**env, "PATH": os.environ["PATH"]}})
"""


def test_without_root_a_job_user_goes_through_sudo_with_the_jobs_variables_and_signals(tmp_path, monkeypatch):
    import json
    import sys

    from hyperbatch.support.processes import JobUser

    sudo = tmp_path / "sudo"
    sudo.write_text(FAKE_SUDO.format(python=sys.executable))
    sudo.chmod(0o755)
    record = tmp_path / "record"
    monkeypatch.setenv("FAKE_SUDO_RECORD", str(record))  # the agent's own environment, for its kills
    runner = JobUser("hyperjob", as_root=False, sudo=str(sudo))
    env = {"PATH": os.environ["PATH"], "HYPER_JOB_ID": "J1", "MY_SETTING": "mine", "HOME": "/home/hyper",
           "FAKE_SUDO_RECORD": str(record)}
    argv, env, extra = runner.popen(["sh", "-c", 'echo "$HYPER_JOB_ID $MY_SETTING $HOME"; exec sleep 30'], env)
    assert extra == {}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True, process_group=0)
    assert proc.stdout.readline() == "J1 mine /home/hyperjob\n"
    assert runner.signal(proc.pid, signal.SIGTERM) is True
    assert proc.wait(timeout=10) == -signal.SIGTERM
    started, killed = [json.loads(line) for line in record.read_text().splitlines()]
    assert started[:5] == ["-n", "-u", "hyperjob", "-H", "--preserve-env=FAKE_SUDO_RECORD,HYPER_JOB_ID,MY_SETTING,PATH"]
    assert killed == ["-n", "-u", "hyperjob", "--", "kill", "-s", "TERM", "--", f"-{proc.pid}"]


def test_without_a_job_user_jobs_start_as_they_are(tmp_path):
    from hyperbatch.support.processes import JobUser

    runner = JobUser(None)
    assert runner.popen(["true"], {"A": "1"}) == (["true"], {"A": "1"}, {})
    runner.share(tmp_path)
    assert (tmp_path.stat().st_mode & 0o777) != 0o777

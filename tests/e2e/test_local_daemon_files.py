"""`hyper local` trusts only what it can prove (issue 9, items 9 and 10): the daemon is the process that
holds the home's lock, daemon.json is checked before it is believed, and a home other users may
use is refused.

Before, `hyper local down` signalled whatever pid a stale daemon.json named (a recycled pid: an
unrelated process got SIGTERM, then SIGKILL); a damaged daemon.json gave `internal error:
TypeError`, or was deleted while the daemon ran; a deleted token file was never rewritten; and a
home open to other users was used as it was.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import stat
import subprocess
import sys
from contextlib import contextmanager

import pytest

from tests.e2e.conftest import Daemon, one_line, pid_alive, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_local_daemon_files")]


@contextmanager
def fresh_daemon(tmp_path_factory, start: bool = True):
    """A home of its own (and its daemon, started unless `start` is False), stopped afterwards."""
    daemon = Daemon(tmp_path_factory.mktemp(f"daemon-files-{secrets.token_hex(3)}"))
    try:
        if start:
            daemon.up()
        yield daemon
    finally:
        daemon.down(check=False)
        daemon.kill_everything()


@contextmanager
def bystander():
    """An unrelated process of ours: what a recycled pid in a stale daemon.json points at."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def stale_state(pid: int, port: int = 1) -> str:
    return json.dumps({"pid": pid, "url": f"http://127.0.0.1:{port}", "port": port, "config_dir": "/nowhere"})


def test_down_never_signals_the_pid_a_stale_daemon_json_names(tmp_path_factory):
    with fresh_daemon(tmp_path_factory) as hb, bystander() as other:
        pid = hb.state["pid"]
        os.kill(pid, signal.SIGKILL)  # the daemon crashes and leaves daemon.json behind ...
        wait_for(lambda: not pid_alive(pid), 10, what="the killed daemon to be gone")
        (hb.home / "daemon.json").write_text(stale_state(other.pid, hb.port))  # ... its pid now someone else's
        down = hb.run("hyper", "local", "down")
        assert down.stdout == "HyperBatch local mode is not running\n"
        status = hb.run("hyper", "local", "status", check=False)
        assert (status.returncode, one_line(status.stderr)) == (
            1, "hyper: HyperBatch local mode is not running: start it with `hyper local up`")
        assert other.poll() is None, "an unrelated process was signalled"
        hb.up()  # a new daemon starts over the stale file, and is the one `down` stops
        new = hb.state["pid"]
        assert hb.run("hyper", "local", "down").stdout == f"HyperBatch local mode stopped (pid {new})\n"
        assert other.poll() is None


# A null pid was `internal error: TypeError`; a pid that is no number made status delete the file.
@pytest.mark.parametrize("damage", ['{"pid": null}', '{"pid": "12x", "port": 1}', "not json"])
def test_a_damaged_daemon_json_gives_one_line_and_is_rewritten_by_up(hb, damage):
    pid = hb.state["pid"]
    (hb.home / "daemon.json").write_text(damage)
    status = hb.run("hyper", "local", "status", check=False)
    assert status.returncode == 1 and "Traceback" not in status.stderr
    line = one_line(status.stderr)
    assert line.startswith(f"hyper: HyperBatch local mode runs (pid {pid}), but {hb.home / 'daemon.json'} is "), line
    assert line.endswith("run `hyper local up` to have it rewritten"), line
    assert pid_alive(pid) and (hb.home / "daemon.json").read_text() == damage  # neither killed nor deleted

    up = hb.run("hyper", "local", "up", "--port", hb.port, "--config", hb.config_dir)
    assert "rewrote its token file and daemon.json" in up.stdout
    assert hb.state["pid"] == pid
    assert hb.run("hyper", "local", "status").stdout.startswith(f"url: {hb.url}\n")


def test_up_rewrites_a_deleted_token(hb):
    token = hb.token
    (hb.home / "token").unlink()
    broken = hb.run("qstat", check=False)
    assert broken.returncode == 1 and "token" in one_line(broken.stderr)
    up = hb.run("hyper", "local", "up", "--port", hb.port, "--config", hb.config_dir)
    assert "rewrote its token file" in up.stdout
    assert hb.token == token and stat.S_IMODE(os.stat(hb.home / "token").st_mode) == 0o600
    hb.run("qstat")  # the commands work again


def test_a_second_daemon_on_the_same_home_is_refused(hb):
    proc = subprocess.run(
        [sys.executable, "-m", "hyperbatch.wiring.daemon", "--home", str(hb.home), "--config", str(hb.config_dir)],
        env=hb.env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert f"a HyperBatch daemon already serves {hb.home} (pid {hb.state['pid']})" in proc.stderr
    assert hb.run("hyper", "local", "status").stdout.startswith(f"url: {hb.url}\n")


def test_down_stops_its_daemon_even_with_daemon_json_damaged(tmp_path_factory):
    with fresh_daemon(tmp_path_factory) as hb:
        pid = hb.state["pid"]
        (hb.home / "daemon.json").write_text("{")
        down = hb.run("hyper", "local", "down")
        assert down.stdout == f"HyperBatch local mode stopped (pid {pid})\n"
        assert not pid_alive(pid)


def test_a_home_other_users_may_use_is_refused(tmp_path_factory):
    """Item 10: others could read the database and the token, or plant a daemon.json."""
    with fresh_daemon(tmp_path_factory, start=False) as hb:
        hb.home.mkdir(mode=0o700)
        for mode, commands in ((0o755, ("up", "status", "down")), (0o770, ("up",)), (0o701, ("up",))):
            hb.home.chmod(mode)
            for command in commands:
                options = ("--port", hb.port, "--config", hb.config_dir) if command == "up" else ()
                proc = hb.run("hyper", "local", command, *options, check=False)
                assert proc.returncode == 1, proc
                assert one_line(proc.stderr) == (
                    f"hyper: HYPERBATCH_HOME {hb.home} is open to other users (mode {mode:04o}): they could read "
                    f"the token and the jobs, or plant files; check what is in it, then run chmod 700 {hb.home}")
            assert not (hb.home / "daemon.json").exists() and not hb.leftovers()
        daemon = subprocess.run(  # the daemon refuses it too, started by hand
            [sys.executable, "-m", "hyperbatch.wiring.daemon", "--home", str(hb.home), "--config", str(hb.config_dir)],
            env=hb.env, capture_output=True, text=True, timeout=30)
        assert daemon.returncode == 1 and "is open to other users (mode 0701)" in daemon.stderr
        hb.home.chmod(0o700)
        hb.up()  # once private, it is used
        assert hb.run("hyper", "local", "status").returncode == 0

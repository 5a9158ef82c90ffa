"""hyperbatch.support.local_home: a private home, a daemon proven by its lock, daemon.json checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hyperbatch.support import local_home
from hyperbatch.support.local_home import DaemonFileError, HomeError


@pytest.fixture
def home(tmp_path):
    return local_home.ensure_home(tmp_path / "home")


def test_a_new_home_is_private(home):
    assert os.stat(home).st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", [0o755, 0o711, 0o770, 0o707, 0o740])
def test_a_home_others_may_use_is_refused(home, mode):
    home.chmod(mode)
    with pytest.raises(HomeError, match=rf"is open to other users \(mode {mode:04o}\).*chmod 700"):
        local_home.check_home(home)


def test_a_file_is_no_home(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(HomeError, match="is not a directory"):
        local_home.check_home(tmp_path / "file")


def holder_process(home):
    """A process that takes the home's lock as a daemon does, and says when it holds it."""
    code = (f"import sys, time; from pathlib import Path; from hyperbatch.support import local_home; "
            f"local_home.take_lock(Path({str(home)!r})); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def test_the_lock_names_the_daemon_while_it_lives_and_nobody_after(home):
    assert local_home.lock_holder(home) is None  # no lock file yet
    proc = holder_process(home)
    try:
        assert local_home.lock_holder(home) == proc.pid
        assert local_home.lock_holder(home, expected=proc.pid) == proc.pid
        with pytest.raises(HomeError, match=f"already serves {home} \\(pid {proc.pid}\\)"):
            local_home.take_lock(home)
    finally:
        proc.kill()
        proc.wait()
    assert local_home.lock_holder(home) is None  # the pid is still in the file, but nobody holds the lock


def test_a_pid_in_the_lock_file_is_not_believed_without_the_lock(home):
    (home / local_home.LOCK_FILE).write_text(f"{os.getpid()}\n")  # a live pid, ours: still no daemon
    assert local_home.lock_holder(home) is None


def state(**fields):
    return json.dumps({"pid": 1234, "url": "http://127.0.0.1:8765", "port": 8765, "config_dir": "/c", **fields})


@pytest.mark.parametrize("text, why", [
    ('{"pid": null}', "no valid pid"),
    ("[]", "not a JSON object"),
    ("{", "not JSON"),
    ("", "not JSON"),
    (state(pid="1234"), "no valid pid"),
    (state(pid=True), "no valid pid"),
    (state(port=0), "no valid port"),
    (state(url="http://attacker.example:8765"), "its url is not http://127.0.0.1:8765"),
    (state(config_dir=None), "no configuration directory"),
])
def test_a_damaged_daemon_json_says_so_in_one_line(home, text, why):
    (home / local_home.STATE_FILE).write_text(text)
    with pytest.raises(DaemonFileError) as caught:
        local_home.read_state(home)
    assert str(caught.value) == f"{home / local_home.STATE_FILE} is damaged ({why})"
    assert (home / local_home.STATE_FILE).read_text() == text  # reading deletes nothing


def test_a_sound_daemon_json_is_read(home):
    (home / local_home.STATE_FILE).write_text(state())
    assert local_home.read_state(home)["pid"] == 1234
    (home / local_home.STATE_FILE).unlink()
    assert local_home.read_state(home) is None

"""Watching work from a terminal: `hyper top` and `qsub --wait` in a pseudo-terminal (pexpect), against
a real daemon, and what they print when stdout is no terminal; qstat's progress and failure marks."""

from __future__ import annotations

import re
import termios

import pexpect
import pytest

from tests.e2e.conftest import BIN, one_line, task_id

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_top")]

SWEEP = ("-J", "1-1000", "-N", "sweep", "--", "sleep", "0.01")  # ~1,000 short tasks: a few seconds of progress


def spawn(hb, *args: str) -> pexpect.spawn:
    return pexpect.spawn(str(BIN / args[0]), list(args[1:]), env=hb.env, cwd=str(hb.workdir),
                         dimensions=(60, 140), encoding="utf-8", codec_errors="replace", timeout=30)


def progress_seen(child: pexpect.spawn, total: int, until: str) -> list[int]:
    """Every `done/total` the screen showed, in order, until `until` is shown."""
    seen = []
    pattern = re.compile(rf"\b(\d+)/{total}\b")
    while True:
        child.expect(pattern)
        seen.append(int(child.match.group(1)))
        if f"{seen[-1]}/{total}" == until:
            return seen


def terminal_restored(child: pexpect.spawn) -> bool:
    """The pty is back in canonical mode with echo on, as the command found it."""
    lflag = termios.tcgetattr(child.child_fd)[3]
    return bool(lflag & termios.ICANON) and bool(lflag & termios.ECHO)


def test_a_1000_task_array_moves_in_hyper_top_and_in_qsub_wait_and_q_quits(hb):
    top = spawn(hb, "hyper", "top", "--interval", "0.3")
    qsub = None
    try:
        top.expect("q quit")  # the footer with the keys: the screen is up
        assert not terminal_restored(top)  # cbreak while it runs: keys arrive one by one, unechoed
        qsub = spawn(hb, "qsub", "--wait", *SWEEP)
        qsub.expect(r"[1-9][0-9]*\[\]\.\S+")
        array_id = qsub.match.group(0)
        top.expect(re.escape(array_id))
        on_top = progress_seen(top, 1000, until="1000/1000")
        # qsub's bar went to its own terminal meanwhile (a few short lines, well within the pty's buffer).
        on_qsub = progress_seen(qsub, 1000, until="1000/1000")
        qsub.expect(pexpect.EOF)
        top.send("Q")  # the queues in turn: the first is batch
        top.expect("queue batch")
        top.send("q")
        top.expect(pexpect.EOF)
        assert "\x1b[?1049l" in top.before  # left the alternate screen
        restored = terminal_restored(top)  # read before close() lets the pty go
    finally:
        top.close(force=True)
        if qsub is not None:
            qsub.close(force=True)
    for seen in (on_top, on_qsub):
        assert sorted(set(seen) - {0, 1000}), f"no progress between 0 and 1000 was shown: {seen}"
        assert seen == sorted(seen), f"progress went backwards: {seen}"
    assert (top.exitstatus, qsub.exitstatus) == (0, 0)
    assert restored


def test_hyper_top_ctrl_c_restores_the_terminal(hb):
    top = spawn(hb, "hyper", "top", "--interval", "0.3")
    try:
        top.expect("q quit")
        top.sendintr()
        top.expect(pexpect.EOF)
        assert "Traceback" not in top.before
        restored = terminal_restored(top)
    finally:
        top.close(force=True)
    assert top.exitstatus == 130
    assert restored


def test_hyper_top_off_a_terminal_prints_one_snapshot(hb):
    array_id = hb.submit("-J", "1-4", "-N", "fourfail", "--", "sh", "-c", 'test "$PBS_ARRAY_INDEX" != 3')
    hb.wait_state(array_id, "FAILED", timeout=30)
    out = hb.run("hyper", "top", "--user", hb.jobs(array_id)[0]["owner"].split("@")[0]).stdout
    row = next(line for line in out.splitlines() if line.startswith(array_id))
    assert row.split()[1:2] == ["fourfail"] and "4/4" in row.split(), out
    assert "Newest failures" in out and re.search(rf"{re.escape(task_id(array_id, 3))}\s.*exit status 1", out), out
    assert "\x1b[" not in out and "q quit" not in out  # plain text, no keys: it is not interactive
    assert "Arrays: none" in hb.run("hyper", "top", "--once", "--queue", "west").stdout  # nothing of ours there
    unknown = hb.run("hyper", "top", "--once", "--queue", "nosuchqueue", check=False)
    assert unknown.returncode != 0 and unknown.stdout == ""
    assert one_line(unknown.stderr) == "hyper: unknown queue 'nosuchqueue': configured queues are batch, west"


def test_qsub_wait_off_a_terminal_prints_the_id_alone(hb):
    piped = hb.run("qsub", "--wait", "-J", "1-20", "--", "true")
    assert re.fullmatch(r"[1-9][0-9]*\[\]\.\S+\n", piped.stdout), piped.stdout  # exactly as before
    assert piped.stderr == ""


def test_qstat_marks_failed_tasks_and_shows_array_progress(hb):
    array_id = hb.submit("-J", "1-5", "-N", "marks", "--", "sh", "-c",
                         'case $PBS_ARRAY_INDEX in 2) exit 3;; 4) kill -9 $$;; esac')
    hb.wait_state(array_id, "FAILED", timeout=30)
    rows = {line.split()[0]: line.split() for line in hb.run("qstat", "-tx", array_id).stdout.splitlines()[2:]}
    assert rows[array_id][3] == "5/5" and rows[array_id][-2] == "F"
    assert {i: rows[task_id(array_id, i)][3] for i in range(1, 6)} == {1: "0", 2: "exit=3", 3: "0", 4: "sig=9", 5: "0"}
    assert {rows[task_id(array_id, i)][-2] for i in range(1, 6)} == {"X"}  # PBS's letter, for every finished task
    full = hb.run("qstat", "-fx", task_id(array_id, 4)).stdout
    assert "    comment = killed by signal 9 (SIGKILL)\n" in full and "    hyper_state = FAILED\n" in full

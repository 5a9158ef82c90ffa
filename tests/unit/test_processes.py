import os
import signal
import subprocess

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

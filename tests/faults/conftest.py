"""The fault suite: real daemons, workers and jobs, driven through the installed CLI, hurt on purpose.

Every test gets a daemon of its own (`hb`, tests/e2e/conftest.py's Daemon: its own HYPERBATCH_HOME, port
and a configuration with a 3 s lease and 0.5 s heartbeats) and a ledger (`ledger`, a file every task
appends to: tests/faults/ledger.py), and ends with a ledger check. A module may adjust the configuration
with `faults_configure(config)`, as e2e modules do with `e2e_configure`.

Run it alone with `pytest -m faults`; it is part of the whole suite too.
"""

from __future__ import annotations

import subprocess
import warnings

import pytest

from tests.e2e.conftest import Daemon
from tests.faults import ledger as ledgers


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if "tests/faults/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def hb(request, tmp_path):
    """A running local daemon for this test; stopped (and anything left killed) afterwards."""
    daemon = Daemon(tmp_path / "daemon", getattr(request.module, "faults_configure", None))
    try:
        daemon.up()
        yield daemon
    finally:
        try:
            daemon.down(check=False)
        except subprocess.TimeoutExpired:
            pass
        killed = daemon.kill_everything()
        if killed:
            warnings.warn(f"{request.node.name}: killed {len(killed)} processes left after `hyper local down`")


class Ledger:
    """The ledger file of one test and the task script that writes it."""

    def __init__(self, hb: Daemon, root):
        self.path = root / "ledger.csv"
        self.script = hb.script(ledgers.TASK, "task.sh")

    def env(self, **values) -> list[str]:
        """qsub arguments: -v LEDGER=... plus the task's knobs (TICKS, TICK, EXIT, HOLD_DIR, ...)."""
        pairs = {"LEDGER": self.path, **values}
        return ["-v", ",".join(f"{k}={v}" for k, v in pairs.items())]

    def runs(self):
        return ledgers.runs(self.path)

    def check(self, expected, **kw):
        return ledgers.check(self.path, expected, **kw)


@pytest.fixture
def ledger(hb, tmp_path) -> Ledger:
    return Ledger(hb, tmp_path)

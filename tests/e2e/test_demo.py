"""`make demo` works: the README promises it on a fresh machine, and it drives the real commands
against a real daemon, so a change to what a command prints or how it exits shows up here."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.e2e.conftest import BIN, REPO

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_demo")]


def test_the_demo_runs_every_example_to_its_end_and_leaves_the_checkout_as_it_was():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYPERBATCH_", "HYPER_"))}
    before = set(os.listdir(REPO))
    proc = subprocess.run([str(BIN / "python"), "examples/demo.py"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert out.rstrip().endswith("Demo finished: every job above reached a final state.")
    assert re.search(r"^Hello from job 1\.\S+ \(attempt 1\)", out, re.M)  # qlog of the first job
    assert re.search(r"^\s+run_count = 2$", out, re.M)  # flaky.sh: failed once, retried (--retries 1)
    assert re.search(r"^\$ qsub --wait -N waited .*\n8\.\S+$", out, re.M)  # waited, then exited 0
    assert "HyperBatch local mode stopped" in out
    # The jobs' output files land where they were submitted: the demo's scratch directory, not the checkout.
    assert re.search(r"^Output files written where the jobs were submitted .*\n .*hello\.o1 .*squares\.o2\.7", out, re.M)
    assert set(os.listdir(REPO)) == before

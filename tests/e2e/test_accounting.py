"""Every job accounted for, through the real CLI: no phantom run, no run past a cancel, nothing repeated.

Tasks append `start <index> <attempt>` and `end <index> <attempt>` lines to a
ledger file, so a test sees which runs happened, how often, and whether two
overlapped, without looking at a clock. Jobs that must be caught mid-run wait
for a "go" file the test creates.

Heartbeats here are 10 s apart (lease 30 s): a job that ends right after its
qdel was accepted ends long before its worker would hear of the cancel.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.conftest import FINAL, one_line, task_id, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_accounting")]


def e2e_configure(config: dict) -> None:
    config["settings"]["local"].update(lease_seconds=30, heartbeat_seconds=10)


LEDGER_TASK = """\
#!/bin/bash
echo "start ${{PBS_ARRAY_INDEX:-none}} $HYPER_ATTEMPT" >> {ledger}
if [ "$PBS_ARRAY_INDEX" = "{gate}" ]; then
    while [ ! -e {go} ]; do sleep 0.02; done
fi
sleep {nap}
echo "end ${{PBS_ARRAY_INDEX:-none}} $HYPER_ATTEMPT" >> {ledger}
"""


class Ledger:
    def __init__(self, path: Path):
        self.path = path

    def lines(self) -> list[list[str]]:
        return [line.split() for line in self.path.read_text().splitlines()] if self.path.exists() else []

    def started(self, index: str) -> bool:
        return any(kind == "start" and i == index for kind, i, _ in self.lines())

    def ended(self) -> list[str]:
        return [i for kind, i, _ in self.lines() if kind == "end"]

    def most_at_once(self) -> int:
        running = most = 0
        for kind, _, _ in self.lines():
            running += 1 if kind == "start" else -1
            most = max(most, running)
        return most


def ledger_script(hb, name: str, gate: str = "", nap: float = 0) -> tuple[Path, Ledger]:
    ledger = Ledger(hb.workdir / f"{name}.ledger")
    go = hb.workdir / f"{name}.go"
    text = LEDGER_TASK.format(ledger=ledger.path, gate=gate, go=go, nap=nap)
    return hb.script(text, f"{name}.sh"), ledger


def test_qdel_of_a_queued_task_of_a_limited_array_runs_nothing_extra_and_holds_back_its_dependents(hb):
    """Defect 1: `qsub -J 1-5%1 script`, then `qdel ID[3]` while 3 is still queued."""
    script, ledger = ledger_script(hb, "limited", gate="1")
    array = hb.submit("-J", "1-5%1", script)
    child = hb.submit("-W", f"depend=afterok:{array}", "--", "echo", "child ran")
    wait_for(lambda: ledger.started("1"), 20, what="task 1 to start")
    assert hb.run("qdel", task_id(array, 3)).returncode == 0
    (hb.workdir / "limited.go").touch()

    done = hb.wait_state(array, FINAL, timeout=45)
    assert sorted(ledger.ended()) == ["1", "2", "4", "5"]  # 3 never ran, and no run without an index
    assert ledger.most_at_once() == 1  # the %1 limit held throughout
    assert (done["state"], done["array"]["succeeded"], done["array"]["cancelled"]) == ("CANCELLED", 4, 1)
    child_job = hb.wait_state(child, FINAL)
    assert (child_job["state"], child_job["run_count"]) == ("CANCELLED", 0)  # never started on partial results


def test_qdel_of_a_running_job_that_ends_before_its_next_heartbeat_cancels_it(hb):
    """Defect 4, four times over: qdel exits 0, then the job ends before its worker hears of it."""
    for attempt in range(4):
        go = hb.workdir / f"ending-{attempt}.go"
        started = hb.workdir / f"ending-{attempt}.started"
        job_id = hb.submit("--", "bash", "-c", f"touch {started}; while [ ! -e {go} ]; do sleep 0.02; done")
        wait_for(started.exists, 20, what="the job to start")
        proc = hb.run("qdel", job_id, check=False)
        go.touch()
        job = hb.wait_state(job_id, FINAL)
        assert proc.returncode == 0, proc.stderr
        assert job["state"] == "CANCELLED", f"try {attempt + 1}: qdel exited 0 but the job ended {job['state']}"


def test_qdel_of_a_job_that_has_finished_says_so_in_pbs_words(hb):
    job_id = hb.submit("--", "true")
    assert hb.wait_state(job_id, FINAL)["state"] == "SUCCEEDED"
    proc = hb.run("qdel", job_id, check=False)
    assert (proc.returncode, proc.stdout) == (35, "")  # PBSE_HISTJOBID, as OpenPBS qdel exits
    assert one_line(proc.stderr) == f"qdel: Job has finished {job_id}"
    assert hb.job(job_id)["state"] == "SUCCEEDED"


def test_a_graceful_down_and_up_runs_no_finished_task_again(hb):
    """Defect 5: `hyper local down` mid-array, then `up`: every task ends exactly once, no attempt used up."""
    script, ledger = ledger_script(hb, "restart", nap=0.05)
    array = hb.submit("-J", "1-200", script)
    wait_for(lambda: len(ledger.ended()) >= 30, 40, what="some tasks to finish")
    hb.down()
    wait_for(lambda: not hb.leftovers(), 15, what="no daemon, worker or task left after down")
    assert len(ledger.ended()) < 200  # stopped mid-array
    hb.up()
    done = hb.wait_state(array, FINAL, timeout=60)
    ends = Counter(ledger.ended())
    assert not {i: n for i, n in ends.items() if n > 1}, "finished tasks ran again after a graceful stop"
    assert sorted(int(i) for i in ends) == list(range(1, 201))
    assert (done["state"], done["array"]["succeeded"], done["run_count"]) == ("SUCCEEDED", 200, 1)

"""Holding, releasing and cancelling jobs: qsub -h, qhold, qrls, qdel."""

from __future__ import annotations

import getpass
import re
import time

import pytest

from tests.e2e.conftest import one_line, pid_alive, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_control")]


def e2e_configure(config: dict) -> None:
    """Add a queue `parked` whose only region may run no workers: its jobs stay QUEUED for sure."""
    for region in config["regions"]:
        if region["name"] == "eu-west-1":
            region["local_max_workers"] = 0
    config["queues"].append(
        {"name": "parked", "cluster": "default", "definition": "standard", "region_weights": {"eu-west-1": 1}}
    )


def _letter(hb, job_id: str) -> str:
    """The S column of `qstat ID`."""
    out = hb.run("qstat", job_id).stdout
    row = next(line for line in out.splitlines() if line.startswith(job_id))
    return row.split()[-2]


def test_submitted_held_stays_held_until_released(hb):
    job_id = hb.submit("-h", "--", "echo", "released")
    assert hb.job(job_id)["state"] == "HELD"
    assert _letter(hb, job_id) == "H"
    time.sleep(1.5)  # workers are idle and would have run it by now were it not held
    job = hb.job(job_id)
    assert job["state"] == "HELD" and job["run_count"] == 0
    assert hb.full(job_id)["comment"] == "held at submission"

    proc = hb.run("qrls", job_id)
    assert proc.stdout == "" and proc.stderr == ""
    assert hb.wait_state(job_id, ("SUCCEEDED", "FAILED", "CANCELLED"))["state"] == "SUCCEEDED"
    assert hb.run("qlog", job_id).stdout == "released\n"


def test_hold_and_release_a_queued_job(hb):
    job_id = hb.submit("-q", "parked", "--", "echo", "parked")
    assert hb.job(job_id)["state"] == "QUEUED"
    assert _letter(hb, job_id) == "Q"

    proc = hb.run("qhold", job_id)
    assert proc.stdout == "" and proc.stderr == ""
    job = hb.job(job_id)
    assert job["state"] == "HELD"
    assert job["reason"] == f"held by {getpass.getuser()}"
    assert _letter(hb, job_id) == "H"

    # Holding twice changes nothing, and succeeds as in PBS.
    again = hb.run("qhold", job_id, check=False)
    assert (again.returncode, again.stderr) == (0, "")
    assert hb.job(job_id)["state"] == "HELD"

    hb.run("qrls", job_id)
    assert hb.job(job_id)["state"] == "QUEUED"

    hb.run("qdel", job_id)
    job = hb.job(job_id)
    assert job["state"] == "CANCELLED"
    assert job["run_count"] == 0
    assert f"cancelled by {getpass.getuser()}" in hb.full(job_id)["comment"]


def test_hold_a_waiting_job_then_release_it_after_its_parent(hb):
    parent = hb.submit("-h", "--", "echo", "parent")
    child = hb.submit("-W", f"depend=afterok:{parent}", "--", "echo", "child")
    assert hb.job(child)["state"] == "WAITING"
    assert _letter(hb, child) == "H"  # PBS shows a dependency wait as a hold (substate 22)

    hb.run("qhold", child)
    assert hb.job(child)["state"] == "HELD"

    hb.run("qrls", parent)
    assert hb.wait_state(parent, ("SUCCEEDED", "FAILED", "CANCELLED"))["state"] == "SUCCEEDED"
    time.sleep(1.0)  # the parent's release event has been handled: the held child must not have run
    assert hb.job(child)["state"] == "HELD"

    hb.run("qrls", child)
    assert hb.wait_state(child, ("SUCCEEDED", "FAILED", "CANCELLED"))["state"] == "SUCCEEDED"
    assert hb.run("qlog", child).stdout == "child\n"


def test_qdel_of_a_running_job_kills_it(hb):
    pidfile = hb.workdir / "sleeper.pid"
    script = hb.script(f'#!/bin/bash\necho $$ > "{pidfile}"\nexec sleep 30\n', "sleeper.sh")
    job_id = hb.submit("--retries", "2", script)
    hb.wait_state(job_id, "RUNNING")
    pid = wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, what="the job's pid file")
    pid = int(pid)
    assert pid_alive(pid)

    # A running job cannot be held.
    held = hb.run("qhold", job_id, check=False)
    assert held.returncode == 168  # PBSE_BADSTATE
    assert one_line(held.stderr) == f"qhold: Request invalid for state of job {job_id}"

    proc = hb.run("qdel", job_id)
    assert proc.stdout == "" and proc.stderr == ""
    job = hb.wait_state(job_id, ("CANCELLED", "SUCCEEDED", "FAILED"), timeout=10)
    assert job["state"] == "CANCELLED"
    assert job["attempt"] == 1  # cancelled, not retried
    wait_for(lambda: not pid_alive(pid), 5, what=f"the job's sleep (pid {pid}) to be gone")

    attrs = hb.full(job_id)
    assert attrs["hyper_state"] == "CANCELLED"
    assert re.search(rf"\bcancelled by {re.escape(getpass.getuser())}\b", attrs["comment"]), attrs["comment"]

    # Once finished, qdel says so as PBS does (PBSE_HISTJOBID).
    late = hb.run("qdel", job_id, check=False)
    assert late.returncode == 35
    assert one_line(late.stderr) == f"qdel: Job has finished {job_id}"

"""Workers lost mid-job: killed (SIGKILL), or stopped (SIGSTOP) for longer than their lease and then let go on.

A lost run is taken back after its lease and runs again elsewhere, and never beside the run it replaces:
a killed worker's job is killed with it (by start.sh's next agent, or by the daemon), and a stopped
worker's job is killed by the daemon before the run is taken back (fencing). A stopped worker that comes
back records nothing for the run it lost.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.e2e.conftest import FINAL, pid_alive, wait_for

IDLE_SECONDS = 30  # workers wait for work this long, so that one is there to take a run back at once


def faults_configure(config: dict) -> None:
    for definition in config["definitions"]:
        definition["jobs_to_workers_ratio"] = 1  # a worker per job: bystanders leave idle workers behind
        definition["idle_timeout_seconds"] = IDLE_SECONDS


def parent(pid: int) -> int:
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])


def agent_of(hb, run) -> tuple[int, int]:
    """(the agent running a ledger run, its worker's start.sh), checked against the daemon's workers table,
    so that nothing but this daemon's worker is ever signalled."""
    agent = parent(run.pid)
    start_sh = parent(agent)
    assert start_sh in {w["pid"] for w in hb.workers()}, f"run {run} is not a job of one of this daemon's workers"
    return agent, start_sh


def first_run(ledger, job_id, index=None):
    """The ledger's first run of a task, once it has started."""
    def started():
        return next((r for r in ledger.runs() if (r.job, r.index) == (job_id, index)), None)
    return wait_for(started, 30, interval=0.05, what=f"{job_id} to start")


def bystanders(hb, ledger, n=2):
    """Quick jobs that bring up workers which then wait, idle, for more work."""
    return [hb.submit("-N", f"bystander{i}", *ledger.env(TICKS=1), ledger.script) for i in range(n)]


@pytest.mark.parametrize("victim", ["agent", "worker"])
def test_a_worker_killed_mid_job_has_its_job_killed_and_run_again_once(hb, ledger, victim):
    job_id = hb.submit("--retries", "2", "-N", "victim", *ledger.env(TICKS=200, RETRY_TICKS=5), ledger.script)
    others = bystanders(hb, ledger, 3)
    run = first_run(ledger, job_id)
    agent, start_sh = agent_of(hb, run)
    if victim == "agent":
        os.kill(agent, signal.SIGKILL)  # start.sh starts another agent, which kills the orphan job
    else:
        os.killpg(start_sh, signal.SIGKILL)  # start.sh leads its group: the whole worker dies

    wait_for(lambda: not pid_alive(run.pid), 10, what=f"the lost run's job (pid {run.pid}) to be killed")
    done = hb.wait_state(job_id, FINAL, timeout=45)
    assert (done["state"], done["exit_status"], done["attempt"], done["run_count"]) == ("SUCCEEDED", 0, 2, 2)
    assert all(j["state"] == "SUCCEEDED" for j in hb.wait_all_final(others))
    runs = ledger.check({job_id: None, **dict.fromkeys(others)})
    assert [(r.attempt, r.done) for r in runs if r.job == job_id] == [(1, False), (2, True)]


@pytest.mark.parametrize("kind", ["job", "array task"])
def test_a_worker_stopped_longer_than_its_lease_is_fenced_and_records_nothing_when_it_comes_back(
        hb, ledger, kind):
    array = ["-J", "1-2"] if kind == "array task" else []
    index = 1 if array else None
    job_id = hb.submit("--retries", "2", "-N", "frozen", *array, *ledger.env(TICKS=80, RETRY_TICKS=30),
                       ledger.script)
    others = bystanders(hb, ledger)
    first = first_run(ledger, job_id, index)
    agent, _ = agent_of(hb, first)
    os.kill(agent, signal.SIGSTOP)  # its agent can do nothing now; the job would run on
    try:
        # After a lease of silence the daemon kills the job, then takes the run back; an idle worker runs it.
        # A job runs again as attempt 2; an array task as it was (attempt 1: a lost worker uses up no retry).
        again = 1 if array else 2
        second = wait_for(lambda: next((r for r in ledger.runs() if (r.job, r.index, r.attempt) == (job_id, index, again)
                                        and r.pid != first.pid), None), 30, interval=0.05, what="the second run")
        assert not pid_alive(first.pid), "the stopped worker's job runs beside the second run"
    finally:
        os.kill(agent, signal.SIGCONT)  # back while the second run runs: what it tries to record is refused
    done = hb.wait_state(job_id, FINAL, timeout=45)
    assert pid_alive(second.pid) is False and pid_alive(agent)  # the stopped worker lives on
    assert (done["state"], done["exit_status"]) == ("SUCCEEDED", 0)
    if array:
        assert (done["array"]["succeeded"], done["array"]["failed_tasks"]) == (2, {})
    else:
        assert (done["attempt"], done["run_count"]) == (2, 2)
    assert all(j["state"] == "SUCCEEDED" for j in hb.wait_all_final(others))
    runs = ledger.check({job_id: [1, 2] if array else None, **dict.fromkeys(others)})
    assert [(r.attempt, r.done) for r in runs if (r.job, r.index) == (job_id, index)] == [(1, False), (again, True)]

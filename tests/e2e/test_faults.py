"""Faults: a worker killed mid-job, and the daemon stopped and started again with work queued.

Each test ends by checking that no job was lost: every job this module submitted is listed by
`qstat -x --json`, each in a final state.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.e2e.conftest import FINAL, children, pid_alive, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_faults")]

RETRIED = """\
#!/bin/bash
echo $$ > "$PBS_O_WORKDIR/{tag}-attempt-$HYPER_ATTEMPT.pid"
echo "attempt $HYPER_ATTEMPT on $HYPER_REGION"
if [ "$HYPER_ATTEMPT" = 1 ]; then
    sleep 20
fi
echo "finished attempt $HYPER_ATTEMPT"
"""


def _assert_no_job_lost(hb) -> None:
    jobs = hb.wait_all_final(hb.submitted, timeout=45)
    listed = {j["id"]: j for j in hb.jobs()}
    assert set(hb.submitted) <= set(listed), f"jobs missing from qstat -x: {set(hb.submitted) - set(listed)}"
    assert len(listed) == len(set(hb.submitted)), "qstat -x lists jobs nobody submitted"
    assert all(j["state"] in FINAL for j in listed.values())
    assert len(jobs) == len(set(hb.submitted))


def _running_worker(hb, job_id: str) -> tuple[dict, dict]:
    """(the job, its worker's row in the workers table) once the job runs attempt 1."""
    job = hb.wait_state(job_id, "RUNNING")
    assert job["attempt"] == 1
    region, _, worker_id = job["exec_host"].partition("/")
    rows = [w for w in hb.workers() if w["id"] == worker_id]
    assert rows, f"worker {worker_id} (exec_host {job['exec_host']}) is not in the workers table"
    assert rows[0]["region"] == region
    return job, rows[0]


@pytest.mark.parametrize("victim", ["agent", "worker-group"])
def test_worker_killed_mid_job_reruns_the_job(hb, victim):
    tag = f"killed-{victim}"
    script = hb.script(RETRIED.format(tag=tag), f"{tag}.sh")
    job_id = hb.submit("--retries", "2", "-N", tag, script)
    others = [hb.submit("--", "echo", f"bystander {n}") for n in range(5)]

    job, worker = _running_worker(hb, job_id)
    first = hb.workdir / f"{tag}-attempt-1.pid"
    job_pid = int(wait_for(lambda: first.exists() and first.read_text().strip(), 10, what="attempt 1's pid file"))
    start_sh = worker["pid"]
    assert pid_alive(start_sh)
    if victim == "agent":
        agents = children(start_sh)
        assert len(agents) == 1, f"start.sh {start_sh} has children {agents}"
        os.kill(agents[0], signal.SIGKILL)
    else:
        os.killpg(start_sh, signal.SIGKILL)  # start.sh leads its own session: the whole worker dies

    done = hb.wait_state(job_id, ("SUCCEEDED", "FAILED", "CANCELLED"), timeout=45)
    assert done["state"] == "SUCCEEDED", done
    assert done["attempt"] == 2
    attrs = hb.full(job_id)
    assert attrs["run_count"] == "2"
    assert attrs["Exit_status"] == "0"
    assert hb.run("qlog", job_id).stdout.endswith("finished attempt 2\n")

    # Attempt 1's script does not live on as an orphan once its worker is gone.
    wait_for(lambda: not pid_alive(job_pid), 10, what=f"attempt 1's script (pid {job_pid}) to be killed")

    for other in others:
        assert hb.wait_state(other, ("SUCCEEDED", "FAILED", "CANCELLED"))["state"] == "SUCCEEDED"
    _assert_no_job_lost(hb)


def test_daemon_restart_keeps_and_finishes_queued_jobs(hb):
    before = hb.submit("--", "echo", "before the restart")
    assert hb.wait_state(before, ("SUCCEEDED", "FAILED", "CANCELLED"))["state"] == "SUCCEEDED"

    script = hb.script('#!/bin/bash\nsleep 0.5\necho "ran $PBS_JOBID"\n', "quick.sh")
    batch = [hb.submit("-N", f"quick{n}", script) for n in range(20)]
    down = hb.down()
    assert "stopped" in down.stdout, down.stdout
    assert hb.state is None  # daemon.json removed

    # Down stops the daemon and every worker it started, and their jobs.
    wait_for(lambda: not hb.leftovers(), 15, what="no daemon, worker or job process left after down")
    status = hb.run("hyper", "local", "status", check=False)
    assert status.returncode == 1 and "not running" in status.stderr

    # The jobs are still in the store, none of them final-failed by the stop.
    hb.up()
    listed = {j["id"]: j for j in hb.jobs()}
    assert set(batch) | {before} <= set(listed)
    assert listed[before]["state"] == "SUCCEEDED"
    assert not [j for j in batch if listed[j]["state"] in ("FAILED", "CANCELLED")]

    jobs = {j["id"]: j for j in hb.wait_all_final(batch, timeout=50)}
    assert {j["state"] for j in jobs.values()} == {"SUCCEEDED"}, {i: j["state"] for i, j in jobs.items()}
    # Work handed back by stopping workers used up no attempt: `down` hands running jobs back,
    # it does not leave them to a lost-worker retry.
    retried = {i: (j["attempt"], j["run_count"], j["exec_host"]) for i, j in jobs.items() if j["attempt"] != 1}
    assert not retried, f"jobs retried across the restart (attempt, run_count, exec_host): {retried}"
    for job_id in (batch[0], batch[-1]):
        assert hb.run("qlog", job_id).stdout == f"ran {job_id}\n"
    assert hb.run("qlog", before).stdout == "before the restart\n"
    _assert_no_job_lost(hb)


def test_back_to_back_short_jobs_are_never_taken_for_lost(hb):
    """Jobs about one heartbeat long, run back to back by the same workers, with no retries:
    each must run once and succeed (a worker that is alive is never taken for lost)."""
    # Around the heartbeat period (0.5 s here): a job tends to end while a heartbeat is under way.
    script = hb.script("#!/bin/bash\nsleep \"$NAP\"\necho \"ok $PBS_JOBID\"\n", "beat.sh")
    ids = [hb.submit("--retries", "0", "-N", f"beat{n}", "-v", f"NAP=0.{44 + n % 8}", script) for n in range(48)]
    jobs = {j["id"]: j for j in hb.wait_all_final(ids, timeout=60)}
    bad = {i: (j["state"], j["attempt"], j["run_count"], j["reason"]) for i, j in jobs.items()
           if j["state"] != "SUCCEEDED" or j["run_count"] != 1}
    assert not bad, f"{len(bad)} of {len(ids)} jobs did not simply run once and succeed: {bad}"
    _assert_no_job_lost(hb)

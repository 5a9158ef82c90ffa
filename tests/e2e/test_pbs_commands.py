"""The PBS commands a client library or a user drives, installed, against a real daemon and its workers:
qsub's ids, qstat -f -F json -x, qselect, qalter, qrerun, qsig, qmove, tracejob and pbsnodes."""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.conftest import FINAL, one_line, task_id, wait_for
from tests.faults import ledger as ledgers

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_pbs_commands")]


def e2e_configure(config: dict) -> None:
    """A queue `parked` whose only region runs no workers: its jobs stay queued for sure."""
    for region in config["regions"]:
        if region["name"] == "eu-west-1":
            region["local_max_workers"] = 0
    config["queues"].append(
        {"name": "parked", "cluster": "default", "definition": "standard", "region_weights": {"eu-west-1": 1}}
    )


def test_qsub_prints_pbs_ids_that_increase(hb):
    first = hb.submit("--", "true")
    array = hb.submit("-J", "1-3", "--", "true")
    later = hb.submit("--", "true")
    assert first == f"{first.split('.')[0]}.{hb.server}"
    assert re.fullmatch(rf"(\d+)\[\]\.{re.escape(hb.server)}", array)
    numbers = [int(re.match(r"\d+", i).group()) for i in (first, array, later)]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3
    # dask-jobqueue takes the first run of digits and calls qdel with it alone
    done = hb.wait_all_final([first, array, later], timeout=45)
    assert all(j["state"] == "SUCCEEDED" for j in done)
    assert hb.run("qdel", str(numbers[0]), check=False).returncode == 35  # finished: PBS's "Job has finished"


def test_pbs_jobid_is_what_qsub_printed(hb):
    script = hb.script('#!/bin/bash\necho "$PBS_JOBID"\n', "jobid.sh")
    job_id = hb.submit(script)
    array = hb.submit("-J", "2-3", script)
    hb.wait_all_final([job_id, array], timeout=45)
    assert hb.run("qlog", job_id).stdout == f"{job_id}\n"
    assert hb.run("qlog", task_id(array, 3)).stdout == f"{task_id(array, 3)}\n"


def test_qstat_full_json_with_history_parses_into_pbs_structure(hb):
    ok = hb.submit("-N", "ok", "--", "true")
    bad = hb.submit("-N", "bad", "--retries", "0", "--", "bash", "-c", "exit 3")
    parked = hb.submit("-q", "parked", "--", "true")
    hb.wait_all_final([ok, bad], timeout=45)
    proc = hb.run("qstat", "-f", "-F", "json", "-x", ok, bad, parked)
    doc = json.loads(proc.stdout)
    assert {"timestamp", "pbs_version", "pbs_server", "Jobs"} <= set(doc) and doc["pbs_server"] == hb.server
    jobs = doc["Jobs"]
    assert set(jobs) == {ok, bad, parked}  # keyed exactly as qsub printed the ids
    assert (jobs[ok]["job_state"], jobs[ok]["Exit_status"], jobs[ok]["Job_Name"]) == ("F", 0, "ok")
    assert (jobs[bad]["job_state"], jobs[bad]["Exit_status"]) == ("F", 3)
    assert jobs[parked]["job_state"] == "Q" and "Exit_status" not in jobs[parked]
    assert jobs[ok]["Job_Owner"].endswith(f"@{hb.server}") and jobs[ok]["run_count"] == 1
    assert isinstance(jobs[ok]["resources_used"], dict) and isinstance(jobs[ok]["Resource_List"], dict)
    assert isinstance(jobs[ok]["Variable_List"], dict) and jobs[ok]["queue"] == "batch"
    # without -x a finished job answers as PBS's qstat does
    proc = hb.run("qstat", "-f", "-F", "json", ok, check=False)
    assert proc.returncode == 35
    assert proc.stderr == f"qstat: {ok} Job has finished, use -x or -H to obtain historical job information\n"
    assert "Jobs" not in json.loads(proc.stdout)
    hb.run("qdel", parked)


def test_qselect_qalter_and_qmove_on_queued_jobs(hb):
    a = hb.submit("-q", "parked", "-N", "first", "--", "echo", "moved")
    b = hb.submit("-q", "parked", "-N", "second", "-p", "3", "--", "true")
    selected = hb.run("qselect", "-q", "parked").stdout.split()
    assert selected[-2:] == [a, b]
    assert hb.run("qselect", "-q", "parked", "-p", ".gt.2").stdout.split() == [b]
    assert hb.run("qselect", "-q", "parked", "-N", "first", "-s", "Q").stdout == f"{a}\n"

    assert hb.run("qalter", "-N", "renamed", "-l", "walltime=00:02:00", a).returncode == 0
    attrs = hb.full(a)
    assert (attrs["Job_Name"], attrs["Resource_List.walltime"]) == ("renamed", "00:02:00")
    assert hb.run("qalter", "-h", "u", b).returncode == 0
    assert hb.run("qselect", "-s", "H", "-q", "parked").stdout.split() == [b]

    assert hb.run("qmove", "batch", a).returncode == 0  # a queue with workers: it runs now
    done = hb.wait_state(a, FINAL, timeout=45)
    assert (done["state"], done["queue"]) == ("SUCCEEDED", "batch")
    assert hb.run("qlog", a).stdout == "moved\n"
    proc = hb.run("qalter", "-N", "late", a, check=False)
    assert (proc.returncode, proc.stderr) == (35, "qalter: Job has finished\n")
    hb.run("qdel", b)

    history = hb.run("tracejob", a).stdout
    assert history.startswith(f"\nJob: {a}\n\n")
    for needle in ("S    Job Queued at request of", "S    Job attributes altered at request of",
                   "S    Job moved to batch at request of", "M    Job run on ", "M    Exit_status=0"):
        assert needle in history, history


def test_qsig_reaches_the_running_job_and_qrerun_runs_it_again(hb):
    marker = hb.workdir / "got-usr1"
    script = hb.script(
        "#!/bin/bash\n"
        f'trap \'echo "usr1 in $PBS_JOBID" >> "{marker}"; exit 0\' USR1\n'
        'echo "attempt started"\n'
        "sleep 30 & wait\n", "trap.sh")
    job_id = hb.submit("--retries", "0", script)
    hb.wait_state(job_id, "RUNNING", timeout=30)
    wait_for(lambda: "attempt started" in hb.run("qlog", job_id).stdout, 20, what="the job's trap to be set")

    assert hb.run("qrerun", job_id).returncode == 0  # back to the queue at a new attempt, then run again
    wait_for(lambda: (j := hb.job(job_id))["attempt"] == 2 and j["state"] == "RUNNING", 30,
             what="attempt 2 to run")
    wait_for(lambda: "attempt started" in hb.run("qlog", job_id).stdout, 20, what="attempt 2's trap")

    proc = hb.run("qsig", "-s", "USR1", job_id)
    assert (proc.returncode, proc.stderr) == (0, "")
    done = hb.wait_state(job_id, FINAL, timeout=30)
    assert (done["state"], done["exit_status"], done["run_count"]) == ("SUCCEEDED", 0, 2)
    assert marker.read_text() == f"usr1 in {job_id}\n"
    proc = hb.run("qsig", job_id, check=False)
    assert (proc.returncode, proc.stderr) == (35, "qsig: Job has finished\n")
    history = hb.run("tracejob", job_id).stdout
    assert "Job Rerun at request of" in history and "Signal SIGUSR1 sent to" in history


def test_qrerun_of_a_running_job_never_runs_it_twice_at_once_and_it_finishes_once_more(hb, tmp_path):
    """The job's old run is killed by its worker before the new attempt can start anywhere: the
    ledger (tests/faults/ledger.py: the run's PBS_JOBID, attempt and pid, start to last line) shows
    attempt 1 cut short, then attempt 2 run to its end, and no overlap."""
    ledger = tmp_path / "ledger.csv"
    task = hb.script(ledgers.TASK, "ledger-task.sh")
    job_id = hb.submit("-v", f"LEDGER={ledger},TICK=0.1,TICKS=600,RETRY_TICKS=5", task)
    wait_for(lambda: ledgers.runs(ledger), 30, what="the job to start")
    # Quick jobs enough for a second worker, left idle once they are done: it would claim the new
    # attempt within milliseconds, were it queued before the old run was killed.
    hb.wait_all_final([hb.submit("--", "true") for _ in range(4)])
    assert hb.run("qrerun", job_id).returncode == 0
    done = hb.wait_state(job_id, FINAL, timeout=60)
    assert (done["state"], done["attempt"], done["run_count"], done["exit_status"]) == ("SUCCEEDED", 2, 2, 0)
    runs = ledgers.check(ledger, {job_id: None})
    assert [(r.attempt, r.done) for r in runs] == [(1, False), (2, True)]
    assert "Exit_status=-11" in hb.run("tracejob", job_id).stdout


def test_qrerun_of_an_array_reruns_its_failed_tasks_until_it_has_finished(hb):
    """Task 2 fails while task 3 still runs: qrerun puts task 2 back and the array succeeds. Once the
    array has finished, it stays finished: qrerun answers as PBS does (Job has finished, 35)."""
    flag, gate = hb.workdir / "second-time", hb.workdir / "gate"
    script = hb.script(
        f'#!/bin/bash\nif [ "$PBS_ARRAY_INDEX" = 2 ] && [ ! -e "{flag}" ]; then exit 5; fi\n'
        f'if [ "$PBS_ARRAY_INDEX" = 3 ]; then for i in $(seq 300); do [ -e "{gate}" ] && break; sleep 0.1; done; fi\n'
        f'echo "ok $PBS_ARRAY_INDEX"\n',
        "flaky.sh")
    array = hb.submit("-J", "1-3", "--retries", "0", script)
    wait_for(lambda: hb.job(array)["array"]["failed_tasks"] == {"2": 5}, 30, what="task 2 to fail")
    assert hb.job(array)["state"] not in FINAL  # task 3 waits at its gate
    flag.write_text("")
    assert hb.run("qrerun", array).returncode == 0
    gate.write_text("")
    job = hb.wait_state(array, FINAL, timeout=45)
    assert job["state"] == "SUCCEEDED" and job["array"]["succeeded"] == 3
    assert hb.run("qlog", task_id(array, 2)).stdout == "ok 2\n"
    late = hb.run("qrerun", array, check=False)
    assert (late.returncode, one_line(late.stderr)) == (35, "qrerun: Job has finished")
    assert hb.job(array)["state"] == "SUCCEEDED"


def test_pbsnodes_lists_the_workers(hb):
    job_id = hb.submit("--", "sleep", "5")
    hb.wait_state(job_id, "RUNNING", timeout=30)
    doc = json.loads(hb.run("pbsnodes", "-a", "-F", "json").stdout)
    busy = [n for n in doc["nodes"].values() if job_id in n.get("jobs", [])]
    assert len(busy) == 1 and busy[0]["state"] == "job-busy" and busy[0]["pcpus"] >= 1
    text = hb.run("pbsnodes", "-a").stdout
    assert re.search(r"^     pcpus = \d+$", text, re.M)  # what radical.saga reads
    assert f"     jobs = {job_id}/0" in text
    assert hb.run("pbsnodes", "-l").stdout == ""
    hb.run("qdel", job_id)

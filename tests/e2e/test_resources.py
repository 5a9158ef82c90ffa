"""Jobs get the CPUs, memory and GPUs they ask for on one machine: placed while they fit, never
overcommitted, refused at submit when they never could fit, told what they got (NCPUS,
CUDA_VISIBLE_DEVICES), and killed with PBS's -27 when they use more memory than they asked for.

The daemon is told the machine has 2 CPUs and two GPUs named 0 and 1 (settings.local), so the
test means the same on any host; a second queue has defaults and limits of its own.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import one_line

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_resources")]


def e2e_configure(config: dict) -> None:
    config["settings"]["local"].update(cpus=2, gpus=["0", "1"])
    batch = dict(config["queues"][0])
    config["queues"].append({**batch, "name": "small", "default_resources": {"mem": "100mb"},
                             "max_resources": {"ncpus": 1}})


def _timed(hb, out, *args: str) -> str:
    """A job that notes when it started and ended (its own clock) and what NCPUS it was given."""
    return hb.submit(*args, "--", "sh", "-c",
                     f'd={out}/$PBS_JOBID; date +%s.%N > $d.start; echo $NCPUS > $d.ncpus; sleep 1.5; '
                     f'date +%s.%N > $d.end')


def _most_at_once(out, ids) -> int:
    """The most of the jobs `ids` that ran at the same moment, from the times they noted."""
    moments = []
    for job_id in ids:
        moments += [(float((out / f"{job_id}.start").read_text()), 1), (float((out / f"{job_id}.end").read_text()), -1)]
    running = most = 0
    for _, step in sorted(moments, key=lambda m: (m[0], m[1])):  # an end before a start at the same instant
        running += step
        most = max(most, running)
    return most


def test_one_cpu_jobs_run_two_at_a_time_on_two_cpus(hb, tmp_path):
    ids = [_timed(hb, tmp_path, "-l", "ncpus=1") for _ in range(4)]
    jobs = hb.wait_all_final(ids, timeout=40)
    assert {j["state"] for j in jobs} == {"SUCCEEDED"}
    assert _most_at_once(tmp_path, ids) == 2  # both cores busy, and never a third job on them
    assert {(tmp_path / f"{i}.ncpus").read_text() for i in ids} == {"1\n"}


def test_two_cpu_jobs_run_alone_with_ncpus_2(hb, tmp_path):
    ids = [_timed(hb, tmp_path, "-l", "select=1:ncpus=2") for _ in range(3)]
    jobs = hb.wait_all_final(ids, timeout=40)
    assert {j["state"] for j in jobs} == {"SUCCEEDED"}
    assert _most_at_once(tmp_path, ids) == 1
    assert {(tmp_path / f"{i}.ncpus").read_text() for i in ids} == {"2\n"}
    assert hb.full(ids[0])["Resource_List.ncpus"] == "2"


def test_a_request_no_worker_can_satisfy_is_refused_at_submit(hb):
    before = len(hb.jobs())
    proc = hb.run("qsub", "-l", "ncpus=64", "--", "true", check=False)
    assert proc.returncode != 0 and proc.stdout == ""
    assert one_line(proc.stderr).startswith(
        "qsub: Job exceeds queue resource limits: ncpus=64 asked, and queue batch runs jobs of at most ncpus=2,mem=")
    assert one_line(proc.stderr).endswith(",ngpus=2")
    proc = hb.run("qsub", "-l", "ngpus=3", "--", "true", check=False)
    assert proc.returncode != 0 and "ngpus=3 asked" in one_line(proc.stderr)
    # The queue's own limit: small runs 1-CPU jobs only.
    proc = hb.run("qsub", "-q", "small", "-l", "ncpus=2", "--", "true", check=False)
    assert "ncpus=2 asked, and queue small runs jobs of at most ncpus=1," in one_line(proc.stderr)
    assert len(hb.jobs()) == before  # nothing was stored


def test_a_queue_default_fills_what_the_job_did_not_ask(hb):
    job_id = hb.submit("-q", "small", "--", "true")
    hb.wait_state(job_id, "SUCCEEDED")
    attrs = hb.full(job_id)
    assert attrs["Resource_List.mem"] == "100mb"
    assert attrs["Resource_List.ncpus"] == "1"
    asked = hb.submit("-q", "small", "-l", "mem=200mb", "--", "true")
    assert hb.full(asked)["Resource_List.mem"] == "200mb"


def test_gpu_jobs_get_exactly_the_gpus_they_were_given(hb, tmp_path):
    gpu = [hb.submit("-l", "ngpus=1", "--", "sh", "-c", f"echo \"$CUDA_VISIBLE_DEVICES\" > {tmp_path}/$PBS_JOBID; sleep 1.5")
           for _ in range(2)]
    both = hb.submit("-l", "select=1:ngpus=2", "--", "sh", "-c", f"echo \"$CUDA_VISIBLE_DEVICES\" > {tmp_path}/$PBS_JOBID")
    none = hb.submit("--", "sh", "-c", f"echo \"[$CUDA_VISIBLE_DEVICES]\" > {tmp_path}/$PBS_JOBID")
    hb.wait_all_final([*gpu, both, none], timeout=40)
    given = sorted((tmp_path / i).read_text() for i in gpu)
    assert given == ["0\n", "1\n"] or len(set(given)) == 1 and given[0] in ("0\n", "1\n")
    assert (tmp_path / both).read_text() == "0,1\n"
    assert (tmp_path / none).read_text() == "[]\n"  # a job that asked for no GPU sees none


def test_a_job_over_its_memory_is_killed_with_pbs_exit_status_minus_27(hb):
    hog = "import time; b = bytearray(300 << 20); time.sleep(30)"
    job_id = hb.submit("-l", "mem=64mb", "--", "python3", "-c", hog)
    job = hb.wait_state(job_id, ("FAILED", "SUCCEEDED"), timeout=30)
    assert job["state"] == "FAILED" and job["exit_status"] == -27  # PBS's JOB_EXEC_KILL_MEM
    attrs = hb.full(job_id)
    assert re.fullmatch(r"job killed: mem \d+kb exceeded limit 65536kb", attrs["comment"]), attrs["comment"]
    stderr = hb.run("qlog", "-e", job_id).stdout
    assert re.fullmatch(r"=>> PBS: job killed: mem \d+kb exceeded limit 65536kb\n", stderr), stderr
    # A burst that ends before a look still counts; a job within its memory succeeds.
    burst = hb.submit("-l", "mem=64mb", "--", "python3", "-c", "b = bytearray(300 << 20)")
    within = hb.submit("-l", "mem=200mb", "--", "python3", "-c", "b = bytearray(20 << 20)")
    assert hb.wait_state(burst, ("FAILED", "SUCCEEDED"))["exit_status"] == -27
    assert hb.wait_state(within, ("FAILED", "SUCCEEDED"))["state"] == "SUCCEEDED"


def test_qalter_cannot_raise_a_request_past_what_the_queue_runs(hb):
    job_id = hb.submit("-h", "-l", "ncpus=1", "--", "true")
    proc = hb.run("qalter", "-l", "ncpus=64", job_id, check=False)
    assert proc.returncode != 0
    assert one_line(proc.stderr) == f"qalter: Job exceeds queue resource limits {job_id}"
    assert hb.full(job_id)["Resource_List.ncpus"] == "1"
    hb.run("qalter", "-l", "ncpus=2", job_id)
    assert hb.full(job_id)["Resource_List.ncpus"] == "2"
    hb.run("qdel", job_id)

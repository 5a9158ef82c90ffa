"""A worker on your own machine joins the AWS-in-a-box deployment: `hyper worker start` as a process of its
own, reaching the box's AWS through moto's server, runs jobs submitted through the API function."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from hyperbatch import config as config_models
from tests.aws_box.harness import Box, moto_server

BIN = Path(sys.executable).parent
HYPER = str(BIN / "hyper") if (BIN / "hyper").exists() else str(Path(__file__).resolve().parents[2] / ".venv/bin/hyper")


@pytest.fixture
def onprem_box():
    """Jobs of queue `batch` go to on-premises workers first, then us-east-1; one worker per job. Leases
    are the box's times ten: a lease that lapses on a loaded machine would show the scaler a job twice."""
    with Box(queues={"region_weights": {"onprem": 1, "us-east-1": 1}},
             definitions={"idle_timeout_seconds": 2, "jobs_to_workers_ratio": 1},
             settings={"lease_seconds": 30, "heartbeat_seconds": 10, "heartbeat_max_seconds": 20,
                       "run_lease_seconds": 60}) as box:
        box.start_stream()
        yield box


@pytest.fixture
def machine(onprem_box, tmp_path):
    """The other machine's environment: its AWS is the box (moto's server), its state and configuration
    its own, and the deployment imported as a host from the control stack's outputs."""
    box = onprem_box
    with moto_server() as url:
        outputs = {"ApiUrl": "https://box.execute-api.us-east-1.amazonaws.com/", "Region": box.region,
                   "StackName": box.config.settings.stack_name, "TableName": box.plane.table,
                   "QueueUrls": json.dumps(box.plane.queue_urls), "LogGroupPrefix": box.plane.log_group_prefix,
                   "FilesBucket": box.files_bucket}
        template = {"Resources": {"Handle": {"Type": "AWS::SQS::Queue"}},
                    "Outputs": {k: {"Value": v} for k, v in outputs.items()}}
        boto3.client("cloudformation", region_name=box.region).create_stack(
            StackName=f"{box.config.settings.stack_name}-Control", TemplateBody=json.dumps(template))
        configuration = tmp_path / "configurations"
        configuration.mkdir()
        for kind in config_models.FILES:
            config_models.dump(configuration, kind, getattr(box.config, kind))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HYPER"))}
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=box.region,
                   AWS_ENDPOINT_URL=url, AWS_EC2_METADATA_DISABLED="true", HYPERBATCH_HOME=str(tmp_path / "home"),
                   HYPERBATCH_CONFIG=str(configuration), HYPER_SETUP="/nonexistent")
        imported = subprocess.run([HYPER, "hosts", "import-deployment"], env=env, capture_output=True, text=True,
                                  timeout=60)
        assert imported.returncode == 0, imported.stderr
        yield env


def submit(box: Box, **request) -> dict:
    status, job = box.api("POST", "/jobs", body={"queue": "batch", **request})
    assert status == 201, job
    return job


def start_worker(env: dict, tmp_path: Path, *args: str, log: str = "worker.log") -> subprocess.Popen:
    with open(tmp_path / log, "wb") as out:  # a session of its own, so a test can kill it all, as a power cut would
        return subprocess.Popen([HYPER, "worker", "start", "--queue", "batch", *args], env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(30)


def node(box: Box, name: str) -> dict | None:
    status, body = box.api("GET", "/nodes")
    assert status == 200, body
    return next((n for n in body["nodes"] if n["name"] == name), None)


def test_an_onprem_worker_joins_runs_jobs_and_leaves(onprem_box, machine, tmp_path):
    box = onprem_box
    worker = start_worker(machine, tmp_path, "--name", "lab-1", "--cpus", "2", "--mem", "4gb")
    try:
        listed = box.wait_for("the worker to register", lambda: node(box, "onprem/lab-1"), timeout=60)
        assert (listed["state"], listed["region"], listed["ncpus"], listed["mem_mib"]) == ("free", "onprem", 2, 4096)
        twin = start_worker(machine, tmp_path, "--name", "lab-1", log="twin.log")  # a second machine, same name
        assert twin.wait(60) == 3  # misconfigured: start.sh does not try again
        assert "worker name 'lab-1' is in use by a live on-premises worker" in (tmp_path / "twin.log").read_text()
        ids = [submit(box, command=["sh", "-c", "echo ran $PBS_JOBID"])["id"] for _ in range(3)]
        for job_id in ids:
            done = box.wait_state(job_id, "SUCCEEDED", "FAILED", timeout=90)
            assert (done["state"], done["exec_host"], done["run_count"]) == ("SUCCEEDED", "onprem/lab-1", 1)
        status, log = box.api("GET", f"/jobs/{ids[0]}/log")
        assert status == 200 and base64.b64decode(log["data"]) == f"ran {ids[0]}\n".encode()
    finally:
        code = stop(worker)
    assert code == 0, (tmp_path / "worker.log").read_text()
    assert node(box, "onprem/lab-1") is None  # it said it was leaving
    assert box.submits() == []  # the scaler was never asked, and nothing started in the cloud


def test_the_scaler_starts_cloud_workers_only_for_what_onprem_does_not_absorb(onprem_box, machine, tmp_path):
    box = onprem_box
    worker = start_worker(machine, tmp_path, "--name", "lab-2")
    try:
        box.wait_for("the worker to register", lambda: node(box, "onprem/lab-2"), timeout=60)
        ids = [submit(box, command=["sleep", "60"])["id"] for _ in range(3)]
        box.wait_for("the on-premises worker to start one",
                     lambda: any(box.job(i)["state"] == "RUNNING" for i in ids), timeout=60)
        box.scale()
        submitted = [(region, (params.get("arrayProperties") or {}).get("size", 1))
                     for region, params, _ in box.submits()]
        assert {region for region, _ in submitted} == {"us-east-1"} and sum(n for _, n in submitted) == 2
        busy = node(box, "onprem/lab-2")
        assert busy is not None and busy["state"] == "job-busy" and len(busy["jobs"]) == 1
        for job_id in ids:
            box.api("DELETE", f"/jobs/{job_id}")
    finally:
        stop(worker)


def test_a_lost_onprem_worker_is_accounted_as_any_worker_and_its_job_runs_again_in_the_cloud(
        onprem_box, machine, tmp_path):
    box = onprem_box
    worker = start_worker(machine, tmp_path, "--name", "lab-3")
    marker = tmp_path / "first-run"
    job = submit(box, command=["sh", "-c", f"test -e {marker} && exit 0; touch {marker}; sleep 6"])["id"]
    try:
        running = box.wait_state(job, "RUNNING", timeout=60)
        assert running["exec_host"] == "onprem/lab-3"
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # the machine is gone, record and all (its job has its own group)
        worker.wait(30)
    # A cloud worker takes the work back after a lease of silence (SQS redelivers it), and runs it again.
    box.start_worker(env={"HYPER_IDLE_TIMEOUT": "30"})
    done = box.wait_state(job, "SUCCEEDED", "FAILED", timeout=60)
    assert (done["state"], done["run_count"], done["exec_host"]) == ("SUCCEEDED", 2, "us-east-1/box-1")
    assert ["L", "onprem/lab-3", 2] in [event[1:4] for event in done["history"]]  # tracejob: Worker onprem/lab-3 lost

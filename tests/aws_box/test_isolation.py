"""Jobs are walled off from the scheduler: no worker credentials, no scheduler settings, their own user."""

import base64
import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.aws_box.harness import Box, internal_id

CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
               "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
               "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN")


def run_job(box, request, **worker_env):
    status, job = box.api("POST", "/jobs", body=request)
    assert status == 201, job
    box.start_worker(env=worker_env)
    done = box.wait_state(job["id"], "SUCCEEDED", "FAILED", "CANCELLED")
    status, log = box.api("GET", f"/jobs/{job['id']}/log")
    assert status == 200
    return done, base64.b64decode(log["data"]).decode()


def test_a_job_finds_no_credentials_and_no_scheduler_settings_in_its_environment(box, monkeypatch):
    # What a Batch container adds to what the box's process already holds (keys, HYPER_CONFIG, HYPER_TABLE...).
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/worker-role")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/token")
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", "http://169.254.170.2/v4/abc")
    assert {"AWS_ACCESS_KEY_ID", "HYPER_CONFIG", "HYPER_TABLE", "HYPER_QUEUE_URLS"} <= set(os.environ)
    done, output = run_job(box, {"script": "#!/bin/sh\nenv\n", "env": {"MY_SETTING": "mine"}})
    assert done["state"] == "SUCCEEDED", done
    seen = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    assert [name for name in seen if name in CREDENTIALS or name.startswith(("AWS_", "ECS_"))
            and name not in ("AWS_REGION", "AWS_DEFAULT_REGION")] == []
    assert [name for name in seen if name.startswith(("HYPER_", "HYPERBATCH_"))
            and name not in ("HYPER_JOB_ID", "HYPER_JOB_NAME", "HYPER_ATTEMPT", "HYPER_QUEUE", "HYPER_OWNER",
                             "HYPER_REGION", "HYPER_EXAMPLE", "HYPER_DEFINITION", "HYPER_WORKER_ID")] == []
    # What the job is told still reaches it: its id and queue, the definition's variables, its own.
    assert seen["HYPER_JOB_ID"] == seen["PBS_JOBID"] == f"{done['id']}.HyperBatch"
    assert (internal_id(seen["HYPER_JOB_ID"]), seen["PBS_QUEUE"], seen["HYPER_EXAMPLE"], seen["MY_SETTING"]) == (
        done["id"], "batch", "1", "mine")
    assert seen["AWS_REGION"] == "us-east-1" and "PATH" in seen


@pytest.mark.skipif(os.geteuid() != 0, reason="starting a job as another user without sudo needs root")
def test_with_a_job_user_jobs_run_as_that_user_and_are_still_stopped(monkeypatch):
    """As root, the agent drops to HYPER_JOB_USER itself (the worker image goes through sudo instead,
    see tests/unit/test_processes.py); `nobody` stands in for the image's `hyperjob`."""
    user = pwd.getpwnam("nobody")
    root = Path(tempfile.mkdtemp(prefix="hb-job-user-"))
    root.chmod(0o755)  # work directories live under it; the job user must reach its own
    try:
        with Box(work_root=root) as box:
            box.start_stream()
            done, output = run_job(box, {"script": "#!/bin/sh\nid -u\ntouch made-here && echo wrote\n"},
                                   HYPER_JOB_USER="nobody")
            assert done["state"] == "SUCCEEDED", (done, output)
            assert output.split() == [str(user.pw_uid), "wrote"]
            status, job = box.api("POST", "/jobs", body={"command": ["sh", "-c", "sleep 60 & sleep 60; wait"]})
            box.start_worker(env={"HYPER_JOB_USER": "nobody"})
            box.wait_state(job["id"], "RUNNING")
            assert box.api("DELETE", f"/jobs/{job['id']}")[0] == 200
            done = box.wait_state(job["id"], "CANCELLED", timeout=20)
            assert done["finished_at"] - done["started_at"] < 15
    finally:
        shutil.rmtree(root, ignore_errors=True)

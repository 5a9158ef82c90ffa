"""A job the worker cannot run fails with the true reason; the worker lives on (issue 9, items 6 and 11).

Before, a NUL byte or an '=' in a name made Popen raise ValueError, a walltime of 10**400 overflowed
the deadline, and a full disk made the log or the script unwritable: each crashed the agent, which
start.sh restarted onto the same job until the job ended FAILED "worker lost", which was false.
The API now refuses such input (tests/api); these jobs are stored by hand, as a job stored before
that would be.
"""

from __future__ import annotations

import errno

import pytest

from hyperbatch.core import exits
from tests.handmade_ids import new_job_id
from hyperbatch.core.model import new_job
from hyperbatch.services.agent import Agent, Settings


def store_job(harness, **fields) -> str:
    """A job put straight into the store and queue, past every check."""
    fields.setdefault("command", ["true"])
    doc = new_job(id=new_job_id(), owner="alice", queue="batch", definition="standard", **fields)
    harness.backend.store.create([doc], [])
    harness.backend.queue.send("batch", doc["id"], 0, doc["total"], 1, 0)
    return doc["id"]


def run_next(harness, tmp_path, logs=None) -> None:
    """Claim the next item and run it with a real agent (its processes are real)."""
    settings = Settings(queue="batch", idle_timeout=0.1, lease_seconds=30, heartbeat_seconds=1, chunk_size=10,
                        work_root=tmp_path / "agent-work", definition_env={})
    agent = Agent(harness.worker, harness.backend.queue, logs or harness.backend.logs, settings)
    item = harness.backend.queue.claim("batch", harness.worker.worker, 10, 30)
    run = harness.worker.start(item)
    agent.execute(run)


@pytest.mark.parametrize("fields, words", [
    ({"env": {"A": "x\0y"}}, "embedded null byte"),
    ({"env": {"A=B": "x"}}, "illegal environment variable name"),
    ({"command": ["echo", "a\0b"]}, "embedded null byte"),
    ({"env": {"PBS_O_WORKDIR": "/tmp/a\0b"}}, "embedded null byte"),
])
def test_a_job_no_program_can_be_given_fails_as_not_started(harness, tmp_path, fields, words):
    job_id = store_job(harness, **fields)
    run_next(harness, tmp_path)
    job = harness.job(job_id)
    assert (job["state"], job["exit_status"]) == ("FAILED", exits.EXEC_FAILED)
    assert words in job["reason"] and "could not start" in job["reason"]


def test_an_absurd_walltime_does_not_overflow_the_deadline(harness, tmp_path):
    job_id = store_job(harness, walltime=10**400)
    run_next(harness, tmp_path)
    assert harness.job(job_id)["state"] == "SUCCEEDED"


class FullDisk:
    """A log store on a full disk: no output file can be made."""

    def sink(self, job_id, index, attempt):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_job_whose_log_cannot_be_written_fails_saying_so(harness, tmp_path):
    job_id = store_job(harness, max_attempts=1)
    run_next(harness, tmp_path, logs=FullDisk())
    job = harness.job(job_id)
    assert (job["state"], job["exit_status"]) == ("FAILED", exits.SCHEDULER_FAILURE)
    assert "could not write the job's output (No space left on device)" in job["reason"]


def test_array_tasks_whose_logs_cannot_be_written_fail_saying_so(harness, tmp_path):
    job_id = store_job(harness, array="1-3", total=3, pending=3, max_attempts=1)
    run_next(harness, tmp_path, logs=FullDisk())
    job = harness.job(job_id)
    assert (job["state"], job["failed"], job["succeeded"]) == ("FAILED", 3, 0)


def test_a_job_whose_script_cannot_be_written_fails_saying_so(harness, tmp_path):
    job_id = store_job(harness, command=None, script="#!/bin/sh\ntrue\n", max_attempts=1)
    (tmp_path / "agent-work").write_text("not a directory: the work directory cannot be made")
    run_next(harness, tmp_path)
    job = harness.job(job_id)
    assert (job["state"], job["exit_status"]) == ("FAILED", exits.SCHEDULER_FAILURE)
    assert "the worker could not write the job's files" in job["reason"]


def test_a_worker_whose_store_is_full_says_so_and_exits(monkeypatch, caplog):
    """It died without a word: now its log says why, and start.sh's loop decides what comes next."""
    from hyperbatch.core.errors import StorageFull
    from hyperbatch.wiring import worker

    class StoreFull:
        def serve(self):
            raise StorageFull("the job store's disk is full (database or disk is full): nothing was changed")

    monkeypatch.setattr(worker, "worker_from_environment", lambda: StoreFull())
    assert worker.main() == 1
    assert "stopping: the job store's disk is full" in caplog.text


def test_a_worker_that_cannot_stage_fails_a_staging_job_before_it_runs(harness, tmp_path):
    """No stager (an AWS worker before S3 staging): the job must not run without its files."""
    marker = tmp_path / "ran"
    job_id = store_job(harness, command=["touch", str(marker)], stagein=[f"in.txt@localhost:{tmp_path}/in.txt"])
    run_next(harness, tmp_path)
    job = harness.job(job_id)
    assert (job["state"], job["exit_status"]) == ("FAILED", exits.JOB_EXEC_FAIL1)
    assert job["reason"] == "File stage in failed: this worker cannot stage files"
    assert not marker.exists()

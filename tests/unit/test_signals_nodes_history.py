"""qsig's signal names, pbsnodes' view of the workers, and the history entries tracejob prints."""

import pytest

from hyperbatch.core import history, nodes, signals
from hyperbatch.core.errors import PBSE_NOSUP, PBSE_UNKSIG, SpecError
from hyperbatch.core.model import Change, Expect, apply, new_job


@pytest.mark.parametrize("given, name", [("SIGUSR1", "SIGUSR1"), ("USR1", "SIGUSR1"), ("usr2", "SIGUSR2"),
                                          ("10", "SIGUSR1"), ("15", "SIGTERM"), ("KILL", "SIGKILL")])
def test_signal_names_as_qsig_takes_them(given, name):
    assert signals.parse(given) == name


@pytest.mark.parametrize("given, errno", [("NOPE", PBSE_UNKSIG), ("999", PBSE_UNKSIG), ("", PBSE_UNKSIG),
                                           ("suspend", PBSE_NOSUP), ("resume", PBSE_NOSUP)])
def test_bad_signals_carry_pbs_errors(given, errno):
    with pytest.raises(SpecError) as err:
        signals.parse(given)
    assert err.value.pbs_errno == errno


def test_history_events_are_appended_by_the_same_write_and_rendered_for_tracejob():
    doc = new_job(id="1", owner="alice", name="job.sh", queue="batch", submitted_at=1.0,
                  history=[history.event("h", "", at=1.5)])
    change = history.add(Change(set={"state": "RUNNING"}), "r", "us-east-1/w-1", 1, at=2.0)
    new = apply(doc, Expect.move("RUNNING"), change)
    assert new["history"] == [[1.5, "h", ""], [2.0, "r", "us-east-1/w-1", 1]]
    new = apply(new, Expect(), history.add(Change(), "x", 3, 1.5, 3725, 2, at=5.0))
    new = apply(new, Expect(), history.add(Change(), "s", "root", "SIGUSR1", "1.srv", 1, at=6.0))
    assert history.render(new) == [
        [1.0, "S", "Job Queued at request of alice, owner = alice, job name = job.sh, queue = batch"],
        [1.5, "S", "Holds u set at request of alice"],
        [2.0, "M", "Job run on us-east-1/w-1 (attempt 1)"],
        [5.0, "M", "Exit_status=3 resources_used.cput=00:00:01 resources_used.walltime=01:02:05; "
                   "re-queued as attempt 2"],
        [6.0, "S", "Signal SIGUSR1 sent to 1.srv at request of root (delivered)"],
    ]
    assert history.who("alice", doc) == "" and history.who("root", doc) == "root"


def test_an_arrays_tasks_keep_their_staging_reasons_up_to_a_bound():
    doc = new_job(id="1", owner="alice", name="a", queue="batch", submitted_at=1.0)
    notes = [(i, f"File stage in failed: in.txt@s3://b/{i}: missing") for i in range(1, 16)]
    doc = apply(doc, Expect(), history.add_task_files(Change(), doc, notes, at=2.0))
    doc = apply(doc, Expect(), history.add_task_files(Change(), doc, notes, at=3.0))  # only 5 more fit
    shown = [text for _, _, text in history.render(doc)[1:]]
    assert len(shown) == history.MAX_TASK_FILE_EVENTS == 20
    assert shown[0] == "task 1: File stage in failed: in.txt@s3://b/1: missing" and shown[-1].startswith("task 5: ")
    assert history.add_task_files(Change(), doc, notes).append == {}


def test_a_job_item_stays_under_one_kilobyte_with_its_history():
    """DynamoDB bills a write per KB of item: a finished job's history must not push it over."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from aws_cost import item_size

    from hyperbatch.adapters.aws.items import job_item

    owner = "arn:aws:iam::123456789012:user/alice"
    doc = new_job(id="123456", server="HyperBatch", owner=owner, queue="batch", definition="standard",
                  command=["sh", "-c", "echo hello"], state="SUCCEEDED", started_at=1.0e9, finished_at=1.0e9,
                  exec_host="us-east-1/0123abcd-4567-89ab-cdef-0123456789ab", heartbeat_at=1.0e9, exit_status=0,
                  cpu_seconds=0.01, run_count=1)
    doc["history"] = [history.event("r", doc["exec_host"], 1), history.event("x", 0, 0.01, 12, 0)]
    assert item_size(job_item(doc, 86400, 0)) < 1024


def test_nodes_from_workers_and_running_jobs():
    running = [
        new_job(id="7", server="srv", state="RUNNING", exec_host="us-east-1/w-a", queue="batch", definition="big"),
        new_job(id="8", server="srv", state="RUNNING", array="1-4", queue="batch", definition="big",
                chunks={"c": {"lo": 1, "hi": 3, "worker": "us-west-2/w-b", "skip": [2]}}),
    ]
    defs = {"big": {"vcpus": 4, "memory_mib": 8192, "gpus": 1}}
    workers = [{"id": "w-a", "region": "us-east-1", "queue": "batch", "definition": "big", "started_at": 5.0},
               {"id": "w-c", "region": "us-east-1", "queue": "batch", "definition": "big", "started_at": 6.0}]
    local = nodes.describe(workers, running, defs)
    assert [(n["name"], n["state"], n["jobs"]) for n in local] == [("w-a", "job-busy", ["7.srv"]), ("w-c", "free", [])]
    assert (local[0]["ncpus"], local[0]["mem_mib"], local[0]["ngpus"]) == (4, 8192, 1)
    aws = nodes.describe(None, running, defs)  # only what runs is known
    assert [(n["name"], n["region"], n["jobs"]) for n in aws] == [
        ("w-a", "us-east-1", ["7.srv"]), ("w-b", "us-west-2", ["8[2].srv"])]

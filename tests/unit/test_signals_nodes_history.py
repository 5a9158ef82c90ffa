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


def test_history_entries_are_appended_by_the_same_write():
    doc = new_job(id="1", history=[history.entry("S", "queued", 1.0)])
    change = history.add(Change(set={"state": "RUNNING"}), history.WORKER, "Job run on r/w-1", 2.0)
    new = apply(doc, Expect(), change)
    assert new["history"] == [[1.0, "S", "queued"], [2.0, "M", "Job run on r/w-1"]]
    assert history.entry("S", "x" * 500)[2] == "x" * history.MAX_TEXT


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

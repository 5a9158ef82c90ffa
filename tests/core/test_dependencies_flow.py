"""Dependencies released by events: afterok chains, afternotok branches, impossible dependents."""

from hyperbatch.services.dispatch import Outcome
from hyperbatch.services.scheduler import Caller

ALICE = Caller("alice")


def test_afterok_chain_runs_in_order(harness):
    a = harness.submit(name="a")
    b = harness.submit(name="b", depend=f"afterok:{a['id']}")
    c = harness.submit(name="c", depend=f"afterok:{b['id']}")
    assert (b["state"], c["state"]) == ("WAITING", "WAITING")
    run = harness.claim()
    assert run.job["id"] == a["id"]
    assert harness.claim() is None  # b is not runnable yet
    harness.worker.finish_job(run, Outcome(0))
    harness.deliver()
    assert harness.job(b["id"])["state"] == "QUEUED"
    harness.run_job()
    assert harness.job(c["id"])["state"] == "QUEUED"


def test_afternotok_runs_when_the_parent_fails_and_afterok_is_cancelled(harness):
    parent = harness.submit(max_attempts=1)
    on_fail = harness.submit(depend=f"afternotok:{parent['id']}")
    on_ok = harness.submit(depend=f"afterok:{parent['id']}")
    grandchild = harness.submit(depend=f"afterok:{on_ok['id']}")
    harness.run_job(status=1)
    assert harness.job(on_fail["id"])["state"] == "QUEUED"
    cancelled = harness.job(on_ok["id"])
    assert cancelled["state"] == "CANCELLED"
    assert parent["id"] in cancelled["reason"] and "FAILED" in cancelled["reason"]
    assert harness.job(grandchild["id"])["state"] == "CANCELLED"


def test_afterany_on_a_whole_array(harness):
    array = harness.submit(array="1-3", max_attempts=1)
    after = harness.submit(depend=f"afterany:{array['id']}")
    run = harness.claim(max_tasks=3)
    harness.worker.finish_tasks(run, {p: Outcome(1 if p == 0 else 0) for p in run.positions})
    harness.deliver()
    assert harness.job(array["id"])["state"] == "FAILED"
    assert harness.job(after["id"])["state"] == "QUEUED"


def test_depending_on_a_finished_job(harness):
    done = harness.submit()
    harness.run_job()
    assert harness.submit(depend=f"afterok:{done['id']}")["state"] == "QUEUED"
    never = harness.submit(depend=f"afternotok:{done['id']}")
    assert never["state"] == "CANCELLED" and "can never be met" in never["reason"]


def test_a_held_dependent_is_checked_on_release(harness):
    parent = harness.submit()
    child = harness.submit(depend=f"afterok:{parent['id']}", hold=True)
    harness.run_job()
    assert harness.job(child["id"])["state"] == "HELD"
    assert harness.scheduler.release(child["id"], ALICE)["state"] == "QUEUED"

"""Work delivered twice, tasks cancelled while queued behind a %limit, and short jobs back to back: every
task runs once, cancelled ones never, and never more at once than the array's limit."""

from __future__ import annotations

import sqlite3


from tests.e2e.conftest import FINAL, task_id, wait_for


def duplicate_every_item(hb) -> int:
    """What an at-least-once queue may do at any time: deliver each work item again (a copy of each row
    of the lease table, claimable at once)."""
    conn = sqlite3.connect(hb.home / "state.db", timeout=30)
    try:
        with conn:
            return conn.execute(
                "INSERT INTO work (queue, job_id, lo, hi, attempt, priority, visible_at) "
                "SELECT queue, job_id, lo, hi, attempt, priority, visible_at FROM work"
            ).rowcount
    finally:
        conn.close()


def test_work_delivered_twice_runs_once(hb, ledger):
    job = hb.submit("-N", "twice", *ledger.env(TICKS=20), ledger.script)
    array = hb.submit("-J", "1-8", *ledger.env(TICKS=5), ledger.script)
    wait_for(lambda: {r.job for r in ledger.runs()} == {job, array}, 30, interval=0.05, what="both to run")
    assert duplicate_every_item(hb) >= 2  # the running job's item, and the array's (running or waiting)
    done = {j["id"]: j for j in hb.wait_all_final([job, array], timeout=45)}
    assert (done[job]["state"], done[job]["run_count"]) == ("SUCCEEDED", 1)
    assert (done[array]["state"], done[array]["array"]["succeeded"]) == ("SUCCEEDED", 8)
    runs = ledger.check({job: None, array: list(range(1, 9))}, no_rerun=True)
    assert len(runs) == 9  # once each


def test_a_task_cancelled_while_queued_behind_a_limit_never_runs_and_its_dependent_waits(hb, ledger):
    array = hb.submit("-h", "-J", "1-5%1", *ledger.env(TICKS=3), ledger.script)
    child = hb.submit("-N", "after", "-W", f"depend=afterok:{array}", *ledger.env(TICKS=1), ledger.script)
    hb.run("qdel", task_id(array, 3))
    hb.run("qrls", array)
    done = {j["id"]: j for j in hb.wait_all_final([array, child], timeout=45)}
    assert done[array]["state"] == "CANCELLED"  # one task cancelled, the others succeeded
    assert (done[array]["array"]["succeeded"], done[array]["array"]["cancelled"]) == (4, 1)
    assert done[child]["state"] == "CANCELLED"  # afterok can never hold now
    runs = ledger.check({array: [1, 2, 4, 5]}, never={array: [3], child: [None]}, limits={array: 1})
    assert sorted(r.index for r in runs) == [1, 2, 4, 5]


def test_short_jobs_back_to_back_are_never_taken_for_lost(hb, ledger):
    """Jobs about one heartbeat long, run back to back by the same workers, with no retries: each runs once
    and succeeds (a worker that is alive is never taken for lost, nor fences itself)."""
    ids = [hb.submit("--retries", "0", "-N", f"beat{n}", *ledger.env(TICKS=1, TICK=f"0.{44 + n % 8}"),
                     ledger.script) for n in range(32)]
    jobs = {j["id"]: j for j in hb.wait_all_final(ids, timeout=60)}
    bad = {i: (j["state"], j["attempt"], j["run_count"], j["reason"]) for i, j in jobs.items()
           if j["state"] != "SUCCEEDED" or j["run_count"] != 1}
    assert not bad, f"{len(bad)} of {len(ids)} jobs did not simply run once and succeed: {bad}"
    runs = ledger.check(dict.fromkeys(ids), no_rerun=True)
    assert len(runs) == len(ids)
    assert all(j["state"] in FINAL for j in hb.jobs())

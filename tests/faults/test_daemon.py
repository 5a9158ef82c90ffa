"""The daemon hurt with work in flight: killed (SIGKILL) and started again, or stopped and started again
with `hyper local down` / `up`. No work is lost or run twice at once; a graceful stop repeats nothing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3


from hyperbatch.core import arrays
from hyperbatch.core.ids import parse_job_ref
from tests.e2e.conftest import FINAL, wait_for


def array_doc(hb, job_id: str) -> dict:
    """The array's document as the store keeps it (chunks in flight included), read beside the daemon."""
    conn = sqlite3.connect(f"file:{hb.home / 'state.db'}?mode=ro", uri=True, timeout=10)
    try:
        seq = parse_job_ref(job_id).seq  # the store's key: the id's sequence number
        return json.loads(conn.execute("SELECT doc FROM jobs WHERE id = ?", (int(seq),)).fetchone()[0])
    finally:
        conn.close()


def gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}")


def test_a_daemon_killed_mid_work_and_started_again_loses_nothing_and_runs_nothing_twice_at_once(hb, ledger):
    array = hb.submit("-J", "1-12", *ledger.env(TICKS=5), ledger.script)
    job = hb.submit("-N", "long", *ledger.env(TICKS=30), ledger.script)
    wait_for(lambda: len({r.job for r in ledger.runs()}) == 2, 30, interval=0.1, what="both jobs to run")
    pid = int(hb.state["pid"])
    os.kill(pid, signal.SIGKILL)  # its workers run on, on their own
    wait_for(lambda: gone(pid), 30, what="the killed daemon to be reaped")
    hb.daemon_pids.remove(pid)  # gone: the teardown's safety net must not signal whoever gets the pid next
    hb.up()
    done = {j["id"]: j for j in hb.wait_all_final([array, job], timeout=60)}
    assert {(j["state"], j["exit_status"]) for j in done.values()} == {("SUCCEEDED", 0)}
    assert done[array]["array"]["succeeded"] == 12
    ledger.check({array: list(range(1, 13)), job: None})


def test_a_graceful_restart_keeps_queued_jobs_and_repeats_nothing(hb, ledger):
    before = hb.submit("-N", "before", *ledger.env(TICKS=1), ledger.script)
    assert hb.wait_state(before, FINAL)["state"] == "SUCCEEDED"
    batch = [hb.submit("-N", f"quick{n}", *ledger.env(TICKS=3), ledger.script) for n in range(12)]
    down = hb.down()
    assert "stopped" in down.stdout, down.stdout
    assert hb.state is None  # daemon.json removed
    # Down stops the daemon and every worker it started, and their jobs.
    wait_for(lambda: not hb.leftovers(), 15, what="no daemon, worker or job process left after down")
    status = hb.run("hyper", "local", "status", check=False)
    assert status.returncode == 1 and "not running" in status.stderr

    hb.up()
    listed = {j["id"]: j for j in hb.jobs()}
    assert set(batch) | {before} <= set(listed)
    assert listed[before]["state"] == "SUCCEEDED"
    assert not [j for j in batch if listed[j]["state"] in ("FAILED", "CANCELLED")]
    jobs = {j["id"]: j for j in hb.wait_all_final(batch, timeout=50)}
    assert {j["state"] for j in jobs.values()} == {"SUCCEEDED"}, {i: j["state"] for i, j in jobs.items()}
    # Work handed back by stopping workers used up no attempt: `down` hands running jobs back.
    retried = {i: (j["attempt"], j["run_count"], j["exec_host"]) for i, j in jobs.items() if j["attempt"] != 1}
    assert not retried, f"jobs retried across the restart (attempt, run_count, exec_host): {retried}"
    ledger.check(dict.fromkeys([before, *batch]), no_rerun=True)


def test_a_graceful_restart_in_the_middle_of_an_array_repeats_no_finished_task(hb, ledger, tmp_path):
    hold = tmp_path / "hold"
    hold.mkdir()
    array = hb.submit("-J", "1-40", *ledger.env(TICKS=2, HOLD_DIR=hold, HOLD_TICKS=300), ledger.script)
    spec = arrays.parse_array("1-40")

    def a_chunk_stopped_half_way():
        """Hold a task near the end of a chunk in flight; once it runs, the tasks before it are done."""
        started = {r.index for r in ledger.runs()}
        for chunk in array_doc(hb, array)["chunks"].values():
            if chunk["hi"] - chunk["lo"] >= 2:
                last = spec.index_at(chunk["hi"] - 1)
                if last not in started:
                    (hold / str(last)).touch()
        held = {int(p.name) for p in hold.iterdir()}
        return next((i for i in held if i in started and not any(r.done for r in ledger.runs() if r.index == i)),
                    None)

    held = wait_for(a_chunk_stopped_half_way, 40, interval=0.05, what="a chunk caught half way")
    done_before = {r.index for r in ledger.runs() if r.done}
    assert spec.index_at(spec.position_of(held) - 1) in done_before
    hb.down()
    for path in hold.iterdir():
        path.unlink()
    hb.up()
    final = hb.wait_all_final([array], timeout=60)[0]
    assert (final["state"], final["array"]["succeeded"]) == ("SUCCEEDED", 40)
    ledger.check({array: list(range(1, 41))}, no_rerun=True)

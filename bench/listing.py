"""Listing costs what it lists: qstat, qselect and GET /queues with no history and with 100,000 finished jobs.

    .venv/bin/python bench/listing.py [--history 100000] [--active 20] [--runs 15]

Prints figures; asserts nothing.

Local mode (one worker, which never runs anything here). First `--active`
jobs are submitted held, so they stay unfinished and every listing shows
them; then, per phase, the wall time (median of `--runs`) of:

    qstat                 (the installed command: the unfinished jobs, every user's)
    qselect               (the same selection, ids only)
    GET /jobs?owner=*&state=WAITING,HELD,QUEUED,RUNNING   (the listing qstat makes)
    GET /queues           (jobs per state per queue)

Then the history is filled: `--history` jobs submitted through the batch API
(POST /jobs of 1,000 jobs each, held so no worker runs them), then finished
by writing each one's final state through the store adapter the daemon uses
(hyperbatch.adapters.local SqliteJobStore.update, HELD -> CANCELLED, one
conditional write each, as qdel of a held job writes it: the transition table
allows no held job to end any other way, and 100,000 finished jobs are history
whatever their state, without running 100,000 processes). Once the daemon has handled the events
of those writes, the same figures are taken again and printed beside the first.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _localmode import BIN, REPO, LocalMode, install_signal_cleanup  # noqa: E402

ACTIVE = "WAITING,HELD,QUEUED,RUNNING"
BATCH = 1000


def timed(fn, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def cli(hb: LocalMode, *argv: str) -> None:
    env = {k: v for k, v in hb.env.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as from an installed copy
    proc = subprocess.run([str(BIN / argv[0]), *argv[1:]], env=env, cwd=hb.workdir, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode().strip()}")


def api(hb: LocalMode, path: str) -> None:
    status, body = hb.api("GET", path)
    if status != 200:
        raise RuntimeError(f"GET {path}: {status} {body}")


def measure(hb: LocalMode, runs: int) -> dict[str, float]:
    return {
        "qstat_ms": timed(lambda: cli(hb, "qstat"), runs),
        "qselect_ms": timed(lambda: cli(hb, "qselect"), runs),
        "api_active_listing_ms": timed(lambda: api(hb, f"/jobs?owner=*&state={ACTIVE}&limit=1000"), runs * 4),
        "api_queues_ms": timed(lambda: api(hb, "/queues"), runs * 4),
    }


def fill_history(hb: LocalMode, n: int) -> float:
    """n finished jobs: POST /jobs in batches (held), then each finished through the store adapter."""
    from hyperbatch.adapters.local.sqlite import Database, SqliteJobStore
    from hyperbatch.core.model import Change, Expect
    from hyperbatch.core.states import JobState

    started = time.perf_counter()
    ids = []
    for start in range(0, n, BATCH):
        size = min(BATCH, n - start)
        status, body = hb.api("POST", "/jobs", {"jobs": [{"command": ["true"], "hold": True, "name": "old"}] * size})
        if status != 201:
            raise RuntimeError(f"POST /jobs: {status} {body}")
        ids += [job["seq"] for job in body["jobs"]]
    store = SqliteJobStore(Database(hb.home / "state.db"))
    now = time.time()
    done = Change(set={"state": JobState.CANCELLED, "finished_at": now, "reason": "cancelled"})
    for job_id in ids:
        store.update(job_id, Expect.move(JobState.CANCELLED, JobState.HELD), done)
    # Let the daemon's event loop catch up with the 2n events, so it is idle while we measure.
    db = sqlite3.connect(f"file:{hb.home / 'state.db'}?mode=ro", uri=True, timeout=30)
    deadline = time.time() + 600
    while db.execute("SELECT COUNT(*) FROM events").fetchone()[0] and time.time() < deadline:
        time.sleep(0.5)
    db.close()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--history", type=int, default=100_000, help="finished jobs in the store for the second run")
    parser.add_argument("--active", type=int, default=20, help="unfinished (held) jobs every listing shows")
    parser.add_argument("--runs", type=int, default=15, help="runs of each command per figure (API: 4x)")
    args = parser.parse_args()
    install_signal_cleanup()
    print(f"# machine: {os.cpu_count()} cores; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "hyperbatch"), str(REPO / "cli")],
                   capture_output=True, env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
    with LocalMode(workers=1) as hb:
        for _ in range(args.active):
            hb.submit({"command": ["true"], "hold": True, "name": "active"})
        empty = measure(hb, args.runs)
        seconds = fill_history(hb, args.history)
        print(f"# history: {args.history} finished jobs in {seconds:.0f} s (batch API + store adapter)")
        full = measure(hb, args.runs)
    print(f"{'figure':<28} {'no history':>12} {f'{args.history} finished':>18}")
    for key in empty:
        print(f"{key:<28} {empty[key]:>12.1f} {full[key]:>18.1f}")
    for key in empty:
        print(f"{key.replace('_ms', '')}_history_ratio: {full[key] / empty[key]:.2f}")
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

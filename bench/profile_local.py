"""Where local mode's time goes: profiles of the agents and the daemon during an array run.

    .venv/bin/python bench/profile_local.py [--tasks 5000] [--workers 2] [--chunk-size 256] [--mode cprofile|sample]
    .venv/bin/python bench/profile_local.py --latency [--samples 30]      # one idle worker, single jobs
    ... --latency --whatif-poll-max 0.01      # experiment: idle agents poll at most every 10 ms
    ... --home-base /dev/shm                  # experiment: state and log files on tmpfs

Prints figures; asserts nothing; changes no product code. The daemon is started
with bench/profiling on PYTHONPATH, whose sitecustomize.py profiles
`python -m hyperbatch.wiring.worker` and `python -m hyperbatch.wiring.daemon` processes
(cProfile of the main thread, or a 2 ms stack sampler over all threads) and
writes the result when they exit at `hyper local down`.

Also measured here, for the breakdown: the cost of one agent-style spawn
(Popen with two new log files, env, cwd, process_group: the agent before
output was packed) against a bare Popen(["true"]) and against re-opening
existing files (near what the agent's reused spool costs now); and on a temp SQLite
database, an idle claim (what an idle agent does every poll), an empty write
transaction and `PRAGMA data_version`.

In the cProfile table, sqlite.py:write (a generator context manager) counts
two calls per write transaction.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _localmode import LocalMode, install_signal_cleanup, percentile  # noqa: E402

HERE = Path(__file__).resolve().parent

# Functions whose cumulative time tells the story of one task / one chunk (file suffix, function name).
KEY_FUNCTIONS = [
    ("agent.py", "serve"), ("agent.py", "_run_tasks"), ("agent.py", "_run_one"), ("agent.py", "_environment"),
    ("subprocess.py", "__init__"), ("subprocess.py", "_execute_child"), ("subprocess.py", "wait"),
    ("logs.py", "sink"), ("logs.py", "__init__"), ("logs.py", "close"), ("pathlib.py", "mkdir"),
    ("sqlite.py", "claim"), ("sqlite.py", "ack"), ("sqlite.py", "split"), ("sqlite.py", "extend"),
    ("sqlite.py", "get"), ("sqlite.py", "update"), ("sqlite.py", "write"),
    ("dispatch.py", "start"), ("dispatch.py", "_start_array"), ("dispatch.py", "finish_tasks"),
    ("dispatch.py", "_start_job"), ("dispatch.py", "finish_job"), ("tasks.py", "update_array"),
    ("tasks.py", "settle"), ("tasks.py", "derived_fields"), ("model.py", "apply"),
    ("__init__.py", "dumps"), ("__init__.py", "loads"), ("time.sleep", None),
]


def spawn_costs(seconds: float = 1.5, base: str | None = None) -> dict:
    """Per-spawn wall time of a bare Popen(['true']) and of agent-like ones, in this process.

    agent_like creates two new log files per task, as the agent did before output was packed
    (hyperbatch/adapters/local/logs.py); agent_like_reused opens the same two existing files again
    (O_TRUNC), isolating the cost of creating files (the agent now empties its spool's two files).
    """
    import subprocess

    root = Path(tempfile.mkdtemp(prefix="hb-spawn-", dir=base))
    try:
        out = {}
        env = {**os.environ, **{f"HYPER_X{i}": "x" * 20 for i in range(12)}}
        for label in ("bare", "agent_like", "agent_like_reused"):
            n, end = 0, time.perf_counter() + seconds
            start = time.perf_counter()
            while time.perf_counter() < end:
                if label == "bare":
                    subprocess.Popen(["true"]).wait()
                else:
                    d = root / "logs" / "J"
                    d.mkdir(parents=True, exist_ok=True)
                    (root / "work" / "J").mkdir(parents=True, exist_ok=True)
                    name = "0" if label == "agent_like_reused" else f"{n}"
                    fo = os.open(d / f"{name}.stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    fe = os.open(d / f"{name}.stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    subprocess.Popen(["true"], stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, cwd=root / "work" / "J",
                                     env=dict(env), process_group=0).wait()
                    os.close(fo)
                    os.close(fe)
                n += 1
            out[label] = (time.perf_counter() - start) / n * 1000
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def report_cprofile(files: list[Path], label: str, per: int, per_label: str) -> None:
    if not files:
        print(f"# {label}: no profile written")
        return
    stats = pstats.Stats(str(files[0]), stream=io.StringIO())
    for f in files[1:]:
        stats.add(str(f))
    total = stats.total_tt
    print(f"\n## {label}: cProfile of the main thread, {len(files)} process(es), {total:.2f} s profiled "
          f"(profiler overhead inflates Python-heavy code ~1.5-2x; compare shares, not absolutes)")
    print(f"{'function':58} {'calls':>8} {'cum s':>8} {'own s':>8} {'ms per ' + per_label:>14}")
    rows = []
    for (filename, line, name), (cc, nc, tt, ct, callers) in stats.stats.items():
        for suffix, fn in KEY_FUNCTIONS:
            if fn is None:
                if name == f"<built-in method {suffix}>" or name.endswith(f"{suffix}>"):
                    rows.append((f"{suffix}", nc, ct, tt))
            elif filename.endswith(suffix) and name == fn:
                if suffix == "__init__.py" and "json" not in filename:
                    continue
                if suffix == "subprocess.py" and fn == "__init__" and line < 700:
                    continue  # only Popen.__init__
                rows.append((f"{os.path.basename(filename)}:{line}:{name}", nc, ct, tt))
    for desc, nc, ct, tt in sorted(rows, key=lambda r: -r[2]):
        print(f"{desc:58} {nc:>8} {ct:>8.2f} {tt:>8.2f} {ct / per * 1000:>14.3f}")
    buf = io.StringIO()
    stats.stream = buf
    stats.sort_stats("tottime").print_stats(int(os.environ.get("HB_TOP", "18")))
    lines = [l for l in buf.getvalue().splitlines() if l.strip()]
    start = next((i for i, l in enumerate(lines) if l.strip().startswith("ncalls")), 0)
    print("# top by own time:")
    for l in lines[start:start + 19]:
        print("#   " + l.strip())


def report_samples(files: list[Path], label: str) -> None:
    if not files:
        print(f"# {label}: no samples written")
        return
    per_thread: dict[str, dict[str, int]] = {}
    interval = 0.002
    for f in files:
        data = json.loads(f.read_text())
        interval = data["interval"]
        for key, n in data["stacks"].items():
            thread, _, stack = key.partition(";")
            frames = stack.split(";")
            # the innermost frame in hyperbatch code, and the leaf
            mine = next((fr for fr in reversed(frames) if fr.split(":")[0] in HB_FILES), frames[-1])
            leaf = frames[-1]
            bucket = per_thread.setdefault(thread.split("-")[0] if thread.startswith("Thread-") else thread, {})
            name = mine if mine == leaf else f"{mine} > {leaf}"
            bucket[name] = bucket.get(name, 0) + n
    print(f"\n## {label}: stack samples every {interval * 1000:g} ms, {len(files)} process(es) "
          f"(wall time per thread; innermost HyperBatch frame > leaf)")
    for thread, bucket in sorted(per_thread.items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(bucket.values())
        print(f"# thread {thread}: {total} samples")
        for name, n in sorted(bucket.items(), key=lambda kv: -kv[1])[:12]:
            print(f"#   {100 * n / total:5.1f}%  {name}")


HB_FILES = {p.name for p in (HERE.parent / "hyperbatch").rglob("*.py")}


def sqlite_costs(n: int = 500) -> dict:
    """ms per idle claim (what an idle agent does every poll) and per chunk's store round, on a temp database."""
    from hyperbatch.adapters.local.sqlite import Database, SqliteWorkQueue

    root = Path(tempfile.mkdtemp(prefix="hb-sqlite-"))
    try:
        db = Database(root / "state.db")
        queue = SqliteWorkQueue(db)
        start = time.perf_counter()
        for _ in range(n):
            queue.claim("batch", "w-1", 256, 10)
        idle_claim = (time.perf_counter() - start) / n * 1000
        start = time.perf_counter()
        for _ in range(n):
            db.conn.execute("PRAGMA data_version").fetchone()
        data_version = (time.perf_counter() - start) / n * 1000
        start = time.perf_counter()
        for _ in range(n):
            with db.write() as conn:
                conn.execute("SELECT 1").fetchone()
        empty_txn = (time.perf_counter() - start) / n * 1000
        return {"idle_claim": idle_claim, "data_version": data_version, "empty_write_txn": empty_txn}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--mode", choices=("cprofile", "sample"), default="cprofile")
    parser.add_argument("--latency", action="store_true", help="profile one idle worker taking single jobs")
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--whatif-poll-max", type=float, default=None,
                        help="experiment: agents' idle poll backs off to at most this (product: 0.1 s)")
    parser.add_argument("--home-base", default=None,
                        help="experiment: put HYPERBATCH_HOME under this directory (e.g. /dev/shm, a tmpfs)")
    args = parser.parse_args()
    install_signal_cleanup()

    out_dir = Path(tempfile.mkdtemp(prefix="hb-profile-"))
    try:
        env = {"PYTHONPATH": str(HERE / "profiling") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "HB_PROFILE_DIR": str(out_dir), "HB_PROFILE": args.mode}
        if args.whatif_poll_max is not None:
            env["HB_WHATIF_POLL_MAX"] = str(args.whatif_poll_max)
            print(f"# what-if: agents' poll_max = {args.whatif_poll_max:g} s (product 0.1 s)")
        if args.home_base:
            print(f"# what-if: HYPERBATCH_HOME under {args.home_base}")
        print(f"# load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if args.latency:
            env["HYPER_IDLE_TIMEOUT"] = "600"
            with LocalMode(workers=1, daemon_env=env, base_dir=args.home_base) as hb:
                hb.warm_up()
                time.sleep(1)
                rng, lat = random.Random(1), []
                for _ in range(args.samples):
                    time.sleep(rng.uniform(0.5, 1.0))
                    t = time.time()
                    job = hb.submit({"command": ["true"]})
                    done = hb.wait_final([job["id"]], interval=0.02)[job["id"]]
                    lat.append((done["started_at"] - t) * 1000)
                print(f"# latency under profiling: p50 {percentile(lat, 50):.1f} ms, p95 {percentile(lat, 95):.1f} ms")
            per, per_label = args.samples, "job"
        else:
            with LocalMode(workers=args.workers, chunk_size=args.chunk_size, daemon_env=env,
                           base_dir=args.home_base) as hb:
                hb.warm_up()
                t0 = time.time()
                job = hb.submit({"command": ["true"], "array": f"1-{args.tasks}"})
                done = hb.wait_final([job["id"]], timeout=600, interval=0.05)[job["id"]]
                wall = time.time() - t0
                print(f"# {args.tasks} tasks, {args.workers} workers, chunk_size {args.chunk_size}, "
                      f"profiling {args.mode}: {wall:.2f} s, {args.tasks / wall:.0f} tasks/s, {done['state']}")
            per, per_label = args.tasks, "task"
        agents = sorted(out_dir.glob("agent-*"))
        daemons = sorted(out_dir.glob("daemon-*"))
        if args.mode == "cprofile":
            report_cprofile(agents, "agents", per, per_label)
            report_cprofile(daemons, "daemon", per, per_label)
        else:
            report_samples(agents, "agents")
            report_samples(daemons, "daemon")
        costs = spawn_costs(base=args.home_base)
        print(f"\n# spawn cost in one process ({args.home_base or tempfile.gettempdir()}): bare Popen(['true']).wait() "
              f"{costs['bare']:.3f} ms; agent-like (mkdir x2, 2 new log files, env copy, cwd, process_group=0) "
              f"{costs['agent_like']:.3f} ms; the same re-opening 2 existing files {costs['agent_like_reused']:.3f} ms")
        store = sqlite_costs()
        print(f"# sqlite: one idle claim (BEGIN IMMEDIATE + SELECT + COMMIT, what an idle agent does per poll) "
              f"{store['idle_claim']:.3f} ms; empty write transaction {store['empty_write_txn']:.3f} ms; "
              f"PRAGMA data_version (a lock-free 'anything committed?' check) {store['data_version']:.3f} ms")
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Submit-to-running latency of local mode on one warm idle worker, and the wall time of qsub and qstat.

    .venv/bin/python bench/latency.py [--samples 50] [--cli-runs 30] [--gap-min 0.5 --gap-max 1.0]

Prints figures; asserts nothing.

First, what an idle worker costs: its agent's CPU time over IDLE_SECONDS with
nothing to run, as a share of one core (an agent polling the store every 20 ms
cost about 2.6 %; woken on work, it claims once a second).

Local mode with exactly one worker (one region, local_max_workers 1, max_workers 1),
kept alive (HYPER_IDLE_TIMEOUT=600 in the daemon's environment, which its workers
inherit, and idle_timeout_seconds 600 in the definition). A warm-up job makes
the worker start and run once; then, per sample, after a random idle gap of
0.5-1.0 s (an idle agent's poll interval has backed off to its maximum by then,
so the submit lands at a random phase of it):

    t = time.time(); POST /jobs {"command": ["true"]}     (urllib-style, bearer token)
    ... wait until the job is final ...
    submit_to_running = job.started_at - t

`started_at` is stamped by the worker when it moves the job to RUNNING, just
before it forks the command, on the same clock as `t`. Also printed: the POST
round trip, and started_at - submitted_at (the daemon's own stamp), which is
the part spent waiting for a worker to pick the job up.

CLI: `qsub -- true`, `qstat ID` (a finished job's: `qstat -x ID`), `qdel ID`
(an unknown id: the same request and error path as a real delete, without
cancelling anything) and `python -c pass` (the bare interpreter of the same
venv, its site and editable-install hooks included) run as subprocesses,
interleaved, `--cli-runs` times each; wall time by time.perf_counter; the
median of each is printed, and each command's ratio to the bare interpreter
(the target: at most 1.5). The package's bytecode is compiled first and the
commands run with bytecode caching allowed, as from any pip-installed copy
(a PYTHONDONTWRITEBYTECODE environment would otherwise recompile every
module on every start and time the compiler instead of the command).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _localmode import BIN, REPO, LocalMode, cpu_of, install_signal_cleanup, percentile  # noqa: E402


IDLE_SECONDS = 10.0


def timed_runs(argv: list[str], env: dict, cwd: Path, runs: int, quiet: bool = False) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
        out.append((time.perf_counter() - start) * 1000)
        if proc.returncode != 0 and not quiet:
            print(f"# warning: {' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}", file=sys.stderr)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--cli-runs", type=int, default=30)
    parser.add_argument("--gap-min", type=float, default=0.5, help="idle seconds before each submit, at least")
    parser.add_argument("--gap-max", type=float, default=1.0, help="idle seconds before each submit, at most")
    args = parser.parse_args()
    install_signal_cleanup()
    rng = random.Random(1)

    print(f"# machine: {os.cpu_count()} cores; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with LocalMode(workers=1, daemon_env={"HYPER_IDLE_TIMEOUT": "600"}) as hb:
        hb.warm_up()
        time.sleep(1.0)
        workers = hb.worker_pids()
        print(f"# config: 1 worker (local_max_workers=1, max_workers=1), HYPER_IDLE_TIMEOUT=600; "
              f"agents up before sampling: {len(workers)}; settings.local {hb.config['settings.local']}")
        before, t0 = sum(cpu_of(pid)[0] for pid in workers), time.monotonic()
        time.sleep(IDLE_SECONDS)
        idle = (sum(cpu_of(pid)[0] for pid in workers) - before) / (time.monotonic() - t0)
        print(f"idle_agent_cpu_percent: {idle * 100:.2f}   # of one core, the worker's agent doing nothing for "
              f"{IDLE_SECONDS:g} s (/proc, clock ticks)")

        latency, post_rtt, pickup, hosts = [], [], [], set()
        for _ in range(args.samples):
            time.sleep(rng.uniform(args.gap_min, args.gap_max))
            t = time.time()
            job = hb.submit({"command": ["true"], "name": "latency"})
            post_rtt.append((time.time() - t) * 1000)
            done = hb.wait_final([job["id"]], timeout=60, interval=0.02)[job["id"]]
            latency.append((done["started_at"] - t) * 1000)
            pickup.append((done["started_at"] - done["submitted_at"]) * 1000)
            hosts.add(done["exec_host"])
        if len(hosts) != 1 or sorted(hb.worker_pids()) != sorted(workers):
            print(f"# warning: jobs ran on {sorted(hosts)}; agents {workers} -> {hb.worker_pids()}", file=sys.stderr)

        print(f"submit_to_running_p50_ms: {percentile(latency, 50):.1f}")
        print(f"submit_to_running_p95_ms: {percentile(latency, 95):.1f}")
        print(f"# submit_to_running min/mean/max ms: {min(latency):.1f} / {sum(latency) / len(latency):.1f} / "
              f"{max(latency):.1f} over {len(latency)} samples")
        print(f"# of which POST /jobs round trip p50 {percentile(post_rtt, 50):.1f} ms (p95 "
              f"{percentile(post_rtt, 95):.1f}); submitted_at -> started_at (waiting for the worker's poll) "
              f"p50 {percentile(pickup, 50):.1f} ms (p95 {percentile(pickup, 95):.1f}, max {max(pickup):.1f})")

        env, cwd = {k: v for k, v in hb.env.items() if k != "PYTHONDONTWRITEBYTECODE"}, hb.workdir
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "hyperbatch"), str(REPO / "cli")],
                       env=env, capture_output=True)
        last = hb.cli("qsub", "--", "true", check=True).stdout.strip()
        hb.wait_final([last], timeout=60)
        commands = {
            "python_start": [sys.executable, "-c", "pass"],
            "qsub": [str(BIN / "qsub"), "--", "true"],
            "qstat": [str(BIN / "qstat"), "-x", last],
            "qdel": [str(BIN / "qdel"), "999999999"],
        }
        walls: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.cli_runs):  # interleaved: a load spike hits every command alike
            for name, argv in commands.items():
                walls[name] += timed_runs(argv, env, cwd, 1, quiet=name == "qdel")
        bare = percentile(walls["python_start"], 50)
        print(f"python_start_ms_p50: {bare:.1f}   # `python -c pass` in the same venv, {args.cli_runs} runs")
        for name in ("qsub", "qstat", "qdel"):
            p50 = percentile(walls[name], 50)
            print(f"{name}_wall_ms_p50: {p50:.1f}   # {' '.join(commands[name][1:]) or ''}; "
                  f"{p50 / bare:.2f}x python_start_ms_p50 (target <= 1.5x)")
        print(f"qsub_wall_ms_p50 {percentile(walls['qsub'], 50):.1f} vs python_start_ms_p50 {bare:.1f}: "
              f"ratio {percentile(walls['qsub'], 50) / bare:.2f}")
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

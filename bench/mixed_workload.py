"""Core utilisation of local mode under a mixed workload: 1-CPU and 2-CPU jobs side by side.

    .venv/bin/python bench/mixed_workload.py [--jobs 200] [--seconds 0.2] [--wide-share 0.3] [--seed 1]

Prints figures; asserts nothing.

A temp local-mode HyperBatch (bench/_localmode.py) told it has as many CPUs as
this machine has cores (`local.cpus`), with as many workers. One POST /jobs
batch submits `--jobs` jobs of `sleep SECONDS` in a random order (seeded),
`--wide-share` of them asking for `-l ncpus=2`, the rest for one CPU.
Placement (hyperbatch/core/resources.py) runs 1-CPU jobs side by side and a
2-CPU job only on two free cores, never overcommitting.

    core_utilisation = busy core-seconds / available core-seconds

busy: each job's ncpus x its run (started_at to finished_at, the daemon's
stamps, so spawn and bookkeeping inside a run count as busy); available: the
cores x the span from the first start to the last finish. `useful_utilisation`
counts only the sleeps (ncpus x SECONDS): what is lost to starting, recording
and waiting between jobs. `max_cpus_in_use` is the most CPUs the runs held at
one moment by those stamps (never above the cores: no overcommit).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

from _localmode import LocalMode, install_signal_cleanup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=0.2)
    parser.add_argument("--wide-share", type=float, default=0.3, help="share of jobs asking for 2 CPUs")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    install_signal_cleanup()
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        print("# a 2-CPU job needs two cores; this machine has one", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    wide = [rng.random() < args.wide_share for _ in range(args.jobs)]
    print(f"# machine: {cores} cores; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with LocalMode(workers=cores, settings_local={"cpus": cores}) as hb:
        hb.warm_up()
        batch = [{"command": ["sleep", str(args.seconds)], "name": "wide" if w else "narrow",
                  "resources": {"ncpus": 2 if w else 1}} for w in wide]
        submitted = time.time()
        jobs = hb.submit({"jobs": batch})["jobs"]
        done = hb.wait_final([j["id"] for j in jobs], timeout=600, interval=0.2)
        wall = time.time() - submitted
    runs = [(d["started_at"], d["finished_at"], int(d["resources"]["ncpus"])) for d in done.values()]
    failed = sum(d["state"] != "SUCCEEDED" for d in done.values())
    first, last = min(r[0] for r in runs), max(r[1] for r in runs)
    busy = sum((end - start) * n for start, end, n in runs)
    useful = sum(args.seconds * n for _, _, n in runs)
    available = cores * (last - first)
    steps = sorted([(s, n) for s, _, n in runs] + [(e, -n) for _, e, n in runs], key=lambda x: (x[0], x[1]))
    held = most = 0
    for _, n in steps:
        held += n
        most = max(most, held)
    print(f"# {args.jobs} jobs of sleep {args.seconds}: {sum(wide)} with ncpus=2, {args.jobs - sum(wide)} with "
          f"ncpus=1; {failed} not SUCCEEDED; wall from submit {wall:.2f} s")
    print(f"core_utilisation: {busy / available:.3f}")
    print(f"useful_utilisation: {useful / available:.3f}")
    print(f"max_cpus_in_use: {most}   # of {cores}")
    print(f"# ideal span {useful / cores:.2f} s, measured {last - first:.2f} s")
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ledger every fault scenario ends with: which run of which task ran when, and whether it finished.

Each task is `TASK`, a small shell script that appends a line
`job,index,attempt,pid,start,end,status` to the file named by $LEDGER when it
starts, after each tick and when it ends (status start, tick, done). Times are
bash's $EPOCHREALTIME, one clock for every process on the machine. A run is
one (job, index, attempt, pid): it lasted from its start to its last line (a
killed run stops writing within a tick of its death), and it finished if it
wrote `done`.

`check` asserts what a user would ask of the scheduler, whatever the fault:
no gap (every expected task ran to its end at least once), no overlap (two
runs of one task never ran at once; for an array with a %limit, no more runs
of its tasks at once than the limit), no run nobody asked for (a task of an
array always has its index), and, when asked, no task run again once a run of
it had finished.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

# TICKS ticks of TICK seconds (RETRY_TICKS from the second attempt on), then exit EXIT.
# A file $HOLD_DIR/<index> makes the task tick HOLD_TICKS times instead.
TASK = """\
#!/bin/bash
s=$EPOCHREALTIME
job=${HYPER_ARRAY_ID:-$PBS_JOBID}
line() { printf '%s,%s,%s,%s,%s,%s,%s\\n' "$job" "${PBS_ARRAY_INDEX-}" "$HYPER_ATTEMPT" "$$" "$s" "$EPOCHREALTIME" "$1" >> "$LEDGER"; }
line start
ticks=${TICKS:-5}
if [ "$HYPER_ATTEMPT" -gt 1 ]; then ticks=${RETRY_TICKS:-$ticks}; fi
if [ -n "${HOLD_DIR-}" ] && [ -e "$HOLD_DIR/${PBS_ARRAY_INDEX-}" ]; then ticks=${HOLD_TICKS:-100}; fi
for ((n = 0; n < ticks; n++)); do sleep "${TICK:-0.1}"; line tick; done
line done
exit "${EXIT:-0}"
"""


@dataclass
class Run:
    job: str
    index: int | None
    attempt: int
    pid: int
    start: float
    end: float
    done: bool = False

    @property
    def task(self) -> tuple[str, int | None]:
        return (self.job, self.index)

    def __str__(self) -> str:
        name = self.job if self.index is None else f"{self.job}[{self.index}]"
        return (f"{name} attempt {self.attempt} pid {self.pid} [{self.start:.3f}, {self.end:.3f}]"
                f"{' done' if self.done else ''}")


def runs(path: Path) -> list[Run]:
    """The runs the ledger recorded, in order of their start."""
    found: dict[tuple, Run] = {}
    if not Path(path).exists():
        return []
    for line in Path(path).read_text().splitlines():
        parts = line.split(",")
        if len(parts) != 7:
            continue  # a line cut short by a kill
        job, index, attempt, pid, start, end, status = parts
        key = (job, index, attempt, pid)
        run = found.get(key)
        if run is None:
            run = found[key] = Run(job, int(index) if index else None, int(attempt), int(pid), float(start),
                                   float(end))
        run.end = max(run.end, float(end))
        run.done |= status == "done"
    return sorted(found.values(), key=lambda r: r.start)


def check(path: Path, expected: dict[str, list[int] | None], *, limits: dict[str, int] | None = None,
          never: dict[str, list[int]] | None = None, no_rerun: bool = False) -> list[Run]:
    """Assert the ledger's invariants; returns the runs.

    `expected`: job id -> the indices that must have run to their end (None for a plain job).
    `limits`: job id -> the most runs of its tasks allowed at once (an array's %limit).
    `never`: job id -> indices that must not have run at all (cancelled before they started).
    `no_rerun`: no task may run again once a run of it finished (a graceful stop repeats nothing).
    """
    found = runs(path)
    problems: list[str] = []
    by_task: dict[tuple, list[Run]] = defaultdict(list)
    for run in found:
        by_task[run.task].append(run)

    for job, indices in expected.items():
        for index in ([None] if indices is None else indices):
            if not any(r.done for r in by_task.get((job, index), [])):
                problems.append(f"gap: {job}{'' if index is None else f'[{index}]'} never ran to its end")
    for run in found:
        wanted = expected.get(run.job, "unexpected")
        if wanted == "unexpected" and run.job not in (never or {}):
            problems.append(f"a run of a job nobody expected: {run}")
        elif wanted is not None and run.index is None:
            problems.append(f"an array task ran with no index: {run}")
    for job, indices in (never or {}).items():
        problems += [f"ran although cancelled before it started: {r}"
                     for r in found if r.job == job and r.index in indices]

    for task, task_runs in by_task.items():
        for first, second in zip(task_runs, task_runs[1:]):
            if second.start < first.end:
                problems.append(f"overlap: {second} started before {first} ended")
        if no_rerun:
            finished = [r for r in task_runs if r.done]
            if finished:
                problems += [f"run again after it finished: {r} after {finished[0]}"
                             for r in task_runs if r.start > finished[0].end]

    for job, limit in (limits or {}).items():
        intervals = sorted((r.start, r.end) for r in found if r.job == job)
        events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda e: (e[0], e[1]))
        at_once = most = 0
        for _, step in events:
            at_once += step
            most = max(most, at_once)
        if most > limit:
            problems.append(f"{job}: {most} runs at once, over its limit of {limit}")

    assert not problems, "ledger check failed:\n  " + "\n  ".join(problems) + "\nruns:\n  " + "\n  ".join(
        str(r) for r in found)
    return found

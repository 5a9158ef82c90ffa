"""Rendering for qstat: the PBS-style table, the `-f` full listing, times and state letters.

Plain text on purpose: PBS users pipe qstat into grep/awk, so the table has
fixed columns separated by single spaces and no colour or box drawing.
"""

from __future__ import annotations

import shlex
import time
from typing import Any, Iterable, Mapping, Sequence

FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
ACTIVE_STATES = ("WAITING", "HELD", "QUEUED", "RUNNING")

# The S column: W waiting on dependencies, H held, Q queued, R running, F finished (any final state).
JOB_LETTERS = {
    "WAITING": "W",
    "HELD": "H",
    "QUEUED": "Q",
    "RUNNING": "R",
    "SUCCEEDED": "F",
    "FAILED": "F",
    "CANCELLED": "F",
}
# Array tasks (qstat -t): like jobs, except a cancelled task is X, as PBS marks deleted subjobs.
TASK_LETTERS = {**JOB_LETTERS, "CANCELLED": "X"}

HEADERS = ("Job id", "Name", "User", "Time Use", "S", "Queue")
# Longest a column may grow before its cells are cut (with a trailing '*', as PBS does). None: never cut.
MAX_WIDTH = (None, 24, 16, None, 1, 16)
MIN_WIDTH = (16, 16, 16, 8, 1, 5)


def letter(state: str | None, task: bool = False) -> str:
    return (TASK_LETTERS if task else JOB_LETTERS).get(state or "", "?")


def hms(seconds: float | None) -> str:
    """Seconds as HH:MM:SS (hours grow past 99); '0' when there is nothing to show, like PBS."""
    if seconds is None:
        return "0"
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def time_use(job: Mapping[str, Any], now: float | None = None) -> str:
    """cpu_seconds when known, else the elapsed run time (finished_at or now, minus started_at)."""
    cpu = job.get("cpu_seconds")
    if isinstance(cpu, (int, float)):
        return hms(cpu)
    started = job.get("started_at")
    if not isinstance(started, (int, float)):
        return "0"
    end = job.get("finished_at")
    if not isinstance(end, (int, float)):
        end = time.time() if now is None else now
    return hms(end - started)


def when(epoch: float | None) -> str:
    """Local time the way PBS prints it: 'Wed Nov 20 10:00:00 2024'."""
    if not isinstance(epoch, (int, float)):
        return ""
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(epoch))


def display_id(job: Mapping[str, Any]) -> str:
    """`ID[]` for an array job, as PBS shows arrays; the plain id otherwise."""
    return f"{job['id']}[]" if job.get("array") else str(job["id"])


def job_row(job: Mapping[str, Any], now: float | None = None) -> tuple[str, ...]:
    return (
        display_id(job),
        str(job.get("name") or ""),
        str(job.get("owner") or ""),
        time_use(job, now),
        letter(job.get("state")),
        str(job.get("queue") or ""),
    )


def task_row(job: Mapping[str, Any], task: Mapping[str, Any]) -> tuple[str, ...]:
    """One array task (from /jobs/{id}/tasks); tasks carry no timing, so Time Use is '--'."""
    return (
        f"{job['id']}[{task.get('index')}]",
        str(job.get("name") or ""),
        str(job.get("owner") or ""),
        "--",
        letter(task.get("state"), task=True),
        str(job.get("queue") or ""),
    )


def _cut(text: str, width: int | None) -> str:
    if width is None or len(text) <= width:
        return text
    return text[: width - 1] + "*" if width > 1 else text[:width]


def table(rows: Sequence[Sequence[str]]) -> str:
    """The PBS-style table, header and dashes included; '' when there are no rows (PBS prints nothing)."""
    if not rows:
        return ""
    widths = []
    for col, header in enumerate(HEADERS):
        longest = max([len(header), *(len(r[col]) for r in rows)])
        cap = MAX_WIDTH[col]
        widths.append(max(MIN_WIDTH[col], min(longest, cap) if cap else longest))
    right = {3}  # Time Use is right-aligned, as in PBS

    def line(cells: Sequence[str]) -> str:
        out = []
        for col, cell in enumerate(cells):
            cell = _cut(cell, MAX_WIDTH[col])
            out.append(cell.rjust(widths[col]) if col in right else cell.ljust(widths[col]))
        return " ".join(out).rstrip()

    lines = [line(HEADERS), " ".join("-" * w for w in widths)]
    lines.extend(line(r) for r in rows)
    return "\n".join(lines) + "\n"


def _pairs(mapping: Any) -> str:
    if not isinstance(mapping, dict):
        return ""
    return ",".join(f"{k}={v}" for k, v in mapping.items())


def array_state_count(array: Mapping[str, Any]) -> str:
    """PBS's summary: Queued (not started), Running, Exiting (always 0 here), Expired (finished)."""
    finished = sum(int(array.get(k) or 0) for k in ("succeeded", "failed", "cancelled"))
    return (
        f"Queued:{int(array.get('pending') or 0)} Running:{int(array.get('running') or 0)} "
        f"Exiting:0 Expired:{finished}"
    )


def full(job: Mapping[str, Any], now: float | None = None) -> str:
    """`qstat -f`: 'Job Id: ID' then indented 'attr = value' lines; a blank line ends the block."""
    attrs: list[tuple[str, Any]] = [
        ("Job_Name", job.get("name")),
        ("Job_Owner", job.get("owner")),
        ("job_state", letter(job.get("state"))),
        ("hyper_state", job.get("state")),
        ("queue", job.get("queue")),
        ("definition", job.get("definition")),
        ("Priority", job.get("priority")),
        ("Exit_status", job.get("exit_status")),
        ("comment", job.get("reason") or None),
        ("run_count", job.get("run_count")),
        ("attempt", job.get("attempt")),
        ("max_attempts", job.get("max_attempts")),
        ("exec_host", job.get("exec_host")),
        ("ctime", when(job.get("submitted_at")) or None),
        ("stime", when(job.get("started_at")) or None),
        ("obittime", when(job.get("finished_at")) or None),
        ("resources_used.cput", hms(job["cpu_seconds"]) if isinstance(job.get("cpu_seconds"), (int, float)) else None),
        ("resources_used.walltime", time_use({**job, "cpu_seconds": None}, now) if job.get("started_at") else None),
        ("Resource_List.walltime", hms(job["walltime"]) if isinstance(job.get("walltime"), (int, float)) else None),
    ]
    resources = job.get("resources")
    if isinstance(resources, dict):
        attrs.extend((f"Resource_List.{k}", v) for k, v in resources.items())
    command = job.get("command")
    attrs += [
        ("Variable_List", _pairs(job.get("env")) or None),
        ("depend", job.get("depend") or None),
        ("script_name", job.get("script_name")),
        ("command", shlex.join(command) if isinstance(command, list) and command else None),
    ]
    array = job.get("array")
    if isinstance(array, dict):
        failed = array.get("failed_tasks") or {}
        attrs += [
            ("array", "True"),
            ("array_indices_submitted", array.get("spec")),
            ("array_state_count", array_state_count(array)),
            (
                "array_task_counts",
                " ".join(
                    f"{k}:{int(array.get(k) or 0)}"
                    for k in ("total", "pending", "running", "succeeded", "failed", "cancelled")
                ),
            ),
            ("array_failed_tasks", ",".join(f"{i}:{s}" for i, s in failed.items()) if failed else None),
        ]
    lines = [f"Job Id: {job.get('id')}"]
    lines += [f"    {k} = {_one_line(v)}" for k, v in attrs if v is not None and v != ""]
    return "\n".join(lines) + "\n\n"


def full_task(job: Mapping[str, Any], task: Mapping[str, Any]) -> str:
    """`qstat -f ID[3]`: the task's own state plus its array's name, owner and queue."""
    attrs = [
        ("Job_Name", job.get("name")),
        ("Job_Owner", job.get("owner")),
        ("job_state", letter(task.get("state"), task=True)),
        ("hyper_state", task.get("state")),
        ("queue", job.get("queue")),
        ("array_index", task.get("index")),
        ("Exit_status", task.get("exit_status")),
        ("attempt", task.get("attempt")),
    ]
    lines = [f"Job Id: {job.get('id')}[{task.get('index')}]"]
    lines += [f"    {k} = {_one_line(v)}" for k, v in attrs if v is not None and v != ""]
    return "\n".join(lines) + "\n\n"


def _one_line(value: Any) -> str:
    return " ".join(str(value).splitlines())


def task_json(job: Mapping[str, Any], task: Mapping[str, Any]) -> dict[str, Any]:
    """`qstat --json ID[3]`: one task as an object of its own."""
    return {
        "id": f"{job.get('id')}[{task.get('index')}]",
        "array_id": job.get("id"),
        "index": task.get("index"),
        "name": job.get("name"),
        "owner": job.get("owner"),
        "queue": job.get("queue"),
        "state": task.get("state"),
        "exit_status": task.get("exit_status"),
        "attempt": task.get("attempt"),
    }


def dump_json(items: Iterable[Any]) -> str:
    import json

    return json.dumps(list(items), indent=2) + "\n"

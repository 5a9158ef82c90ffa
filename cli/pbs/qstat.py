"""qstat: show jobs, arrays and their tasks."""

from __future__ import annotations

import re
import sys
import time
from typing import Any, Iterator

import click
from hyperbatch.cli.errors import ApiError, CliError, UsageError
from hyperbatch.cli.pbs.common import (
    ACTIVE_STATES,
    CONTEXT,
    TASK_PAGE,
    api_client,
    job_path,
    parse_ref,
    per_job_error,
)
from hyperbatch.cli.runner import err as _err
from hyperbatch.cli.runner import run as _run

_SIMPLE_SPEC_RE = re.compile(r"\s*([0-9]+)(?:-([0-9]+)(?::([0-9]+))?)?(?:%[0-9]+)?\s*")


QSTAT_HELP = """Show jobs: by default your jobs that have not finished yet.

\b
Columns: Job id (ID[] for an array), Name, User, Time Use (CPU time, or the
time it has run so far), S (state), Queue.
State letters: W waiting on dependencies, H held, Q queued, R running,
F finished (succeeded, failed or cancelled; qstat -f shows which).
With -t, array tasks: the same letters, X for a cancelled task.

Jobs named by ID are always shown, finished or not. ID[] names an array,
ID[3] one of its tasks.
"""


@click.command("qstat", context_settings=CONTEXT, help=QSTAT_HELP, options_metavar="[OPTIONS]")
@click.option("-x", "finished", is_flag=True, help="Include finished jobs (succeeded, failed, cancelled).")
@click.option("-f", "full", is_flag=True, help="Full listing: every attribute of each job, PBS style.")
@click.option("-t", "tasks", is_flag=True, help="Expand arrays: one row per task, ID[INDEX].")
@click.option(
    "-u",
    "user",
    metavar="USER",
    help="Show USER's jobs instead of yours ('*' for every user; admins only).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as a JSON list (the API's Job objects).")
@click.argument("ids", nargs=-1, metavar="[ID]...")
def qstat(finished: bool, full: bool, tasks: bool, user: str | None, as_json: bool, ids: tuple[str, ...]) -> int:
    from hyperbatch.cli import output

    client = api_client()
    rc = 0
    entries: list[tuple[dict[str, Any], dict[str, Any] | None]] = []  # (job, task or None)
    if ids:
        for text in ids:
            try:
                job_id, index, _ = parse_ref(text)
                _, job = client.request("GET", job_path(job_id))
                if index is None:
                    entries.append((job, None))
                    continue
                if not job.get("array"):
                    raise _NotAnArray(f"{text}: {job_id} is not an array job")
                task = _find_task(client, job, index)
                if task is None:
                    _err(f"qstat: Unknown Job Id {text}")
                    rc = max(rc, 1)
                    continue
                entries.append((job, task))
            except ApiError as exc:
                rc = max(rc, per_job_error("qstat", text, exc))
            except (UsageError, _NotAnArray) as exc:
                _err(f"qstat: {exc.message}")
                rc = max(rc, exc.exit_code)
    else:
        query = {"owner": user, "state": None if finished else ",".join(ACTIVE_STATES)}
        jobs = list(_list_jobs(client, query))
        jobs.reverse()  # the API gives newest first; PBS lists oldest first
        entries = [(job, None) for job in jobs]

    now = time.time()
    if as_json:
        items: list[Any] = []
        for job, task in entries:
            if task is not None:
                items.append(output.task_json(job, task))
            elif tasks and job.get("array"):
                items.append({**job, "tasks": list(_iter_tasks(client, str(job["id"])))})
            else:
                items.append(job)
        sys.stdout.write(output.dump_json(items))
    elif full:
        sys.stdout.write(
            "".join(output.full_task(job, task) if task else output.full(job, now) for job, task in entries)
        )
    else:
        rows = []
        for job, task in entries:
            if task is not None:
                rows.append(output.task_row(job, task))
                continue
            rows.append(output.job_row(job, now))
            if tasks and job.get("array"):
                rows.extend(output.task_row(job, t) for t in _iter_tasks(client, str(job["id"])))
        sys.stdout.write(output.table(rows))
    sys.stdout.flush()
    return rc


class _NotAnArray(CliError):
    pass


def _list_jobs(client: Any, query: dict[str, Any]) -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    token = None
    while True:
        _, page = client.request("GET", "/jobs", query={**query, "next": token})
        page = page or {}
        yield from page.get("jobs") or []
        token = page.get("next")
        if not token or str(token) in seen:
            return
        seen.add(str(token))


def _iter_tasks(client: Any, job_id: str) -> Iterator[dict[str, Any]]:
    offset: Any = 0
    path = job_path(job_id, "tasks")
    while True:
        _, page = client.request("GET", path, query={"offset": offset, "limit": TASK_PAGE})
        page = page or {}
        yield from page.get("tasks") or []
        nxt = page.get("next")
        if nxt is None or nxt == offset:
            return
        offset = nxt


def _spec_position(spec: Any, index: int) -> tuple[bool, int | None]:
    """(understood, position of `index` in START-END[:STEP][%LIMIT]) — a guess to fetch one task directly."""
    match = _SIMPLE_SPEC_RE.fullmatch(str(spec or ""))
    if match is None:
        return False, None
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) else start
    step = int(match.group(3)) if match.group(3) else 1
    if step < 1 or index < start or index > end or (index - start) % step:
        return True, None
    return True, (index - start) // step


def _find_task(client: Any, job: dict[str, Any], index: int) -> dict[str, Any] | None:
    job_id = str(job["id"])
    understood, position = _spec_position((job.get("array") or {}).get("spec"), index)
    if understood and position is None:
        return None
    if position is not None:
        _, page = client.request(
            "GET", job_path(job_id, "tasks"), query={"offset": position, "limit": 1}
        )
        for task in (page or {}).get("tasks") or []:
            if task.get("index") == index:
                return task
    for task in _iter_tasks(client, job_id):
        if task.get("index") == index:
            return task
    return None


def qstat_main(argv: list[str] | None = None) -> int:
    return _run(qstat, "qstat", argv)


# ---------------------------------------------------------------------------------------------
# qdel, qhold, qrls

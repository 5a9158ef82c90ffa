"""Array tasks kept compactly on the array's one job document.

Per task the document keeps only what is not implied: ranges of positions
handed out at least once (`dispatched`), chunks in flight (`chunks`), tasks
waiting for a retry (`retrying`), and the indices that failed or were
cancelled. Everything else about a task is derived here.
"""

from __future__ import annotations

import time
from typing import Callable

from hyperbatch.core import arrays
from hyperbatch.core.errors import StaleTransition
from hyperbatch.core.model import Change, Expect, apply
from hyperbatch.core.ports import JobStore
from hyperbatch.core.states import JobState

MAX_RETRIES_ON_CONFLICT = 100


def covered(ranges: list[list[int]], pos: int) -> bool:
    return any(lo <= pos < hi for lo, hi in ranges)


def add_range(ranges: list[list[int]], lo: int, hi: int) -> list[list[int]]:
    """Union of sorted, disjoint [lo, hi) ranges with one more, merged so the list stays short."""
    out: list[list[int]] = []
    for a, b in sorted([*ranges, [lo, hi]]):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def remove_range(ranges: list[list[int]], lo: int, hi: int) -> list[list[int]]:
    """The ranges less [lo, hi)."""
    out: list[list[int]] = []
    for a, b in ranges:
        out += [[a, min(b, lo)]] if a < lo else []
        out += [[max(a, hi), b]] if b > hi else []
    return [r for r in out if r[0] < r[1]]


def first_free(ranges: list[list[int]], lo: int, hi: int) -> tuple[int, int] | None:
    """The first run of positions in [lo, hi) that no range covers."""
    start = lo
    for a, b in sorted(ranges):
        if b <= start:
            continue
        if a > start:
            return (start, min(a, hi)) if start < hi else None
        start = max(start, b)
    return (start, hi) if start < hi else None


def free_ranges(ranges: list[list[int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """Every run of positions in [lo, hi) that no range covers, in order."""
    out, start = [], lo
    while (gap := first_free(ranges, start, hi)) is not None:
        out.append(gap)
        start = gap[1]
    return out


def chunk_positions(chunk: dict) -> list[int]:
    """The positions a chunk counted as running (those cancelled before it started are skipped)."""
    skip = set(chunk.get("skip", ()))
    return [p for p in range(chunk["lo"], chunk["hi"]) if p not in skip]


def settle(doc: dict, chunk_id: str, verdict: Callable[[int, str], tuple[str, object]]) -> tuple[Change, list[int]]:
    """Take a chunk out of flight, each of its positions going where `verdict(pos, index)` says.

    Verdicts: ("succeeded", _), ("failed", exit_status), ("cancelled", _),
    ("retry", attempt), ("pending", _) for work handed back untouched.
    Returns the change and the positions to send again as retries. Finishing,
    losing and giving back a chunk all go through here, so the counters always
    add up to the array's size.
    """
    spec = arrays.parse_array(doc["array"])
    chunk = doc["chunks"][chunk_id]
    failed, cancelled, retrying = dict(doc["failed_tasks"]), dict(doc["cancelled_tasks"]), dict(doc["retrying"])
    counts = dict.fromkeys(("succeeded", "failed", "cancelled", "pending"), 0)
    retries: list[int] = []
    positions = chunk_positions(chunk)
    for pos in positions:
        index = str(spec.index_at(pos))
        kind, value = verdict(pos, index)
        if kind != "cancelled":
            cancelled.pop(index, None)  # a cancel that came too late loses to the real result
        if kind == "succeeded":
            counts["succeeded"] += 1
        elif kind == "failed":
            failed[index] = value
            counts["failed"] += 1
        elif kind == "cancelled":
            cancelled[index] = True
            counts["cancelled"] += 1
        elif kind == "retry":
            retrying[index] = value
            retries.append(pos)
            counts["pending"] += 1
        else:
            counts["pending"] += 1
    change = Change(
        set={
            "failed_tasks": failed,
            "cancelled_tasks": cancelled,
            "retrying": retrying,
            "chunks": {k: v for k, v in doc["chunks"].items() if k != chunk_id},
            "beats": {k: v for k, v in doc["beats"].items() if k != chunk_id},
            "running": doc["running"] - len(positions),
            **{key: doc[key] + n for key, n in counts.items()},
        }
    )
    return change, retries


def task_state(doc: dict, spec: arrays.ArraySpec, pos: int) -> dict:
    """One task's row for `qstat -t`: index, state, exit status, attempt."""
    index = spec.index_at(pos)
    key = str(index)
    row = {"index": index, "state": JobState.SUCCEEDED.value, "exit_status": 0, "attempt": 1}
    if key in doc["failed_tasks"]:
        row.update(state=JobState.FAILED.value, exit_status=doc["failed_tasks"][key])
    elif key in doc["cancelled_tasks"]:
        row.update(state=JobState.CANCELLED.value, exit_status=None)
    elif any(c["lo"] <= pos < c["hi"] for c in doc["chunks"].values()):
        chunk = next(c for c in doc["chunks"].values() if c["lo"] <= pos < c["hi"])
        row.update(state=JobState.RUNNING.value, exit_status=None, attempt=chunk["attempt"])
    elif key in doc["retrying"]:
        row.update(state=JobState.QUEUED.value, exit_status=None, attempt=doc["retrying"][key])
    elif not covered(doc["dispatched"], pos):
        cancelled = doc["cancel_requested"] or doc["state"] == JobState.CANCELLED.value
        row.update(state=(JobState.CANCELLED if cancelled else JobState.QUEUED).value, exit_status=None)
    return row


def derived_fields(doc: dict) -> dict:
    """State, exit status and finish time that follow from an array's counters."""
    counts = {k: doc[k] for k in ("pending", "running", "succeeded", "failed", "cancelled")}
    state = arrays.array_state(**counts)
    if doc["state"] in (JobState.HELD.value, JobState.WAITING.value) and not doc["running"] and doc["pending"]:
        state = JobState(doc["state"])
    out: dict = {"state": state.value}
    if state.final and doc["finished_at"] is None:
        out["finished_at"] = time.time()
        failed = sorted(doc["failed_tasks"].items(), key=lambda kv: int(kv[0]))
        out["exit_status"] = 0 if state == JobState.SUCCEEDED else (failed[0][1] if failed else None)
        if failed and state == JobState.FAILED:
            out["reason"] = (
                f"{len(failed)} of {doc['total']} tasks failed "
                f"(indices {arrays.format_indices(int(i) for i, _ in failed)})"
            )
    return out


def update_array(store: JobStore, job_id: str, decide: Callable[[dict], Change | None]) -> dict:
    """Read, decide, write under a version check, retrying when another writer got in first.

    The derived state is written in the same conditional write as the counters
    it derives from, so it can never lag behind them; the write expects the
    state it read, so a derived move the transition table forbids raises
    IllegalTransition (`Expect.move`) instead of being written.
    """
    for _ in range(MAX_RETRIES_ON_CONFLICT):
        doc = store.get(job_id)
        change = decide(doc)
        if change is None:
            return doc
        preview = apply(doc, Expect(), change)
        change.set.update(derived_fields(preview))
        expect = Expect.move(change.set["state"], doc["state"], version=doc["version"])
        try:
            return store.update(job_id, expect, change)
        except StaleTransition:
            continue
    raise StaleTransition(f"job {job_id}: too many concurrent updates")

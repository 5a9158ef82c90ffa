"""Array tasks kept compactly on the array's one job document, and the one owner of their bookkeeping.

Per task the document keeps only what is not implied: ranges of positions
handed out at least once (`dispatched`), chunks in flight (`chunks`), tasks
waiting for a retry (`retrying`), and the indices that failed or were
cancelled. Everything else about a task is derived here.

Every change to an array's counters (pending, running, succeeded, failed,
cancelled), chunks, retries and task maps is made by one of the operations
below. Each is pure: it reads the document and returns the Change to write
(None when there is nothing to do); callers write it with `update_array`,
which adds the array's derived state and checks that move against the
transition table. The operations:

- `claim_chunk`: a worker takes positions of a work item as a chunk. Cancelled
  tasks are never run: a chunk skips them, and a range holding only cancelled
  tasks is settled on the spot, never run.
- `record_progress`: a heartbeat settles the tasks a chunk has finished so far,
  so that after a crash only what ran since the last heartbeat runs again.
- `finish_chunk`: the chunk's worker reports its tasks' results; the tasks it
  did not run to their end (it is stopping) go back untouched, with no
  attempt used up.
- `lose_chunk`: the chunk's worker is gone (or its work was dead-lettered):
  its tasks are retried or failed.
- `fail_tasks`: a dead-lettered item's tasks are failed with the reason.
- `cancel_tasks`: qdel of the array, or of one task. A cancel recorded before
  a task's result wins over the result (whoever writes first is the truth),
  so `qdel` never answers 0 for a task that then succeeds.
- `retry_or_fail` and `settle`, which the others share: `settle` is the one
  place tasks leave a chunk, so the counters always add up to the array's size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from hyperbatch.core import arrays, exits
from hyperbatch.core.errors import StaleTransition
from hyperbatch.core.model import Change, Expect, apply, is_array
from hyperbatch.core.ports import JobStore
from hyperbatch.core.states import JobState

MAX_RETRIES_ON_CONFLICT = 100

# Where `settle` sends a task: its verdict.
SUCCEEDED, FAILED, CANCELLED, RETRY, BACK = "succeeded", "failed", "cancelled", "retry", "back"
Verdict = tuple[str, object]  # (kind, exit status for FAILED, attempt for RETRY and BACK)

_CLAIMABLE = (JobState.QUEUED.value, JobState.RUNNING.value)


# ---- position ranges ------------------------------------------------------------------------

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


# ---- chunks -----------------------------------------------------------------------------------

def chunk_positions(chunk: dict) -> list[int]:
    """The positions a chunk still counts as running: [lo, hi) less those cancelled before it started.

    A chunk's `lo` moves up as its worker's heartbeats record its progress (`record_progress`).
    """
    skip = set(chunk.get("skip", ()))
    return [p for p in range(chunk["lo"], chunk["hi"]) if p not in skip]


def is_cancelled(doc: dict, index: str) -> bool:
    return doc["cancel_requested"] or index in doc["cancelled_tasks"]


@dataclass
class Claim:
    """What `claim_chunk` granted: positions [lo, hi) of the item, of which `positions` run."""

    change: Change | None = None
    lo: int = 0
    hi: int = 0
    positions: list[int] = field(default_factory=list)
    full: bool = False  # at the array's %limit: nothing now, try the item again shortly


def claim_chunk(doc: dict, chunk_id: str, lo: int, hi: int, attempt: int, worker: str, now: float) -> Claim:
    """A worker takes positions of the item [lo, hi) at `attempt` as chunk `chunk_id`.

    Nothing (no change) when the document is no array that runs work now (a
    plain job, held, waiting, final or being cancelled), when every position of
    the item was handed out already, or when the item is a retry that is no
    longer due; `full` when the %limit leaves no room. Otherwise it takes up
    to the room the limit leaves of runnable positions, from the first free
    one, stepping over cancelled tasks (recorded in the chunk's `skip`). A range
    holding only cancelled tasks is settled here: marked handed out, with no
    chunk and no positions, and never run.
    """
    if not is_array(doc) or doc["state"] not in _CLAIMABLE or doc["cancel_requested"]:
        return Claim()
    spec = arrays.parse_array(doc["array"])
    room = (hi - lo) if spec.limit is None else max(0, spec.limit - doc["running"])
    retrying = doc["retrying"]
    if attempt > 1:  # a single task's retry
        index = str(spec.index_at(lo))
        if retrying.get(index) != attempt:
            return Claim()
        start, end = lo, lo + 1
        retrying = {k: v for k, v in retrying.items() if k != index}
    else:
        free = first_free(doc["dispatched"], lo, hi)
        if free is None:
            return Claim()
        start, end = free
    if room == 0:
        return Claim(full=True)
    positions: list[int] = []
    stop = start
    while stop < end and len(positions) < room:
        if str(spec.index_at(stop)) not in doc["cancelled_tasks"]:
            positions.append(stop)
        stop += 1
    change = Change(set={"dispatched": add_range(doc["dispatched"], start, stop), "retrying": retrying})
    if positions:
        # run_count: the most runs of a task so far, counting those whose worker was lost (lose_chunk)
        lost = doc.get("lost_tasks") or {}
        most_lost = max(int(lost.get(str(spec.index_at(p)), 0)) for p in positions)
        skip = [p for p in range(start, stop) if p not in positions]
        chunk = {"lo": start, "hi": stop, "attempt": attempt, "worker": worker, "started": now, "skip": skip}
        change.set.update(
            chunks={**doc["chunks"], chunk_id: chunk},
            pending=doc["pending"] - len(positions),
            running=doc["running"] + len(positions),
            started_at=doc["started_at"] or now,
            exec_host=worker,
            run_count=max(doc["run_count"], attempt + most_lost),
        )
    return Claim(change, start, stop, positions)


@dataclass
class Settled:
    """A change that took tasks out of a chunk: the tasks to send as retries, and those handed back."""

    change: Change
    retries: list[int] = field(default_factory=list)  # positions, each due again at the chunk's attempt + 1
    back: list[int] = field(default_factory=list)  # positions handed back untouched, at the chunk's attempt


def settle(doc: dict, chunk_id: str, verdict: Callable[[int, str], Verdict], upto: int | None = None) -> Settled:
    """Take a chunk's positions out of flight (all, or those below `upto`), each going where
    `verdict(pos, index)` says: SUCCEEDED, FAILED (exit status), CANCELLED, RETRY (attempt) or BACK
    (handed back untouched, at its attempt: claimable again, no attempt used up).

    The one place tasks leave a chunk: finishing, recording progress, losing and
    failing a chunk all go through here, so the counters always add up to the
    array's size. With `upto`, the chunk stays in flight from there on.
    """
    spec = arrays.parse_array(doc["array"])
    chunk = doc["chunks"][chunk_id]
    failed, cancelled, retrying = dict(doc["failed_tasks"]), dict(doc["cancelled_tasks"]), dict(doc["retrying"])
    dispatched = doc["dispatched"]
    counts = dict.fromkeys(("succeeded", "failed", "cancelled", "pending"), 0)
    out = Settled(Change())
    positions = [p for p in chunk_positions(chunk) if upto is None or p < upto]
    for pos in positions:
        index = str(spec.index_at(pos))
        kind, value = verdict(pos, index)
        if kind == SUCCEEDED:
            counts["succeeded"] += 1
        elif kind == FAILED:
            failed[index] = value
            counts["failed"] += 1
        elif kind == CANCELLED:
            cancelled[index] = True
            counts["cancelled"] += 1
        elif kind == RETRY:
            retrying[index] = value
            out.retries.append(pos)
            counts["pending"] += 1
        elif kind == BACK:
            if value == 1:
                dispatched = remove_range(dispatched, pos, pos + 1)  # free again: sent as never handed out
            else:
                retrying[index] = value  # due again at the same attempt
            out.back.append(pos)
            counts["pending"] += 1
        else:
            raise ValueError(f"unknown verdict {kind!r}")
    chunks = {k: v for k, v in doc["chunks"].items() if k != chunk_id}
    beats = {k: v for k, v in doc["beats"].items() if k != chunk_id}
    if upto is not None and upto < chunk["hi"]:
        chunks[chunk_id] = {**chunk, "lo": max(chunk["lo"], upto), "skip": [p for p in chunk.get("skip", ()) if p >= upto]}
        beats = doc["beats"]
    out.change.set.update(
        failed_tasks=failed, cancelled_tasks=cancelled, retrying=retrying, dispatched=dispatched,
        chunks=chunks, beats=beats, running=doc["running"] - len(positions),
        **{key: doc[key] + n for key, n in counts.items()},
    )
    return out


def retry_or_fail(doc: dict, attempt: int, status: int | None) -> Verdict:
    """A task that ended with `status` != 0 at `attempt`: retried while attempts are left, failed after."""
    if attempt < doc["max_attempts"]:
        return RETRY, attempt + 1
    return FAILED, status


def _results_verdict(doc: dict, attempt: int, statuses: Mapping[int, int | None]):
    """Verdicts for a chunk's reported results: pos -> exit status of each task run to its end."""

    def decide(pos: int, index: str) -> Verdict:
        if is_cancelled(doc, index):
            return CANCELLED, None  # a cancel recorded before the result wins over it
        if pos not in statuses:
            return BACK, attempt  # not reached, or stopped by a stopping worker: run again, no attempt used
        if statuses[pos] == 0:
            return SUCCEEDED, None
        return retry_or_fail(doc, attempt, statuses[pos])

    return decide


def finish_chunk(doc: dict, chunk_id: str, statuses: Mapping[int, int | None]) -> Settled | None:
    """The chunk's worker reports the exit status of each task it ran to its end (`statuses`).

    A task whose cancel was recorded before this report ends CANCELLED whatever
    it returned (whoever writes first is the truth: `qdel` answered 0 for it).
    A task with no status (the worker stopped before it, or stopped it) goes
    back untouched (BACK): no attempt used up, run by whoever claims it next.
    None if the chunk was settled already (its worker was taken for lost).
    """
    chunk = doc["chunks"].get(chunk_id)
    if chunk is None:
        return None
    return settle(doc, chunk_id, _results_verdict(doc, chunk["attempt"], statuses))


def record_progress(doc: dict, chunk_id: str, upto: int, statuses: Mapping[int, int | None],
                    now: float) -> Settled | None:
    """A heartbeat of a chunk whose worker has got as far as position `upto`: the beat, and the tasks
    below `upto` settled as `finish_chunk` would, so that a crash later repeats only what ran since.

    It settles the chunk's positions below `upto` up to the first one that has
    no result and is not cancelled, and never the chunk's last position (its
    worker's final report settles that, and ends the chunk). None if the chunk
    is no longer in flight.
    """
    chunk = doc["chunks"].get(chunk_id)
    if chunk is None:
        return None
    spec = arrays.parse_array(doc["array"])
    decide = _results_verdict(doc, chunk["attempt"], statuses)
    positions = chunk_positions(chunk)
    stop = min(upto, positions[-1]) if positions else chunk["lo"]
    for pos in positions:
        if pos >= stop or decide(pos, str(spec.index_at(pos)))[0] == BACK:
            stop = min(stop, pos)
            break
    settled = settle(doc, chunk_id, decide, upto=stop)
    settled.change.set["beats"] = {**doc["beats"], chunk_id: now}
    return settled


def lose_chunk(doc: dict, chunk_id: str, status: int, retry: bool = True) -> Settled | None:
    """The chunk's worker is gone: its tasks run again as they were (BACK, at their attempt: an array
    is rerunnable, and a lost worker uses up no retry), except a task lost exits.MAX_RUNS times, which
    fails with `status`, as all do without `retry` (dead-lettered work); cancelled tasks end cancelled.
    Losses are counted per task (`lost_tasks`: run_count counts them). None if the chunk is no longer
    in flight."""
    chunk = doc["chunks"].get(chunk_id)
    if chunk is None:
        return None
    losses = dict(doc.get("lost_tasks") or {})  # index -> times its chunk was lost

    def decide(pos: int, index: str) -> Verdict:
        if is_cancelled(doc, index):
            return CANCELLED, None
        if not retry:
            return FAILED, status
        losses[index] = losses.get(index, 0) + 1
        if exits.after_lost_worker(True, losses[index]) != "rerun":
            return FAILED, status
        return BACK, chunk["attempt"]

    settled = settle(doc, chunk_id, decide)
    if retry:
        settled.change.set.update(lost_tasks=losses, lost_runs=doc.get("lost_runs", 0) + 1)
    return settled


def fail_tasks(doc: dict, item_id: str, lo: int, hi: int, attempt: int, status: int) -> Change | None:
    """Fail, with `status`, what a dead-lettered work item carried: its chunk if one ran (see `lose_chunk`),
    its task's retry (attempt > 1), or the positions of [lo, hi) never handed out. None if it carried
    nothing that is still to run (the array moved on, is held, waiting or being cancelled)."""
    if doc["state"] not in _CLAIMABLE:
        return None
    lost = lose_chunk(doc, item_id, status, retry=False)
    if lost is not None:
        return lost.change
    spec = arrays.parse_array(doc["array"])
    if attempt > 1:
        index = str(spec.index_at(lo))
        if doc["retrying"].get(index) != attempt:
            return None
        return Change(set={
            "retrying": {k: v for k, v in doc["retrying"].items() if k != index},
            "failed_tasks": {**doc["failed_tasks"], index: status},
            "pending": doc["pending"] - 1, "failed": doc["failed"] + 1,
        })
    if doc["cancel_requested"]:
        return None
    dispatched, failed = doc["dispatched"], dict(doc["failed_tasks"])
    for gap in free_ranges(doc["dispatched"], lo, hi):
        for pos in range(*gap):
            index = str(spec.index_at(pos))
            if index not in doc["cancelled_tasks"]:  # a cancelled one was counted when it was cancelled
                failed[index] = status
        dispatched = add_range(dispatched, *gap)
    newly = len(failed) - len(doc["failed_tasks"])
    if not newly:
        return None
    return Change(set={"dispatched": dispatched, "failed_tasks": failed,
                       "pending": doc["pending"] - newly, "failed": doc["failed"] + newly})


def cancel_tasks(doc: dict, reason: str, index: int | None = None) -> Change | None:
    """qdel of the array (`index` None) or of one task. None if there is nothing left to cancel.

    Tasks not running are cancelled at once (counted now); running ones are
    marked, and their worker stops them at its next heartbeat; their chunk
    settles them as cancelled, whatever they return. A whole array keeps
    `cancel_requested`, so that nothing of it is handed out again.
    """
    if JobState(doc["state"]).final:
        return None
    if index is None:
        if doc["cancel_requested"]:
            return None
        return Change(set={
            "cancel_requested": True,
            "reason": reason,
            "retrying": {},
            "cancelled_tasks": {**doc["cancelled_tasks"], **{i: True for i in doc["retrying"]}},
            "cancelled": doc["cancelled"] + doc["pending"],
            "pending": 0,
        })
    spec = arrays.parse_array(doc["array"])
    pos, key = spec.position_of(index), str(index)
    if pos is None:  # not a task of this array: nothing of it to cancel
        return None
    state = task_state(doc, spec, pos)["state"]
    if JobState(state).final:
        return None
    change = Change(set={
        "cancelled_tasks": {**doc["cancelled_tasks"], key: True},
        "retrying": {k: v for k, v in doc["retrying"].items() if k != key},
    })
    if state != JobState.RUNNING.value:
        change.set.update(pending=doc["pending"] - 1, cancelled=doc["cancelled"] + 1)
    return change


# ---- what follows from the document -------------------------------------------------------------

def running_chunk(doc: dict, pos: int) -> dict | None:
    """The chunk running task `pos`, if one is."""
    for chunk in doc["chunks"].values():
        if chunk["lo"] <= pos < chunk["hi"] and pos not in chunk.get("skip", ()):
            return chunk
    return None


def task_state(doc: dict, spec: arrays.ArraySpec, pos: int) -> dict:
    """One task's row for `qstat -t`: index, state, exit status, attempt."""
    index = spec.index_at(pos)
    key = str(index)
    row = {"index": index, "state": JobState.SUCCEEDED.value, "exit_status": 0, "attempt": 1}
    chunk = running_chunk(doc, pos)
    if key in doc["failed_tasks"]:
        row.update(state=JobState.FAILED.value, exit_status=doc["failed_tasks"][key])
    elif key in doc["cancelled_tasks"] and chunk is None:
        row.update(state=JobState.CANCELLED.value, exit_status=None)
    elif chunk is not None:  # cancelled or not, it runs until its worker stops it and settles it
        row.update(state=JobState.RUNNING.value, exit_status=None, attempt=chunk["attempt"])
    elif key in doc["retrying"]:
        row.update(state=JobState.QUEUED.value, exit_status=None, attempt=doc["retrying"][key])
    elif not covered(doc["dispatched"], pos):
        cancelled = doc["cancel_requested"] or doc["state"] == JobState.CANCELLED.value
        row.update(state=(JobState.CANCELLED if cancelled else JobState.QUEUED).value, exit_status=None)
    return row


def derived_fields(doc: dict) -> dict:
    """State, exit status and finish time that follow from an array's counters.

    An array whose cancel was accepted ends CANCELLED: that cancel counted at
    least one task (every task not final then), so this is what its counters
    say too, unless a task failed.
    """
    counts = {k: doc[k] for k in ("pending", "running", "succeeded", "failed", "cancelled")}
    state = arrays.array_state(**counts)
    if doc["state"] in (JobState.HELD.value, JobState.WAITING.value) and not doc["running"] and doc["pending"]:
        state = JobState(doc["state"])
    if state.final and doc["cancel_requested"]:
        state = JobState.CANCELLED  # qdel of the array was accepted: it ends CANCELLED, as a job would
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

"""Array tasks kept compactly on the array's one job document, and the one owner of their bookkeeping.

Per task the document keeps only what is not implied: ranges of positions
handed out at least once (`dispatched`), chunks in flight (`chunks`), and
task maps (`TaskMap`: runs of positions, page by page) of the tasks that
failed, were cancelled, wait for a retry or were lost with their worker, so
that a million tasks that all failed fit (docs/architecture.md §3.3). A
chunk's heartbeats are not in the document (`JobStore.beat`). Everything else
about a task is derived here.

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
- `rerun_tasks`: qrerun of an unfinished array's failed and cancelled tasks.
- `retry_or_fail` and `settle`, which the others share: `settle` is the one
  place tasks leave a chunk, so the counters always add up to the array's size.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

from hyperbatch.core import arrays, exits
from hyperbatch.core.errors import StaleTransition
from hyperbatch.core.model import Change, Expect, apply, is_array
from hyperbatch.core.ports import JobStore
from hyperbatch.core.states import JobState

MAX_RETRIES_ON_CONFLICT = 100
BEAT_KEPT_SECONDS = 86400  # a chunk's beat this old is long past any lease: a store may forget it (JobStore.beat)

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


# ---- task maps: position -> small integer, compactly --------------------------------------------

PAGE_SIZE = 16384  # positions per page of a task map: a page's text stays under about 200 KB however its tasks end

# The array document's task maps (position -> value), each {page number: runs}: tasks that failed (exit
# status), were cancelled (1), wait for a retry (its attempt), and were lost with their worker (times).
FAILED_MAP, CANCELLED_MAP, RETRY_MAP, LOST_MAP = "task_failed", "task_cancelled", "task_retry", "task_lost"
TASK_MAPS = (FAILED_MAP, CANCELLED_MAP, RETRY_MAP, LOST_MAP)


def _lo(run: list[int]) -> int:
    return run[0]


def decode_runs(text: str) -> list[list[int]]:
    """A page's text as runs [lo, hi, value] (offsets in the page, hi exclusive), sorted.

    The text is runs separated by commas: `a` or `a-b` (inclusive), each followed by `=v` when its
    value differs from the run before it (the first run's value is 1 unless given): `3-7,9,12=2`
    is offsets 3 to 7 and 9 with value 1, and 12 with value 2.
    """
    runs: list[list[int]] = []
    value = 1
    for part in text.split(",") if text else ():
        span, _, given = part.partition("=")
        if given:
            value = int(given)
        a, _, b = span.partition("-")
        runs.append([int(a), int(b or a) + 1, value])
    return runs


def encode_runs(runs: list[list[int]]) -> str:
    parts, value = [], 1
    for lo, hi, v in runs:
        span = str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}"
        parts.append(span if v == value else f"{span}={v}")
        value = v
    return ",".join(parts)


class TaskMap:
    """Position -> small integer for some of an array's tasks, as the document keeps it: per page of
    PAGE_SIZE positions, one text of runs (`decode_runs`), so a million tasks that fail alike take a few
    bytes, and the worst case (every other task failing differently) a bounded text per page.

    Pages are decoded when first touched and re-encoded only if changed (`write`), so a change to
    a few tasks writes a few pages (the DynamoDB store keeps a large page in an item of its own).
    """

    def __init__(self, pages: Mapping[str, str] | None):
        self._text = dict(pages or {})
        self._runs: dict[int, list[list[int]]] = {}
        self._dirty: set[int] = set()

    def _page(self, page: int) -> list[list[int]]:
        runs = self._runs.get(page)
        if runs is None:
            runs = self._runs[page] = decode_runs(self._text.get(str(page), ""))
        return runs

    def get(self, pos: int) -> int | None:
        runs = self._page(pos // PAGE_SIZE)
        off = pos % PAGE_SIZE
        i = bisect.bisect_right(runs, off, key=_lo) - 1
        return runs[i][2] if i >= 0 and off < runs[i][1] else None

    def __contains__(self, pos: int) -> bool:
        return self.get(pos) is not None

    def set(self, pos: int, value: int | None) -> None:
        self.set_range(pos, pos + 1, value)

    def set_range(self, lo: int, hi: int, value: int | None) -> None:
        """Positions [lo, hi) take `value` (None: leave the map)."""
        while lo < hi:
            page = lo // PAGE_SIZE
            base = page * PAGE_SIZE
            end = min(hi, base + PAGE_SIZE)
            self._assign(page, lo - base, end - base, value)
            lo = end

    def _assign(self, page: int, a: int, b: int, value: int | None) -> None:
        runs = self._page(page)
        start = max(0, bisect.bisect_right(runs, a, key=_lo) - 2)  # from the run before the one holding a
        stop = start
        while stop < len(runs) and runs[stop][0] <= b:  # through the run that touches b
            stop += 1
        pieces: list[list[int]] = []
        for lo, hi, v in runs[start:stop]:
            if lo < a:
                pieces.append([lo, min(hi, a), v])
            if hi > b:
                pieces.append([max(lo, b), hi, v])
        if value is not None:
            pieces.append([a, b, value])
        pieces.sort()
        merged: list[list[int]] = []
        for run in pieces:
            if merged and merged[-1][1] == run[0] and merged[-1][2] == run[2]:
                merged[-1][1] = run[1]
            else:
                merged.append(run)
        runs[start:stop] = merged
        self._dirty.add(page)

    def runs(self, lo: int = 0, hi: int | None = None) -> Iterator[tuple[int, int, int]]:
        """(lo, hi, value) runs of positions, in order, clipped to [lo, hi)."""
        pages = sorted({int(p) for p in self._text} | set(self._runs))
        for page in pages:
            base = page * PAGE_SIZE
            if (hi is not None and base >= hi) or base + PAGE_SIZE <= lo:
                continue
            for a, b, v in self._page(page):
                a, b = max(a + base, lo), b + base if hi is None else min(b + base, hi)
                if a < b:
                    yield a, b, v

    def items(self, lo: int = 0, hi: int | None = None) -> Iterator[tuple[int, int]]:
        for a, b, v in self.runs(lo, hi):
            for pos in range(a, b):
                yield pos, v

    def positions(self, lo: int, hi: int) -> frozenset[int]:
        """The positions of [lo, hi) in the map."""
        return frozenset(pos for a, b, _ in self.runs(lo, hi) for pos in range(a, b))

    def count(self) -> int:
        return sum(b - a for a, b, _ in self.runs())

    def first(self) -> tuple[int, int] | None:
        return next(self.items(), None)

    def __bool__(self) -> bool:
        return self.first() is not None

    def write(self, change: "Change", field: str) -> None:
        """Add the pages changed since this map was read to `change` (set, or removed when emptied)."""
        for page in sorted(self._dirty):
            text = encode_runs(self._runs[page])
            if text == self._text.get(str(page), ""):
                continue
            if text:
                change.map_set.setdefault(field, {})[str(page)] = text
            else:
                change.map_del.setdefault(field, []).append(str(page))

    def pages(self) -> dict[str, str]:
        """The whole map as the document keeps it."""
        out = dict(self._text)
        for page in self._dirty:
            text = encode_runs(self._runs[page])
            if text:
                out[str(page)] = text
            else:
                out.pop(str(page), None)
        return out


def task_map(doc: dict, field: str) -> TaskMap:
    return TaskMap(doc.get(field))


def by_index(doc: dict, field: str) -> dict[str, int]:
    """A task map as {task index: value} (an index as text), as the API shows failed tasks."""
    spec = arrays.parse_array(doc["array"])
    return {str(spec.index_at(pos)): v for pos, v in task_map(doc, field).items()}


def pages_by_index(spec: str, values: Mapping[str | int, int]) -> dict[str, str]:
    """The task map pages of {task index: value} (documents built by hand, in tests and tools)."""
    parsed, tm = arrays.parse_array(spec), TaskMap(None)
    for index, value in values.items():
        pos = parsed.position_of(int(index))
        if pos is None:
            raise ValueError(f"{index} is no index of {spec}")
        tm.set(pos, value)
    return tm.pages()


# ---- chunks -----------------------------------------------------------------------------------

def chunk_positions(chunk: dict) -> list[int]:
    """The positions a chunk still counts as running: [lo, hi) less those cancelled before it started.

    A chunk's `lo` moves up as its worker's heartbeats record its progress (`record_progress`).
    """
    skip = set(chunk.get("skip", ()))
    return [p for p in range(chunk["lo"], chunk["hi"]) if p not in skip]


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
    retrying = task_map(doc, RETRY_MAP)
    change = Change()
    if attempt > 1:  # a single task's retry
        if retrying.get(lo) != attempt:
            return Claim()
        start, end = lo, lo + 1
    else:
        free = first_free(doc["dispatched"], lo, hi)
        if free is None:
            return Claim()
        start, end = free
    if room == 0:
        return Claim(full=True)
    if attempt > 1:
        retrying.set(lo, None)
        retrying.write(change, RETRY_MAP)
    cancelled = task_map(doc, CANCELLED_MAP).positions(start, end)
    positions: list[int] = []
    stop = start
    while stop < end and len(positions) < room:
        if stop not in cancelled:
            positions.append(stop)
        stop += 1
    change.set["dispatched"] = add_range(doc["dispatched"], start, stop)
    if positions:
        # run_count: the most runs of a task so far, counting those whose worker was lost (lose_chunk)
        lost = task_map(doc, LOST_MAP)
        most_lost = max(lost.get(p) or 0 for p in positions)
        taken = set(positions)
        skip = [p for p in range(start, stop) if p not in taken]
        chunk = {"lo": start, "hi": stop, "attempt": attempt, "worker": worker, "started": now, "skip": skip}
        change.map_set["chunks"] = {chunk_id: chunk}
        change.set.update(
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


def settle(doc: dict, chunk_id: str, verdict: Callable[[int], Verdict], upto: int | None = None,
           maps: dict[str, TaskMap] | None = None) -> Settled:
    """Take a chunk's positions out of flight (all, or those below `upto`), each going where
    `verdict(pos)` says: SUCCEEDED, FAILED (exit status), CANCELLED, RETRY (attempt) or BACK
    (handed back untouched, at its attempt: claimable again, no attempt used up).

    The one place tasks leave a chunk: finishing, recording progress, losing and
    failing a chunk all go through here, so the counters always add up to the
    array's size. With `upto`, the chunk stays in flight from there on. `maps`:
    task maps the caller changed too (lose_chunk's losses), written with the rest.
    """
    chunk = doc["chunks"][chunk_id]
    maps = dict(maps or {})
    for name in (FAILED_MAP, CANCELLED_MAP, RETRY_MAP):
        maps.setdefault(name, task_map(doc, name))
    failed, cancelled, retrying = maps[FAILED_MAP], maps[CANCELLED_MAP], maps[RETRY_MAP]
    dispatched = doc["dispatched"]
    counts = dict.fromkeys(("succeeded", "failed", "cancelled", "pending"), 0)
    out = Settled(Change())
    positions = [p for p in chunk_positions(chunk) if upto is None or p < upto]
    for pos in positions:
        kind, value = verdict(pos)
        if kind == SUCCEEDED:
            counts["succeeded"] += 1
        elif kind == FAILED:
            failed.set(pos, int(value))  # type: ignore[call-overload]
            counts["failed"] += 1
        elif kind == CANCELLED:
            cancelled.set(pos, 1)
            counts["cancelled"] += 1
        elif kind == RETRY:
            retrying.set(pos, int(value))  # type: ignore[call-overload]
            out.retries.append(pos)
            counts["pending"] += 1
        elif kind == BACK:
            if value == 1:
                dispatched = remove_range(dispatched, pos, pos + 1)  # free again: sent as never handed out
            else:
                retrying.set(pos, int(value))  # type: ignore[call-overload]  # due again at the same attempt
            out.back.append(pos)
            counts["pending"] += 1
        else:
            raise ValueError(f"unknown verdict {kind!r}")
    change = out.change
    if upto is not None and upto < chunk["hi"]:
        change.map_set["chunks"] = {chunk_id: {**chunk, "lo": max(chunk["lo"], upto),
                                               "skip": [p for p in chunk.get("skip", ()) if p >= upto]}}
    else:
        change.map_del["chunks"] = [chunk_id]
    for name, tm in maps.items():
        tm.write(change, name)
    change.set.update(dispatched=dispatched, running=doc["running"] - len(positions),
                      **{key: doc[key] + n for key, n in counts.items()})
    return out


def retry_or_fail(doc: dict, attempt: int, status: int | None) -> Verdict:
    """A task that ended with `status` != 0 at `attempt`: retried while attempts are left, failed after."""
    if attempt < doc["max_attempts"]:
        return RETRY, attempt + 1
    return FAILED, status


def _results_verdict(doc: dict, chunk: dict, statuses: Mapping[int, int | None]):
    """Verdicts for a chunk's reported results: pos -> exit status of each task run to its end."""
    attempt = chunk["attempt"]
    cancelled = task_map(doc, CANCELLED_MAP).positions(chunk["lo"], chunk["hi"])

    def decide(pos: int) -> Verdict:
        if doc["cancel_requested"] or pos in cancelled:
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
    return settle(doc, chunk_id, _results_verdict(doc, chunk, statuses))


def record_progress(doc: dict, chunk_id: str, upto: int, statuses: Mapping[int, int | None]) -> Settled | None:
    """A heartbeat of a chunk whose worker has got as far as position `upto`: the tasks below `upto`
    settled as `finish_chunk` would, so that a crash later repeats only what ran since.

    It settles the chunk's positions below `upto` up to the first one that has
    no result and is not cancelled, and never the chunk's last position (its
    worker's final report settles that, and ends the chunk). None if the chunk
    is no longer in flight.
    """
    chunk = doc["chunks"].get(chunk_id)
    if chunk is None:
        return None
    decide = _results_verdict(doc, chunk, statuses)
    positions = chunk_positions(chunk)
    stop = min(upto, positions[-1]) if positions else chunk["lo"]
    for pos in positions:
        if pos >= stop or decide(pos)[0] == BACK:
            stop = min(stop, pos)
            break
    return settle(doc, chunk_id, decide, upto=stop)


def lose_chunk(doc: dict, chunk_id: str, status: int, retry: bool = True) -> Settled | None:
    """The chunk's worker is gone: its tasks run again as they were (BACK, at their attempt: an array
    is rerunnable, and a lost worker uses up no retry), except a task lost exits.MAX_RUNS times, which
    fails with `status`, as all do without `retry` (dead-lettered work); cancelled tasks end cancelled.
    Losses are counted per task (LOST_MAP: run_count counts them). None if the chunk is no longer
    in flight."""
    chunk = doc["chunks"].get(chunk_id)
    if chunk is None:
        return None
    losses = task_map(doc, LOST_MAP)  # position -> times its chunk was lost
    cancelled = task_map(doc, CANCELLED_MAP).positions(chunk["lo"], chunk["hi"])

    def decide(pos: int) -> Verdict:
        if doc["cancel_requested"] or pos in cancelled:
            return CANCELLED, None
        if not retry:
            return FAILED, status
        lost = (losses.get(pos) or 0) + 1
        losses.set(pos, lost)
        if exits.after_lost_worker(True, lost) != "rerun":
            return FAILED, status
        return BACK, chunk["attempt"]

    settled = settle(doc, chunk_id, decide, maps={LOST_MAP: losses})
    if retry:
        settled.change.set["lost_runs"] = doc.get("lost_runs", 0) + 1
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
    failed = task_map(doc, FAILED_MAP)
    change = Change()
    if attempt > 1:
        retrying = task_map(doc, RETRY_MAP)
        if retrying.get(lo) != attempt:
            return None
        retrying.set(lo, None)
        failed.set(lo, status)
        retrying.write(change, RETRY_MAP)
        failed.write(change, FAILED_MAP)
        change.set.update(pending=doc["pending"] - 1, failed=doc["failed"] + 1)
        return change
    if doc["cancel_requested"]:
        return None
    dispatched, newly = doc["dispatched"], 0
    cancelled = task_map(doc, CANCELLED_MAP)
    for gap in free_ranges(doc["dispatched"], lo, hi):
        start = gap[0]
        for a, b, _ in [*cancelled.runs(*gap), (gap[1], gap[1], 0)]:  # a cancelled one was counted when cancelled
            failed.set_range(start, a, status)
            newly += max(0, a - start)
            start = b
        dispatched = add_range(dispatched, *gap)
    if not newly:
        return None
    failed.write(change, FAILED_MAP)
    change.set.update(dispatched=dispatched, pending=doc["pending"] - newly, failed=doc["failed"] + newly)
    return change


def cancel_tasks(doc: dict, reason: str, index: int | None = None) -> Change | None:
    """qdel of the array (`index` None) or of one task. None if there is nothing left to cancel.

    Tasks not running are cancelled at once (counted now); running ones are
    marked, and their worker stops them at its next heartbeat; their chunk
    settles them as cancelled, whatever they return. A whole array keeps
    `cancel_requested`, so that nothing of it is handed out again.
    """
    if JobState(doc["state"]).final:
        return None
    cancelled, retrying = task_map(doc, CANCELLED_MAP), task_map(doc, RETRY_MAP)
    change = Change()
    if index is None:
        if doc["cancel_requested"]:
            return None
        for a, b, _ in list(retrying.runs()):
            cancelled.set_range(a, b, 1)
            retrying.set_range(a, b, None)
        change.set.update(cancel_requested=True, reason=reason, cancelled=doc["cancelled"] + doc["pending"], pending=0)
    else:
        spec = arrays.parse_array(doc["array"])
        pos = spec.position_of(index)
        if pos is None:  # not a task of this array: nothing of it to cancel
            return None
        state = task_state(doc, spec, pos)["state"]
        if JobState(state).final:
            return None
        cancelled.set(pos, 1)
        retrying.set(pos, None)
        if state != JobState.RUNNING.value:
            change.set.update(pending=doc["pending"] - 1, cancelled=doc["cancelled"] + 1)
    cancelled.write(change, CANCELLED_MAP)
    retrying.write(change, RETRY_MAP)
    return change


def rerun_tasks(doc: dict, keys: list[int]) -> Change | None:
    """Failed and cancelled tasks (positions `keys`, none of them running) back to pending (qrerun of an
    unfinished array): those handed out before at a new attempt (sent as retries), the others as
    positions never handed out. None if there are none."""
    if not keys:
        return None
    failed, cancelled, retrying = (task_map(doc, name) for name in (FAILED_MAP, CANCELLED_MAP, RETRY_MAP))
    attempt = max([doc["attempt"], doc["run_count"], *(v for _, _, v in retrying.runs())]) + 1
    for pos in keys:
        failed.set(pos, None)
        cancelled.set(pos, None)
        if covered(doc["dispatched"], pos):
            retrying.set(pos, attempt)
    change = Change()
    for name, tm in ((FAILED_MAP, failed), (CANCELLED_MAP, cancelled), (RETRY_MAP, retrying)):
        tm.write(change, name)
    n_failed, n_cancelled = failed.count(), cancelled.count()
    change.set.update(failed=n_failed, cancelled=n_cancelled,
                      pending=doc["total"] - doc["succeeded"] - doc["running"] - n_failed - n_cancelled)
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
    row = {"index": spec.index_at(pos), "state": JobState.SUCCEEDED.value, "exit_status": 0, "attempt": 1}
    chunk = running_chunk(doc, pos)
    status = task_map(doc, FAILED_MAP).get(pos)
    retry = task_map(doc, RETRY_MAP).get(pos)
    if status is not None:
        row.update(state=JobState.FAILED.value, exit_status=status)
    elif pos in task_map(doc, CANCELLED_MAP) and chunk is None:
        row.update(state=JobState.CANCELLED.value, exit_status=None)
    elif chunk is not None:  # cancelled or not, it runs until its worker stops it and settles it
        row.update(state=JobState.RUNNING.value, exit_status=None, attempt=chunk["attempt"])
    elif retry is not None:
        row.update(state=JobState.QUEUED.value, exit_status=None, attempt=retry)
    elif not covered(doc["dispatched"], pos):
        cancelled = doc["cancel_requested"] or doc["state"] == JobState.CANCELLED.value
        row.update(state=(JobState.CANCELLED if cancelled else JobState.QUEUED).value, exit_status=None)
    return row


def running_positions(doc: dict) -> dict[int, dict]:
    """Every task that runs now: its position -> the chunk running it."""
    return {pos: chunk for chunk in doc["chunks"].values() for pos in chunk_positions(chunk)}


def moved_tasks(old: dict, new: dict) -> tuple[list[tuple[int, dict]], list[tuple[int, dict]]]:
    """The tasks a change of an array's document from `old` to `new` started, and those whose run it
    ended, each with its chunk (started) or its `task_state` row after the change (ended: SUCCEEDED,
    FAILED, CANCELLED, or QUEUED when it goes back for a retry), in position order.

    A chunk's tasks leave it only through `settle`, and no change both settles and claims a task, so
    the difference of the two documents' running tasks is exactly what the change did.
    """
    before, after = running_positions(old), running_positions(new)
    started = [(pos, after[pos]) for pos in sorted(after.keys() - before.keys())]
    ended_positions = sorted(before.keys() - after.keys())
    if not ended_positions:
        return started, []
    spec = arrays.parse_array(new["array"])
    return started, [(pos, task_state(new, spec, pos)) for pos in ended_positions]


REASON_RUNS = 20  # runs of failed indices a final array's reason names at most, so that it stays short


def format_runs(spec: arrays.ArraySpec, runs: Iterator[tuple[int, int, int]], most: int) -> str:
    """Indices of position runs as PBS writes ranges (`1-3,7,9-15:2`), the first `most` runs, then `...`."""
    merged: list[list[int]] = []
    for a, b, _ in runs:
        if merged and merged[-1][1] == a:
            merged[-1][1] = b
        elif len(merged) == most:
            return ",".join(_span(spec, lo, hi) for lo, hi in merged) + ",..."
        else:
            merged.append([a, b])
    return ",".join(_span(spec, lo, hi) for lo, hi in merged)


def _span(spec: arrays.ArraySpec, lo: int, hi: int) -> str:
    if hi == lo + 1:
        return str(spec.index_at(lo))
    if hi == lo + 2 and spec.step != 1:
        return f"{spec.index_at(lo)},{spec.index_at(lo + 1)}"
    step = f":{spec.step}" if spec.step != 1 else ""
    return f"{spec.index_at(lo)}-{spec.index_at(hi - 1)}{step}"


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
        failed = task_map(doc, FAILED_MAP)
        first = failed.first()
        out["exit_status"] = 0 if state == JobState.SUCCEEDED else (first[1] if first else None)
        if first and state == JobState.FAILED:
            shown = format_runs(arrays.parse_array(doc["array"]), failed.runs(), REASON_RUNS)
            out["reason"] = f"{doc['failed']} of {doc['total']} tasks failed (indices {shown})"
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

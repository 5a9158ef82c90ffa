"""Array jobs: the range spec (`1-100`, `0-10:2`, `1-1000%10`), compact index lists, derived state.

An array is one job record plus counters, never one record per task, so the
helpers here map between task positions (0..size-1) and array indices.
"""

from __future__ import annotations

from collections import namedtuple

from hyperbatch.core.patterns import lazy
from hyperbatch.core.errors import SpecError
from hyperbatch.core.states import JobState

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: qsub reads this module, and importing typing costs milliseconds
if TYPE_CHECKING:
    from typing import Iterable, Iterator

MAX_ARRAY_SIZE = 10_000_000

_SPEC_RE = lazy(r"([0-9]{1,18})(?:-([0-9]{1,18})(?::([0-9]{1,18}))?)?(?:%([0-9]{1,18}))?")
_HINT = "use START-END[:STEP][%LIMIT], as in 1-100, 0-10:2 or 1-1000%10"


class ArraySpec(namedtuple("ArraySpec", "start end step limit", defaults=(1, None))):
    """Indices start, start+step, ... up to end (inclusive); `limit` caps tasks running at once.

    A named tuple, not a dataclass: qsub reads this module on every start (bench/latency.py)."""

    __slots__ = ()

    def __new__(cls, start: int, end: int, step: int = 1, limit: int | None = None) -> "ArraySpec":
        self = super().__new__(cls, start, end, step, limit)
        self._check()
        return self

    def _check(self) -> None:
        where = f"array range '{self}'"
        if self.start < 0:
            raise SpecError(f"{where}: indices must be zero or more, as in 0-99")
        if self.end < self.start:
            raise SpecError(f"{where}: the end must not be below the start, as in 1-100")
        if self.step < 1:
            raise SpecError(f"{where}: the step must be 1 or more, as in 0-10:2")
        if self.limit is not None and self.limit < 1:
            raise SpecError(f"{where}: the limit of tasks running at once must be 1 or more, as in 1-1000%10")
        if self.size > MAX_ARRAY_SIZE:
            raise SpecError(f"{where}: {self.size} tasks is more than the maximum of {MAX_ARRAY_SIZE}")

    @property
    def size(self) -> int:
        """Number of tasks."""
        return (self.end - self.start) // self.step + 1

    def index_at(self, pos: int) -> int:
        """Array index of task position `pos` (0..size-1); IndexError outside that."""
        if not 0 <= pos < self.size:
            raise IndexError(f"task position {pos} is outside 0..{self.size - 1}")
        return self.start + pos * self.step

    def position_of(self, index: int) -> int | None:
        """Task position of array index `index`, or None when the range does not contain it."""
        offset = index - self.start
        if index > self.end or offset < 0 or offset % self.step:
            return None
        return offset // self.step

    def indices(self) -> Iterator[int]:
        return iter(range(self.start, self.end + 1, self.step))

    def __str__(self) -> str:
        if self.start == self.end and self.step == 1:
            text = str(self.start)
        else:
            text = f"{self.start}-{self.end}" + (f":{self.step}" if self.step != 1 else "")
        return text + (f"%{self.limit}" if self.limit is not None else "")


def parse_array(text: str) -> ArraySpec:
    """Parse `1-100`, `0-10:2`, `1-1000%10`, `7` (one task) or combinations such as `0-10:2%3`."""
    stripped = text.strip()
    match = _SPEC_RE.fullmatch(stripped)
    if match is None:
        if stripped.startswith("-"):
            raise SpecError(f"array range '{stripped}': indices must be zero or more, as in 0-99")
        raise SpecError(f"array range '{stripped}': {_HINT}")
    start, end, step, limit = match.groups()
    return ArraySpec(
        start=int(start),
        end=int(end) if end is not None else int(start),
        step=int(step) if step is not None else 1,
        limit=int(limit) if limit is not None else None,
    )


def array_state(pending: int, running: int, succeeded: int, failed: int, cancelled: int) -> JobState:
    """State of a released array from its task counters, the HyperQueue way."""
    if running:
        return JobState.RUNNING
    if pending:
        return JobState.QUEUED
    if failed:
        return JobState.FAILED
    if cancelled:
        return JobState.CANCELLED
    return JobState.SUCCEEDED


def format_indices(indices: Iterable[int]) -> str:
    """Compact text for a set of indices: `1-3,7,9-10` (sorted, duplicates dropped)."""
    runs: list[list[int]] = []
    for index in sorted(set(indices)):
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)

"""How far an array has come, how fast it goes and when it will end: the view model that `hyper top`
and `qsub --wait` share, pure (no I/O, no rich), so its rules have unit tests of their own.

An array's counts come from its API view (`array`: pending, running, succeeded, failed, cancelled,
total). The API keeps no history of them, so the rate is measured here, from the samples one
command takes as it polls: finished tasks per second over the last `WINDOW` seconds, and the time
left is what remains at that rate. Nothing is shown until two samples apart in time exist, rather
than a guess.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds, and only checkers need it
if TYPE_CHECKING:
    from typing import Any, Iterable, Mapping

WINDOW = 60.0  # seconds of samples the rate is measured over: long enough to smooth, short enough to follow


@dataclass(frozen=True)
class Counts:
    """An array's tasks by what became of them."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    running: int = 0
    pending: int = 0

    @classmethod
    def of(cls, job: Mapping[str, Any]) -> Counts | None:
        """The counts of an array's API view; None for a job that is no array."""
        array = job.get("array")
        if not isinstance(array, dict):
            return None
        number = {k: _count(array.get(k)) for k in ("succeeded", "failed", "cancelled", "running", "pending")}
        return cls(total=_count(array.get("total")), **number)

    @property
    def finished(self) -> int:
        """Tasks that will not run again: succeeded, failed or cancelled (PBS's Expired)."""
        return self.succeeded + self.failed + self.cancelled

    @property
    def unsuccessful(self) -> int:
        return self.failed + self.cancelled

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.finished)

    @property
    def fraction(self) -> float:
        return self.finished / self.total if self.total else 0.0

    def done_text(self) -> str:
        """`412/1000`: finished of all."""
        return f"{self.finished}/{self.total}"


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class Rate:
    """Finished tasks per second, from samples (time, finished) taken as a command polls."""

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, when: float, finished: int) -> None:
        """Record a sample; samples older than the window go, but one older sample is kept so that the
        window is always spanned once it can be."""
        if self.samples and when <= self.samples[-1][0]:
            return  # a clock that did not move gives no rate
        if self.samples and finished < self.samples[-1][1]:
            self.samples.clear()  # fewer finished than before: tasks re-run (qrerun); measure afresh
        self.samples.append((when, finished))
        while len(self.samples) > 2 and self.samples[1][0] <= when - self.window:
            self.samples.popleft()

    def per_second(self) -> float | None:
        """The rate over the samples held; None before two samples."""
        if len(self.samples) < 2:
            return None
        (t0, f0), (t1, f1) = self.samples[0], self.samples[-1]
        return (f1 - f0) / (t1 - t0)

    def eta(self, remaining: int) -> float | None:
        """Seconds until `remaining` more tasks finish at the current rate; 0 when none remain; None
        while the rate is unknown or nothing finishes."""
        if remaining <= 0:
            return 0.0
        rate = self.per_second()
        return remaining / rate if rate else None


def rate_text(rate: float | None) -> str:
    """`12.5/s`, `3.0/min` below one a second, `-` while unknown."""
    if rate is None:
        return "-"
    if rate and rate < 1:
        return f"{rate * 60:.1f}/min"
    return f"{rate:.1f}/s"


def duration_text(seconds: float | None) -> str:
    """`42s`, `3m05s`, `2h07m`, `-` while unknown."""
    if seconds is None:
        return "-"
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    return f"{total // 3600}h{total % 3600 // 60:02d}m"


class Tracker:
    """The rates of the arrays a command watches, and when it first saw each failure, by id; ids not
    seen in a sample are forgotten, so a long watch does not grow."""

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self.rates: dict[str, Rate] = {}
        self.first_seen: dict[str, float] = {}

    def observe(self, when: float, arrays: Iterable[Mapping[str, Any]]) -> None:
        seen = set()
        for job in arrays:
            counts = Counts.of(job)
            if counts is None:
                continue
            key = str(job.get("id"))
            seen.add(key)
            self.rates.setdefault(key, Rate(self.window)).add(when, counts.finished)
        for key in set(self.rates) - seen:
            del self.rates[key]

    def rate(self, job_id: str) -> Rate:
        return self.rates.get(job_id) or Rate(self.window)

    def seen_at(self, key: str, when: float) -> float:
        """When `key` (a failure) was first seen; `when` if it is new."""
        return self.first_seen.setdefault(key, when)

    def forget_except(self, keys: Iterable[str]) -> None:
        keep = set(keys)
        self.first_seen = {k: v for k, v in self.first_seen.items() if k in keep}


@dataclass(frozen=True)
class Filters:
    """What the view shows: one user's jobs, one queue's, or everyone's and every queue's (None)."""

    user: str | None = None
    queue: str | None = None

    def admits(self, job: Mapping[str, Any]) -> bool:
        return (self.user is None or owner_of(job) == self.user) and (self.queue is None or job.get("queue") == self.queue)

    def text(self) -> str:
        return f"user {short_user(self.user) if self.user else 'all'} · queue {self.queue or 'all'}"


def owner_of(job: Mapping[str, Any]) -> str:
    """A job's owner as the API's `owner=` names it: the login name locally (`alice`, without a
    `@host`), the IAM principal's ARN on AWS."""
    owner = str(job.get("owner") or "")
    return owner if owner.startswith("arn:") else owner.split("@", 1)[0]


def short_user(owner: str) -> str:
    """An owner as a person reads it: the ARN's last part on AWS (`user/alice`: alice; an assumed role's
    session name), else the login name."""
    return owner.rsplit("/", 1)[-1] if owner.startswith("arn:") else owner.split("@", 1)[0]


def cycle(current: str | None, choices: Iterable[str]) -> str | None:
    """The next filter value a key press gives: all (None), then each choice in order, then all again."""
    ordered = [None, *sorted(set(choices) | ({current} if current else set()))]
    return ordered[(ordered.index(current) + 1) % len(ordered)]

"""Job states and the transitions allowed between them (ARCHITECTURE.md §3)."""

from __future__ import annotations

from enum import Enum


class JobState(str, Enum):
    WAITING = "WAITING"  # unmet dependencies, or an execution time (qsub -a) still to come
    HELD = "HELD"  # qhold or qsub -h; qrls releases
    QUEUED = "QUEUED"  # runnable, waiting for a worker
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value

    @property
    def final(self) -> bool:
        return self in FINAL

    @property
    def letter(self) -> str:
        """The one-letter PBS state shown in qstat's S column."""
        return LETTERS[self]


FINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
ACTIVE = frozenset(JobState) - FINAL
LETTERS = {
    JobState.WAITING: "W",
    JobState.HELD: "H",
    JobState.QUEUED: "Q",
    JobState.RUNNING: "R",
    JobState.SUCCEEDED: "F",
    JobState.FAILED: "F",
    JobState.CANCELLED: "F",
}

# Every allowed move; anything else is refused. RUNNING -> QUEUED is a rerun (a non-zero exit
# with retries left, or a lost worker of a rerunnable job) and bumps the attempt; RUNNING -> HELD
# is a job whose worker was lost once too often (PBS holds it); WAITING is also a job deferred
# with qsub -a until its execution time.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.WAITING: frozenset({JobState.QUEUED, JobState.HELD, JobState.CANCELLED}),
    JobState.HELD: frozenset({JobState.QUEUED, JobState.WAITING, JobState.CANCELLED}),
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.HELD, JobState.CANCELLED}),
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.FAILED, JobState.QUEUED, JobState.HELD, JobState.CANCELLED}
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def allowed(current: JobState, new: JobState) -> bool:
    return new in TRANSITIONS[current]

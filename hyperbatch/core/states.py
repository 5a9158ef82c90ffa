"""Job states and the transitions allowed between them (docs/architecture.md §3.2)."""

from __future__ import annotations

from enum import Enum


class JobState(str, Enum):
    WAITING = "WAITING"  # unmet dependencies
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


FINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
ACTIVE = frozenset(JobState) - FINAL
# Every allowed move; anything else is refused. RUNNING -> QUEUED is a retry
# (exit != 0, walltime or a lost worker with attempts left) and bumps the attempt.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.WAITING: frozenset({JobState.QUEUED, JobState.HELD, JobState.CANCELLED}),
    JobState.HELD: frozenset({JobState.QUEUED, JobState.WAITING, JobState.CANCELLED}),
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.HELD, JobState.CANCELLED}),
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.FAILED, JobState.QUEUED, JobState.CANCELLED}
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def allowed(current: JobState, new: JobState) -> bool:
    return new in TRANSITIONS[current]

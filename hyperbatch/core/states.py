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

"""Job states and the transitions allowed between them (ARCHITECTURE.md §3)."""

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

    @property
    def letter(self) -> str:
        """The one-letter PBS state shown in qstat's S column."""
        return LETTERS[self]


FINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
ACTIVE = frozenset(JobState) - FINAL
# PBS's letters (OpenPBS job.h): a job waiting on dependencies is held (H, substate 22); W is
# PBS's wait for an execution time (qsub -a); finished jobs are F (shown with qstat -x).
LETTERS = {
    JobState.WAITING: "H",
    JobState.HELD: "H",
    JobState.QUEUED: "Q",
    JobState.RUNNING: "R",
    JobState.SUCCEEDED: "F",
    JobState.FAILED: "F",
    JobState.CANCELLED: "F",
}
# PBS substates (job.h JOB_SUBSTATE_*): qstat -f prints them.
SUBSTATES = {
    JobState.WAITING: 22,  # JOB_SUBSTATE_SYNCHOLD / dependency hold
    JobState.HELD: 20,
    JobState.QUEUED: 10,
    JobState.RUNNING: 42,
    JobState.SUCCEEDED: 92,  # JOB_SUBSTATE_FINISHED
    JobState.FAILED: 93,  # JOB_SUBSTATE_FAILED
    JobState.CANCELLED: 91,  # JOB_SUBSTATE_TERMINATED
}
SUBSTATE_BEGUN = 70  # an array with a subjob started
SUBSTATE_WAITING = 30  # waiting for its execution time


def pbs_state(doc: dict) -> tuple[str, int]:
    """The PBS state letter and substate of a job document (or its API view).

    An array is B once one of its tasks has started and until it finishes; a
    job waiting for its execution time (`execution_time`, qsub -a) is W.
    """
    state = JobState(doc["state"])
    if state not in FINAL and doc.get("array") is not None and doc.get("started_at") is not None:
        return "B", SUBSTATE_BEGUN
    if state == JobState.WAITING and doc.get("execution_time"):
        return "W", SUBSTATE_WAITING
    return LETTERS[state], SUBSTATES[state]


def task_letter(state: str) -> str:
    """An array task's letter: Q, R or H while it waits or runs, X once it finished or was deleted."""
    job_state = JobState(state)
    return "X" if job_state in FINAL else LETTERS[job_state]

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

"""Job states and the transitions allowed between them (docs/architecture.md §3.2).

The table below is the rule, not a description of it: every write that
changes a job's state takes its expectation from it (`hyperbatch.core.model.Expect.move`),
and both store adapters refuse a write whose expectation admits a move the
table forbids (`hyperbatch.core.model.check_write`), so a forbidden move is a
loud programming error, never a quiet state change.
"""

from __future__ import annotations

from enum import Enum

from hyperbatch.core.errors import IllegalTransition


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
SUBSTATE_RERUN = 60  # JOB_SUBSTATE_RERUN: qrerun asked, the run not yet killed (still R)
SUBSTATE_WAITING = 30  # waiting for its execution time


def pbs_state(doc: dict) -> tuple[str, int]:
    """The PBS state letter and substate of a job document (or its API view).

    An array is B once one of its tasks has started and until it finishes; a
    job waiting for its execution time (`execution_time`, qsub -a) is W. A running job that qrerun
    asked to run again stays R, in substate 60, until its worker has killed the run (as PBS shows
    it while MoM kills it), unless a qdel came since (which wins).
    """
    state = JobState(doc["state"])
    if state == JobState.RUNNING and doc.get("rerun_requested") and not doc.get("cancel_requested"):
        return LETTERS[state], SUBSTATE_RERUN
    if state not in FINAL and doc.get("array") is not None and doc.get("started_at") is not None:
        return "B", SUBSTATE_BEGUN
    if state == JobState.WAITING and doc.get("execution_time"):
        return "W", SUBSTATE_WAITING
    return LETTERS[state], SUBSTATES[state]


def task_letter(state: str) -> str:
    """An array task's letter: Q, R or H while it waits or runs, X once it finished or was deleted."""
    job_state = JobState(state)
    return "X" if job_state in FINAL else LETTERS[job_state]


# Every allowed move; anything else is refused. An array moves by the same table: its state is
# derived from its task counters (hyperbatch.core.tasks), and each derived change is checked too.
#
# WAITING -> QUEUED      its dependencies are met, and its execution time (qsub -a) has come
# WAITING -> HELD        qhold
# WAITING -> CANCELLED   qdel, or a dependency that can never be met (afterok on a failed job)
# HELD    -> WAITING     qrls: dependencies are looked at again (and at once on to QUEUED when met)
# HELD    -> QUEUED      qrls of a job with nothing to wait for
# HELD    -> CANCELLED   qdel
# QUEUED  -> RUNNING     a worker starts it (an array: starts a chunk of its tasks)
# QUEUED  -> HELD        qhold
# QUEUED  -> WAITING     qalter -W depend= gives a queued job something to wait for
# QUEUED  -> CANCELLED   qdel (an array: of every task not started)
# QUEUED  -> FAILED      the scheduler gave up starting it: its work was dead-lettered (every worker
#                        that received it crashed before it ran), or, for an array, its last tasks were
#                        (exit status -1 and the reason). A job that can never start must end with a
#                        reason, not stay queued forever; it never ran, so it never was RUNNING.
# RUNNING -> SUCCEEDED / FAILED   its run ended (any exit status ends it, as PBS Pro: a non-zero
#                        exit is not run again; FAILED also: walltime, a lost worker of a job that
#                        may not be rerun)
# RUNNING -> QUEUED      a rerun (qrerun, once the worker has killed the run; a lost worker of a
#                        rerunnable job, with reruns left; both bump the attempt), or work handed
#                        back untouched by a stopping worker; an array whose
#                        running chunks all settled with tasks left to run
# RUNNING -> HELD        a job whose worker was lost once too often (PBS holds it)
# RUNNING -> CANCELLED   qdel seen by its worker (or by whoever settles the run)
# Final states never change: a late result, a late cancel or a duplicate message finds the job final.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.WAITING: frozenset({JobState.QUEUED, JobState.HELD, JobState.CANCELLED}),
    JobState.HELD: frozenset({JobState.QUEUED, JobState.WAITING, JobState.CANCELLED}),
    JobState.QUEUED: frozenset(
        {JobState.RUNNING, JobState.HELD, JobState.WAITING, JobState.CANCELLED, JobState.FAILED}
    ),
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.FAILED, JobState.QUEUED, JobState.HELD, JobState.CANCELLED}
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def allowed(current: JobState | str, new: JobState | str) -> bool:
    return JobState(new) in TRANSITIONS[JobState(current)]


def sources(target: JobState | str) -> frozenset[JobState]:
    """Every state the table lets move to `target`."""
    target = JobState(target)
    return frozenset(state for state, targets in TRANSITIONS.items() if target in targets)


def check(current: JobState | str, new: JobState | str) -> None:
    """Raise IllegalTransition unless `current` may become `new` (staying put is no move)."""
    if JobState(current) != JobState(new) and not allowed(current, new):
        raise IllegalTransition(f"{JobState(current).value} -> {JobState(new).value} is not in the transition table")

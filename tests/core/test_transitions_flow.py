"""Every state change the scheduler, the workers and the reconciler make is a move of the transition table.

The local store appends every state change to its events table; these flows
go through submit, run, retry, loss, hold, release, dependencies, cancels and
arrays, and every (old, new) pair they produced must be in the table.
"""

from hyperbatch.core import exits
from hyperbatch.core.states import TRANSITIONS, JobState
from hyperbatch.services.dispatch import Outcome
from tests.core.conftest import ALICE


def moves(harness) -> set[tuple[str, str]]:
    return {(e.old_state, e.new_state) for _, e in harness.backend.store.events_after(0, limit=100_000)
            if e.old_state is not None}


def claim(harness, **kw):
    """The next run, past stale items (of cancelled or held jobs), which a claim acknowledges and skips."""
    for _ in range(20):
        if (run := harness.claim(**kw)) is not None:
            return run
    raise AssertionError("nothing to run")


def run_job(harness, status=0):
    harness.worker.finish_job(claim(harness), Outcome(status))
    harness.deliver()


def test_every_move_the_code_makes_is_in_the_table(harness):
    s = harness.scheduler
    # Plain jobs: success, a retry then failure, a lost worker, cancels queued and running, hold and release.
    succeeded = harness.submit()
    run_job(harness)
    retried = harness.submit(max_attempts=2)
    run_job(harness, status=1)
    run_job(harness, status=1)
    lost = harness.submit(max_attempts=2)
    claim(harness)
    harness.lose_lease()
    run_job(harness)
    queued = harness.submit()
    s.cancel(queued["id"], ALICE)
    running = harness.submit()
    run = claim(harness)
    s.cancel(running["id"], ALICE)
    harness.worker.finish_job(run, Outcome(0))
    held = harness.submit()
    s.hold(held["id"], ALICE)
    s.release(held["id"], ALICE)
    run_job(harness)
    stopping = harness.submit()
    harness.worker.give_back(claim(harness))
    run_job(harness)
    rerun = harness.submit()  # qrerun of a running job: killed by its worker, then queued again
    run = claim(harness)
    s.rerun(rerun["id"], ALICE)
    harness.worker.finish_job(run, Outcome(exits.RERUN, rerun=True))
    run_job(harness)
    # Dependencies: released, never met, held while waiting.
    parent = harness.submit(hold=True)
    child = harness.submit(depend=f"afterok:{parent['id']}")
    doomed = harness.submit(depend=f"afternotok:{parent['id']}")
    s.hold(child["id"], ALICE)
    s.release(child["id"], ALICE)
    s.release(parent["id"], ALICE)
    run_job(harness)
    harness.deliver()
    run_job(harness)
    # Arrays: chunks, a failed task's retry, a lost chunk, cancels of one task and of the whole array.
    array = harness.submit(array="1-6", max_attempts=2)
    first = claim(harness, max_tasks=2)
    harness.worker.finish_tasks(first, {p: Outcome(1) for p in first.positions})
    s.cancel(array["id"], ALICE, index=4)
    claim(harness, max_tasks=2)
    harness.lose_lease()
    while (run := harness.claim()) is not None or harness.backend.queue.backlog("batch"):
        if run is None:
            continue
        harness.worker.finish_tasks(run, {p: Outcome(0) for p in run.positions})
    cancelled_array = harness.submit(array="1-4")
    claim(harness, max_tasks=1)
    s.cancel(cancelled_array["id"], ALICE)
    harness.lose_lease()

    final = {j["id"]: harness.job(j["id"])["state"] for j in (succeeded, retried, lost, queued, running, held, stopping, rerun, child,
                                                        doomed, array, cancelled_array)}
    assert all(JobState(state).final for state in final.values()), final
    seen = moves(harness)
    assert seen, "the flows made no state change"
    outside = {(a, b) for a, b in seen if a != b and JobState(b) not in TRANSITIONS[JobState(a)]}
    assert not outside, f"moves outside the transition table: {outside}"

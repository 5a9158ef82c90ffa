"""WorkQueue contract: at-least-once delivery under leases; nothing vanishes before its ack.

Capabilities of the `backend` fixture (see conftest.py) say where the lease
table and SQS keep the contract differently; neither is checked for less
than it promises.
"""

import time

import pytest

from hyperbatch.core.ports import WorkItem


def claim(backend, worker="w1", max_tasks=100, lease=30.0, queue="batch"):
    return backend.queue.claim(queue, worker, max_tasks, lease)


def lost_items(backend):
    """Work whose lease ran out, as the recovery path finds it.

    A lease table lists it through `expired()` (the reconciler's look); SQS
    delivers it again to the next claimer, marked `redelivered`.
    """
    if backend.reports_expired:
        return backend.queue.expired(time.time())
    item = claim(backend, "w-recover")
    return [item] if item is not None and item.redelivered else []


def test_a_claimed_item_is_invisible_to_others_until_acked(backend):
    backend.queue.send("batch", "J1", 0, 1, 1)
    item = claim(backend)
    assert (item.job_id, item.lo, item.hi, item.attempt) == ("J1", 0, 1, 1)
    assert claim(backend, "w2") is None
    backend.queue.ack(item)
    assert claim(backend, "w2") is None
    assert backend.queue.expired(time.time() + 3600) == []


def test_queues_are_separate(backend):
    backend.queue.send("west", "J1", 0, 1, 1)
    assert claim(backend, queue="batch") is None
    assert claim(backend, queue="west").job_id == "J1"


def test_higher_priority_first_then_oldest(backend):
    backend.queue.send_many([("batch", "low", 0, 1, 1, 0), ("batch", "high", 0, 1, 1, 5), ("batch", "low2", 0, 1, 1, 0)])
    claimed = [claim(backend, f"w{i}").job_id for i in range(3)]
    if backend.ordered:
        assert claimed == ["high", "low", "low2"]
    else:  # SQS standard queues do not order: each item still comes exactly once
        assert sorted(claimed) == ["high", "low", "low2"]
    assert claim(backend, "w3") is None


def test_a_range_is_claimed_in_chunks(backend):
    backend.queue.send("batch", "A", 0, 10, 1)
    first = claim(backend, "w1", max_tasks=4)
    second = claim(backend, "w2", max_tasks=4)
    third = claim(backend, "w3", max_tasks=4)
    assert [(i.lo, i.hi) for i in (first, second, third)] == [(0, 4), (4, 8), (8, 10)]
    assert backend.queue.backlog("batch") == 0
    assert backend.queue.in_flight("batch") == 3


def test_backlog_counts_positions_waiting(backend):
    backend.queue.send_many([("batch", "A", 0, 10, 1, 0), ("batch", "B", 0, 1, 1, 0)])
    if backend.counts_positions:
        assert backend.queue.backlog("batch") == 11
        claim(backend, max_tasks=3)
        assert backend.queue.backlog("batch") == 8
        return
    # SQS counts messages: one per item sent (or range tail sent back), none once all are leased.
    assert backend.queue.backlog("batch") == 2
    claimed = []
    while (item := claim(backend, f"w{len(claimed)}", max_tasks=3)) is not None:
        claimed.append(item)
    assert sorted((i.job_id, i.lo, i.hi) for i in claimed) == [
        ("A", 0, 3), ("A", 3, 6), ("A", 6, 9), ("A", 9, 10), ("B", 0, 1)
    ]
    assert backend.queue.backlog("batch") == 0
    assert backend.queue.in_flight("batch") == len(claimed)


def test_an_expired_lease_is_reported_and_can_be_requeued(backend):
    backend.queue.send("batch", "J1", 0, 1, 1)
    item = claim(backend, lease=0.05)
    assert not item.redelivered
    time.sleep(0.1 + backend.time_granularity)
    expired = lost_items(backend)
    assert [(e.id, e.job_id) for e in expired] == [(item.id, "J1")]
    backend.queue.requeue(expired[0], 0, 2)
    again = claim(backend, "w2")
    assert (again.job_id, again.attempt, again.redelivered) == ("J1", 2, False)
    assert claim(backend, "w3") is None


def test_extend_keeps_a_lease_alive_and_fails_once_taken_back(backend):
    backend.queue.send("batch", "J1", 0, 1, 1)
    item = claim(backend, lease=0.2)
    assert backend.queue.extend(item, 30)
    time.sleep(0.3 + backend.time_granularity)
    assert backend.queue.expired(time.time()) == []
    assert claim(backend, "w2") is None  # still leased: not handed to anyone else
    backend.queue.requeue(item, 0, 2)
    assert not backend.queue.extend(item, 30)


def test_a_stale_ack_does_not_delete_requeued_work(backend):
    backend.queue.send("batch", "J1", 0, 1, 1)
    item = claim(backend, lease=0.01)
    time.sleep(0.05 + backend.time_granularity)
    backend.queue.requeue(lost_items(backend)[0], 0, 2)
    backend.queue.ack(item)  # the lost worker wakes up late
    assert claim(backend, "w2").attempt == 2


def test_release_gives_back_the_rest_after_a_delay(backend):
    backend.queue.send("batch", "A", 0, 10, 1)
    item = claim(backend, max_tasks=10)
    backend.queue.release(item, lo=6, delay=0.2)
    assert claim(backend, "w2") is None
    time.sleep(0.25 + backend.time_granularity)
    again = claim(backend, "w2")
    assert (again.lo, again.hi) == (6, 10)


def test_split_keeps_the_head_and_returns_the_tail(backend):
    backend.queue.send("batch", "A", 0, 10, 1)
    item = claim(backend, max_tasks=10)
    kept = backend.queue.split(item, 2, 5)
    assert isinstance(kept, WorkItem) and (kept.lo, kept.hi) == (2, 5)
    tail = claim(backend, "w2")
    assert (tail.lo, tail.hi) == (5, 10)
    backend.queue.ack(kept)
    backend.queue.ack(tail)
    assert backend.queue.in_flight("batch") == 0


def test_jobs_with_work(backend):
    if not backend.tracks_jobs:
        pytest.skip("SQS cannot be searched by job; the AWS reconciler re-sends instead (tests/aws)")
    backend.queue.send_many([("batch", "A", 0, 1, 1, 0), ("batch", "B", 0, 1, 1, 0)])
    claim(backend)
    assert backend.queue.jobs_with_work(["A", "B", "C"]) == {"A", "B"}

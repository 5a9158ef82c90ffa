"""Listing costs what it lists (SQLite): unfinished jobs are read through their own partial indexes and
queue counts come from counters, whatever the history holds. Checked by SQLite's query plans, not the clock
(bench/listing.py prints the timings)."""

from __future__ import annotations

import pytest

from hyperbatch.adapters.local import open_local
from hyperbatch.core.model import Change, Expect, new_job
from hyperbatch.core.states import JobState

ACTIVE = ["WAITING", "HELD", "QUEUED", "RUNNING"]


@pytest.fixture
def store(tmp_path):
    backend = open_local(tmp_path)
    first = backend.store.reserve_ids(30)
    docs = [new_job(id=str(first + i), owner="alice" if i % 2 else "bob", queue="batch", definition="standard")
            for i in range(30)]
    backend.store.create(docs, [])
    for doc in docs[:25]:  # history: finished jobs
        for state in (JobState.RUNNING, JobState.SUCCEEDED):  # each move as the transition table allows it
            backend.store.update(doc["id"], Expect.move(state), Change(set={"state": state, "finished_at": 1.0}))
    return backend.store


def plans(store, **query) -> list[str]:
    """SQLite's plan of every statement the store runs for one query."""
    conn = store.db.conn
    seen: list[tuple[str, tuple]] = []

    class Recording:
        def execute(self, sql, args=()):
            seen.append((sql, tuple(args)))
            return conn.execute(sql, args)

    real = type(store.db).conn
    type(store.db).conn = property(lambda self: Recording())
    try:
        store.query(**query)
    finally:
        type(store.db).conn = real
    return [" / ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args)) for sql, args in seen]


@pytest.mark.parametrize("query", [
    {"states": ACTIVE},
    {"owner": "alice", "states": ACTIVE},
    {"owner": "alice", "states": ["QUEUED", "RUNNING"]},
    {"queue": "batch", "states": ACTIVE},
    {"owner": "alice", "queue": "batch", "states": ACTIVE},
])
def test_listings_of_unfinished_jobs_read_only_unfinished_jobs(store, query):
    """Through a partial index of unfinished jobs, or an index searched by state: never the history."""
    [plan] = plans(store, **query)
    reads_active = "USING INDEX jobs_active" in plan or "state=?" in plan
    assert reads_active and "SCAN jobs" not in plan.replace("SCAN jobs USING INDEX jobs_active", ""), plan


def test_listed_jobs_are_the_unfinished_ones_newest_first(store):
    page = store.query(states=ACTIVE)
    assert [d["state"] for d in page.items] == ["QUEUED"] * 5
    assert [int(d["id"]) for d in page.items] == sorted((int(d["id"]) for d in page.items), reverse=True)


def test_counts_come_from_counters(store):
    assert store.counts("batch") == {"SUCCEEDED": 25, "QUEUED": 5}
    statements = []
    store.db.conn.set_trace_callback(statements.append)
    store.counts("batch")
    store.db.conn.set_trace_callback(None)
    assert len(statements) == 1 and "queue_counts" in statements[0] and "jobs" not in statements[0].split("FROM")[1]

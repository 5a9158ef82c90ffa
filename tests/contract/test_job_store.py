"""JobStore contract: durable records, conditional writes, indexed queries."""

import pytest

from hyperbatch.errors import Conflict, NotFound, StaleTransition
from hyperbatch.ids import new_job_id
from hyperbatch.model import Change, Expect, new_job
from hyperbatch.states import JobState


def job(**fields):
    return new_job(id=new_job_id(), owner="alice", queue="batch", definition="standard", **fields)


def test_created_jobs_read_back_whole(backend):
    doc = job(name="a", env={"X": "1"}, command=["true"])
    backend.store.create([doc], [])
    assert backend.store.get(doc["id"]) == doc


def test_unknown_job_is_not_found(backend):
    with pytest.raises(NotFound):
        backend.store.get("01M0000000000")
    with pytest.raises(NotFound):
        backend.store.update("01M0000000000", Expect(), Change(set={"name": "x"}))


def test_an_existing_id_cannot_be_created_twice(backend):
    doc = job()
    backend.store.create([doc], [])
    with pytest.raises(Conflict):
        backend.store.create([{**doc, "name": "again"}], [])
    assert backend.store.get(doc["id"])["name"] == doc["name"]


def test_update_applies_when_state_and_attempt_hold(backend):
    doc = job()
    backend.store.create([doc], [])
    new = backend.store.update(
        doc["id"], Expect.state(JobState.QUEUED, attempt=1),
        Change(set={"state": JobState.RUNNING}, add={"run_count": 1}),
    )
    assert (new["state"], new["run_count"], new["version"]) == ("RUNNING", 1, doc["version"] + 1)
    assert backend.store.get(doc["id"]) == new


@pytest.mark.parametrize("expect", [
    Expect.state(JobState.RUNNING),
    Expect.state(JobState.QUEUED, attempt=2),
    Expect(version=99),
])
def test_update_refuses_when_the_job_moved_on(backend, expect):
    doc = job()
    backend.store.create([doc], [])
    with pytest.raises(StaleTransition):
        backend.store.update(doc["id"], expect, Change(set={"state": JobState.RUNNING}))
    assert backend.store.get(doc["id"]) == doc


def test_map_fields_are_set_and_deleted_by_key(backend):
    doc = job(failed_tasks={"1": 3})
    backend.store.create([doc], [])
    new = backend.store.update(doc["id"], Expect(), Change(map_set={"failed_tasks": {"2": 4}}))
    assert new["failed_tasks"] == {"1": 3, "2": 4}
    new = backend.store.update(doc["id"], Expect(), Change(map_del={"failed_tasks": ["1"]}))
    assert new["failed_tasks"] == {"2": 4}


def test_query_by_owner_newest_first_in_pages(backend):
    docs = [job() for _ in range(5)]
    other = new_job(id=new_job_id(), owner="bob", queue="batch", definition="standard")
    backend.store.create(docs + [other], [])
    first = backend.store.query(owner="alice", limit=3)
    assert [d["id"] for d in first.items] == [d["id"] for d in reversed(docs)][:3]
    second = backend.store.query(owner="alice", limit=3, next=first.next)
    assert [d["id"] for d in second.items] == [d["id"] for d in reversed(docs)][3:]
    assert second.next is None


def test_query_by_queue_and_state(backend):
    running = job(state="RUNNING")
    queued = job()
    elsewhere = new_job(id=new_job_id(), owner="alice", queue="west", definition="standard", state="RUNNING")
    backend.store.create([running, queued, elsewhere], [])
    page = backend.store.query(queue="batch", states=["RUNNING"])
    assert [d["id"] for d in page.items] == [running["id"]]
    assert backend.store.counts("batch") == {"RUNNING": 1, "QUEUED": 1}


def test_dependents_follow_edges(backend):
    parent, child1, child2 = job(), job(state="WAITING"), job(state="WAITING")
    backend.store.create([parent, child1, child2], [(parent["id"], child1["id"]), (parent["id"], child2["id"])])
    assert sorted(backend.store.dependents(parent["id"])) == sorted([child1["id"], child2["id"]])
    assert backend.store.dependents(child1["id"]) == []


def test_get_many_returns_only_existing(backend):
    a, b = job(), job()
    backend.store.create([a, b], [])
    found = backend.store.get_many([a["id"], b["id"], "01M0000000000"])
    assert set(found) == {a["id"], b["id"]}

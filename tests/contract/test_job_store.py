"""JobStore contract: durable records, conditional writes, indexed queries."""

import itertools

import pytest

from hyperbatch.core.errors import Conflict, NotFound, StaleTransition
from hyperbatch.core.model import Change, Expect, new_job
from hyperbatch.core.states import JobState

# Ids for documents made by hand: increasing, and consecutive within a `block` (as one submit's are).
# They start at 8, so listings cross from one digit to two (ids sort by number, not as text).
_numbers = itertools.count(8)


def new_job_id() -> str:
    return str(next(_numbers))


def new_job_ids(n: int) -> list[str]:
    return [new_job_id() for _ in range(n)]


def newest_first(job_ids) -> list[str]:
    return sorted(job_ids, key=int, reverse=True)


def job(**fields):
    return new_job(id=new_job_id(), owner="alice", queue="batch", definition="standard", **fields)


def test_reserved_ids_are_consecutive_increasing_and_never_handed_out_twice(backend):
    first = backend.store.reserve_ids(1)
    second = backend.store.reserve_ids(1000)
    third = backend.store.reserve_ids(3)
    assert first >= 1 and second == first + 1 and third == second + 1000


def test_created_jobs_read_back_whole(backend):
    doc = job(name="a", env={"X": "1"}, command=["true"])
    backend.store.create([doc], [])
    assert backend.store.get(doc["id"]) == doc


def test_unknown_job_is_not_found(backend):
    with pytest.raises(NotFound):
        backend.store.get("99999")
    with pytest.raises(NotFound):
        backend.store.update("99999", Expect(), Change(set={"name": "x"}))
    with pytest.raises(NotFound):
        backend.store.get("no-such-id")


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
    Expect.move(JobState.RUNNING, JobState.QUEUED, version=99),
])
def test_update_refuses_when_the_job_moved_on(backend, expect):
    doc = job()
    backend.store.create([doc], [])
    with pytest.raises(StaleTransition):
        backend.store.update(doc["id"], expect, Change(set={"state": JobState.RUNNING}))
    assert backend.store.get(doc["id"]) == doc


def test_a_field_expected_none_holds_when_absent_or_none_and_not_once_set(backend):
    """How a run's end expects no qrerun (`rerun_requested` None, hyperbatch.core.model.NO_REQUEST):
    a document written before the field existed has none, and must still end; one flagged must not."""
    before, after = job(state=JobState.RUNNING), job(state=JobState.RUNNING, rerun_requested=None)
    assert "rerun_requested" not in before
    backend.store.create([before, after], [])
    no_request = Expect(states=frozenset({JobState.RUNNING}), attempt=1, fields=(("rerun_requested", None),))
    for doc in (before, after):
        assert backend.store.update(doc["id"], no_request, Change(set={"reason": "beat"}))["reason"] == "beat"
    flagged = backend.store.update(after["id"], no_request, Change(set={"rerun_requested": True}))
    assert flagged["rerun_requested"] is True
    with pytest.raises(StaleTransition):
        backend.store.update(after["id"], no_request, Change(set={"reason": "end"}))
    assert backend.store.get(after["id"]) == flagged


def test_map_fields_are_set_and_deleted_by_key(backend):
    doc = job(failed_tasks={"1": 3})
    backend.store.create([doc], [])
    new = backend.store.update(doc["id"], Expect(), Change(map_set={"failed_tasks": {"2": 4}}))
    assert new["failed_tasks"] == {"1": 3, "2": 4}
    new = backend.store.update(doc["id"], Expect(), Change(map_del={"failed_tasks": ["1"]}))
    assert new["failed_tasks"] == {"2": 4}


def test_list_fields_are_appended_to(backend):
    doc = job(history=[[1.0, "S", "queued"]])
    backend.store.create([doc], [])
    new = backend.store.update(doc["id"], Expect(), Change(append={"history": [[2.0, "M", "ran"]]}))
    assert new["history"] == [[1.0, "S", "queued"], [2.0, "M", "ran"]]
    new = backend.store.update(doc["id"], Expect(), Change(set={"reason": "x"}, append={"history": [[3.5, "S", "x"]]}))
    assert new["history"][-1] == [3.5, "S", "x"] and backend.store.get(doc["id"]) == new
    bare = job()  # no history yet: the first append makes the list
    assert "history" not in bare
    backend.store.create([bare], [])
    assert backend.store.update(bare["id"], Expect(), Change(append={"history": [[1, "S", "a"]]}))["history"] == [
        [1, "S", "a"]]


def test_query_by_owner_newest_first_in_pages(backend):
    docs = [job() for _ in range(5)]
    other = new_job(id=new_job_id(), owner="bob", queue="batch", definition="standard")
    backend.store.create(docs + [other], [])
    first = backend.store.query(owner="alice", limit=3)
    assert [d["id"] for d in first.items] == [d["id"] for d in reversed(docs)][:3]
    second = backend.store.query(owner="alice", limit=3, next=first.next)
    assert [d["id"] for d in second.items] == [d["id"] for d in reversed(docs)][3:]
    assert second.next is None
    assert backend.store.query(owner="alice", next="junk").items == []


def test_query_by_queue_and_state(backend):
    running = job(state="RUNNING")
    queued = job()
    elsewhere = new_job(id=new_job_id(), owner="alice", queue="west", definition="standard", state="RUNNING")
    backend.store.create([running, queued, elsewhere], [])
    page = backend.store.query(queue="batch", states=["RUNNING"])
    assert [d["id"] for d in page.items] == [running["id"]]
    backend.settle()
    assert backend.store.counts("batch") == {"RUNNING": 1, "QUEUED": 1}


def test_dependents_follow_edges(backend):
    parent, child1, child2 = job(), job(state="WAITING"), job(state="WAITING")
    backend.store.create([parent, child1, child2], [(parent["id"], child1["id"]), (parent["id"], child2["id"])])
    assert sorted(backend.store.dependents(parent["id"])) == sorted([child1["id"], child2["id"]])
    assert backend.store.dependents(child1["id"]) == []


def test_get_many_returns_only_existing(backend):
    a, b = job(), job()
    backend.store.create([a, b], [])
    found = backend.store.get_many([a["id"], b["id"], "99999", "junk"])
    assert set(found) == {a["id"], b["id"]}


# ---- listings: lone jobs and blocks (one submit of many: consecutive ids) --------------------

def walk(store, **query):
    """Every page of a listing, in order (a last page may be empty)."""
    pages, token = [], None
    while True:
        page = store.query(next=token, **query)
        pages.append([d["id"] for d in page.items])
        token = page.next
        if token is None:
            return pages


def block(n, **fields):
    fields.setdefault("owner", "alice")
    fields.setdefault("queue", "batch")
    return [new_job(id=i, definition="standard", **fields) for i in new_job_ids(n)]


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 7, 100])
def test_listing_by_owner_mixes_blocks_and_lone_jobs_newest_first_in_any_page_size(backend, limit):
    docs = [job()]
    for n in (5, 1, 3):
        batch = block(n)
        backend.store.create(batch, [])
        docs += batch
        lone = job(state="HELD")
        backend.store.create([lone], [])
        docs.append(lone)
    backend.store.create(docs[:1], [])
    backend.store.create(block(2, owner="bob"), [])
    pages = walk(backend.store, owner="alice", limit=limit)
    expected = newest_first(d["id"] for d in docs)
    assert [i for page in pages for i in page] == expected
    assert all(len(page) == limit for page in pages[:-1])  # pages split blocks where the limit says


def test_a_submission_created_after_later_lone_jobs_still_lists_in_order(backend):
    members = block(4)
    later = [job() for _ in range(3)]
    for doc in later:
        backend.store.create([doc], [])
    backend.store.create(members, [])  # one submit's run of ids, written after jobs with higher ids
    expected = newest_first(d["id"] for d in members + later)
    for limit in (1, 2, 3):
        assert [i for page in walk(backend.store, owner="alice", limit=limit) for i in page] == expected


def test_listing_by_owner_filters_queue_and_state_and_fills_pages(backend):
    docs = block(6) + block(4, queue="west") + block(5, state="HELD")
    mixed = block(6)
    for doc in mixed[::2]:
        doc["queue"] = "west"
    for batch in (docs[:6], docs[6:10], docs[10:], mixed):
        backend.store.create(batch, [])
    running = [job(state="RUNNING") for _ in range(3)]
    for doc in running:
        backend.store.create([doc], [])
    everything = docs + mixed + running

    def expected(keep):
        return newest_first(d["id"] for d in everything if keep(d))

    pages = walk(backend.store, owner="alice", queue="west", limit=2)
    assert [i for p in pages for i in p] == expected(lambda d: d["queue"] == "west")
    assert all(len(p) == 2 for p in pages[:-1])
    pages = walk(backend.store, owner="alice", states=["RUNNING", "HELD"], limit=3)
    assert [i for p in pages for i in p] == expected(lambda d: d["state"] in ("RUNNING", "HELD"))
    assert all(len(p) == 3 for p in pages[:-1])
    pages = walk(backend.store, owner="alice", queue="batch", states=["QUEUED"], limit=4)
    assert [i for p in pages for i in p] == expected(lambda d: d["queue"] == "batch" and d["state"] == "QUEUED")
    assert all(len(p) == 4 for p in pages[:-1])


def test_listing_all_owners_merges_newest_first(backend):
    docs = block(3) + block(4, owner="bob") + [job(), job(state="RUNNING")]
    docs.append(new_job(id=new_job_id(), owner="carol", queue="west", definition="standard", state="HELD"))
    backend.store.create(docs[:3], [])
    backend.store.create(docs[3:7], [])
    for doc in docs[7:]:
        backend.store.create([doc], [])
    everything = newest_first(d["id"] for d in docs)
    for limit in (2, 5, 100):
        assert [i for p in walk(backend.store, limit=limit) for i in p] == everything
    assert [i for p in walk(backend.store, queue="west", limit=2) for i in p] == [docs[-1]["id"]]
    assert [i for p in walk(backend.store, states=["QUEUED"], limit=3) for i in p] == [
        i for i in everything if i not in (docs[-1]["id"], docs[-2]["id"])]


def test_waiting_and_held_jobs_by_queue(backend):
    waiting = job(state="WAITING")
    held = block(3, state="HELD")
    elsewhere = new_job(id=new_job_id(), owner="bob", queue="west", definition="standard", state="HELD")
    queued = job()
    backend.store.create([waiting], [])
    backend.store.create(held, [])
    backend.store.create([elsewhere], [])
    backend.store.create([queued], [])
    backend.store.update(queued["id"], Expect.state(JobState.QUEUED), Change(set={"state": JobState.HELD}))
    backend.store.update(held[0]["id"], Expect.state(JobState.HELD), Change(set={"state": JobState.QUEUED}))
    ids_of = lambda page: [d["id"] for d in page.items]  # noqa: E731
    now_held = newest_first([queued["id"], held[1]["id"], held[2]["id"]])
    assert ids_of(backend.store.query(queue="batch", states=["HELD"])) == now_held
    assert ids_of(backend.store.query(queue="batch", states=["WAITING", "HELD"])) == [queued["id"]] + newest_first(
        [held[1]["id"], held[2]["id"], waiting["id"]])
    assert ids_of(backend.store.query(states=["HELD"])) == newest_first(now_held + [elsewhere["id"]])
    assert [i for p in walk(backend.store, states=["HELD"], limit=1) for i in p] == newest_first(
        now_held + [elsewhere["id"]])


def test_counts_follow_creates_and_transitions(backend):
    arrays = block(2, array="0-9", total=10, pending=10)
    backend.store.create(arrays, [])
    lone = [job(), job(state="WAITING"), new_job(id=new_job_id(), owner="bob", queue="west", definition="standard")]
    for doc in lone:
        backend.store.create([doc], [])
    backend.store.create(block(3, state="HELD"), [])
    backend.store.update(lone[0]["id"], Expect.state(JobState.QUEUED), Change(set={"state": JobState.RUNNING}))
    backend.store.update(lone[0]["id"], Expect.state(JobState.RUNNING),
                         Change(set={"state": JobState.SUCCEEDED, "finished_at": 1.0}))
    backend.store.update(arrays[0]["id"], Expect.state(JobState.QUEUED),
                         Change(set={"state": JobState.RUNNING}, add={"pending": -4, "running": 4}))
    backend.store.update(lone[0]["id"], Expect(), Change(set={"reason": "x"}))  # no state change
    backend.settle()
    assert backend.store.counts("batch") == {"WAITING": 1, "HELD": 3, "QUEUED": 1, "RUNNING": 1, "SUCCEEDED": 1}
    assert backend.store.counts("west") == {"QUEUED": 1}
    if hasattr(backend.store, "pending_tasks"):
        assert backend.store.pending_tasks("batch") == 6 + 10
        assert backend.store.pending_tasks("west") == 1


def test_a_runs_beats_are_kept_apart_from_its_job(backend):
    doc = job(array="1-4", total=4, pending=4)
    backend.store.create([doc], [])
    version = backend.store.get(doc["id"])["version"]
    backend.store.beat(doc["id"], "c1", 5.0)
    backend.store.beat(doc["id"], "c2", 6.0)
    backend.store.beat(doc["id"], "c1", 7.5)
    assert backend.store.beats(doc["id"]) == {"c1": 7.5, "c2": 6.0}  # the last beat of each run
    assert backend.store.get(doc["id"])["version"] == version  # the job's document was not written
    assert backend.store.beats(job()["id"]) == {}


def test_an_arrays_task_maps_come_back_as_written(backend):
    from hyperbatch.core import tasks

    doc = job(array="1-40000", total=40000, pending=40000)
    backend.store.create([doc], [])
    failed = tasks.TaskMap(None)
    for pos in range(0, 40000, 3):  # one run each: pages far longer than a store keeps inline
        failed.set(pos, 1 + pos % 7)
    change = Change()
    failed.write(change, tasks.FAILED_MAP)
    new = backend.store.update(doc["id"], Expect(version=0), change)
    assert new[tasks.FAILED_MAP] == failed.pages() == backend.store.get(doc["id"])[tasks.FAILED_MAP]
    failed = tasks.TaskMap(new[tasks.FAILED_MAP])
    failed.set_range(0, 20000, None)  # a page emptied, another changed
    change = Change()
    failed.write(change, tasks.FAILED_MAP)
    new = backend.store.update(doc["id"], Expect(version=1), change)
    assert new[tasks.FAILED_MAP] == failed.pages() == backend.store.get(doc["id"])[tasks.FAILED_MAP]


def test_a_workflows_record_is_written_with_its_jobs_and_the_newest_of_a_name_is_read(backend):
    first, second = job(), job()
    record = {"name": "sweep", "owner": "alice", "created_at": 1.5, "steps": {"a": first["id"], "b": second["id"]}}
    backend.store.create([first, second], [(first["id"], second["id"])], record)
    assert backend.store.workflow("alice", "sweep") == record
    assert backend.store.dependents(first["id"]) == [second["id"]]
    again = job()
    newer = {**record, "created_at": 2.5, "steps": {"a": again["id"]}}
    backend.store.create([again], [], newer)
    assert backend.store.workflow("alice", "sweep") == newer
    with pytest.raises(NotFound):
        backend.store.workflow("bob", "sweep")  # a name is the owner's own
    other = {"name": "other", "owner": "alice", "created_at": 3.5, "steps": {"x": job()["id"]}}
    backend.store.create([job()], [], other)
    assert backend.store.workflows("alice") == [other, newer]  # newest first, one record a name
    assert backend.store.workflows("bob") == []


def test_a_create_that_fails_writes_no_workflow_record(backend):
    doc = job()
    backend.store.create([doc], [])
    record = {"name": "clash", "owner": "alice", "created_at": 1.0, "steps": {"a": doc["id"]}}
    with pytest.raises(Conflict):
        backend.store.create([job(), {**doc, "name": "again"}], [], record)  # not one block: each id checked
    with pytest.raises(NotFound):
        backend.store.workflow("alice", "clash")

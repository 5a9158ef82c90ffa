"""DynamoJobStore beyond the contract: expressions, one write per update, TTL, call budgets, no Scan.

Submissions, listings and the stream-kept counts: test_dynamo_submissions.py.
"""

import json
from decimal import Decimal

import boto3
import botocore.awsrequest
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperbatch.adapters.aws.dynamo import DynamoJobStore, _chunks
from hyperbatch.adapters.aws.items import decode, doc_from_item, encode, job_item, update_request
from hyperbatch.core.errors import Conflict, IllegalTransition, NotFound, StaleTransition
from hyperbatch.core.ids import sort_key
from tests.handmade_ids import new_job_id
from hyperbatch.core.model import Change, Expect, apply, check_write, holds, new_job
from hyperbatch.core.ports import Page
from hyperbatch.core.states import JobState

DAY = 86400


def job(**fields):
    fields.setdefault("owner", "alice")
    fields.setdefault("queue", "batch")
    return new_job(id=new_job_id(), definition="standard", **fields)


def lone_jobs(n):
    """n jobs whose ids are not one run (each from a submit of its own, with others between)."""
    docs = [job() for _ in range(n)]
    for doc in docs:
        new_job_id()  # someone else's id between each two
        doc["id"] = new_job_id()
    return docs


def raw_item(aws, job_id):
    return aws.dynamodb.get_item(TableName=aws.plane.table, Key={"pk": {"S": job_id}, "sk": {"S": "job"}})["Item"]


# ---- values -------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    0, 7, -3, 1.5, 1712345678.123456, 0.1, None, True, False, "", "é", [], {}, [[0, 4], [6, 10]],
    {"1": 3, "x": {"y": [1.25, None]}},
])
def test_values_round_trip_with_their_types(value):
    back = decode(encode(value))
    assert back == value and type(back) is type(value)


def test_floats_go_in_as_their_shortest_decimal():
    assert encode(0.1) == {"N": "0.1"}
    assert decode({"N": "3600"}) == 3600 and isinstance(decode({"N": "3600.0"}), int)
    assert encode(Decimal("2.5")) == {"N": "2.5"}
    with pytest.raises(ValueError):
        encode(float("nan"))


# ---- expressions --------------------------------------------------------------------------

def resolve(request):
    """The update expression with placeholders replaced, for reading in assertions."""
    text = request["UpdateExpression"] + " IF " + request["ConditionExpression"]
    for key in sorted(request["ExpressionAttributeValues"], key=len, reverse=True):
        text = text.replace(key, repr(decode(request["ExpressionAttributeValues"][key])))
    for key in sorted(request["ExpressionAttributeNames"], key=len, reverse=True):
        text = text.replace(key, request["ExpressionAttributeNames"][key])
    return text


def test_update_expression_sets_adds_and_edits_maps_by_key():
    change = Change(set={"reason": "x"}, add={"run_count": 1},
                    map_set={"failed_tasks": {"7": 2}}, map_del={"retrying": ["3", "4"]})
    text = resolve(update_request(Expect(), change, queue=None, retention_seconds=DAY, now=0))
    assert text == (
        "SET reason = 'x', failed_tasks.7 = 2, version = version + 1 "
        "REMOVE retrying.3, retrying.4 ADD run_count 1 IF attribute_exists(pk)"
    )


def test_conditions_come_from_expect():
    expect = Expect(states=frozenset({JobState.QUEUED, JobState.HELD}), attempt=2, version=5,
                    fields=(("cancel_requested", False), ("exec_host", None)))
    text = resolve(update_request(expect, Change(set={"name": "n"}), queue=None, retention_seconds=DAY, now=0))
    assert text.split(" IF ")[1] == (
        "attribute_exists(pk) AND state IN ('HELD', 'QUEUED') AND attempt = 2 AND version = 5 "
        "AND cancel_requested = False AND (attribute_not_exists(exec_host) OR attribute_type(exec_host, 'NULL'))"
    )


@pytest.mark.parametrize("state", [JobState.WAITING, JobState.HELD])
def test_entering_waiting_or_held_sets_the_index_key_and_checks_the_queue(state):
    text = resolve(update_request(Expect.move(state), Change(set={"state": state}), queue="batch",
                                  retention_seconds=DAY, now=0))
    assert "gsi2pk = 'batch#waiting'" in text and "queue = 'batch'" in text.split(" IF ")[1]
    assert text.split(" REMOVE ")[1].split(" IF ")[0] == "expires_at"  # only the TTL (a re-run job's) goes
    with pytest.raises(ValueError, match="queue"):
        update_request(Expect.move(state), Change(set={"state": state}), queue=None, retention_seconds=DAY, now=0)


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED, JobState.CANCELLED])
def test_any_other_state_removes_the_index_key_without_the_queue(state):
    text = resolve(update_request(Expect.move(state), Change(set={"state": state}),
                                  queue=None, retention_seconds=DAY, now=0))
    assert "REMOVE gsi2pk" in text and "queue" not in text and f"state = '{state.value}'" in text


def test_a_change_without_a_state_leaves_the_index_key_alone():
    text = resolve(update_request(Expect(), Change(set={"reason": "x"}, add={"pending": -1}),
                                  queue=None, retention_seconds=DAY, now=0))
    assert "gsi2pk" not in text


def test_a_final_state_sets_the_ttl_in_the_same_write():
    text = resolve(update_request(Expect.move(JobState.SUCCEEDED), Change(set={"state": "SUCCEEDED", "finished_at": 1000.0}),
                                  queue="batch", retention_seconds=DAY, now=5000))
    assert f"expires_at = {1000 + DAY}" in text
    text = resolve(update_request(Expect.move(JobState.FAILED), Change(set={"state": "FAILED"}), queue="batch",
                                  retention_seconds=DAY, now=5000))
    assert f"expires_at = {5000 + DAY}" in text  # no finish time given: from now


def test_paths_that_overlap_are_folded_as_apply_orders_them():
    change = Change(set={"failed_tasks": {"1": 1}, "pending": 5, "version": 99}, add={"pending": -2, "version": 3},
                    map_set={"failed_tasks": {"2": 2}, "retrying": {"5": 2, "6": 2}},
                    map_del={"failed_tasks": ["1"], "retrying": ["5"]})
    text = resolve(update_request(Expect(), change, queue=None, retention_seconds=DAY, now=0))
    assert text == (
        "SET failed_tasks = {'2': 2}, pending = 3, retrying.6 = 2, version = version + 1 "
        "REMOVE retrying.5 IF attribute_exists(pk)"
    )


# ---- writes -------------------------------------------------------------------------------

def test_update_is_one_update_item(aws):
    doc = job(state="HELD")
    aws.store.create([doc], [])
    aws.calls.clear()
    aws.store.update(doc["id"], Expect.state(JobState.HELD), Change(set={"state": JobState.QUEUED}))
    aws.store.update(doc["id"], Expect.state(JobState.QUEUED), Change(set={"state": JobState.HELD}))
    assert aws.calls == ["UpdateItem"] * 2  # the queue for the index key was known from create


def test_by_queue_state_holds_only_waiting_and_held_jobs(aws):
    doc = job(state="WAITING")
    aws.store.create([doc], [])
    assert raw_item(aws, doc["id"])["gsi2pk"] == {"S": "batch#waiting"}
    fresh = DynamoJobStore(aws.plane.table, aws.dynamodb)  # knows no queue: leaving the index needs none
    aws.calls.clear()
    fresh.update(doc["id"], Expect.state(JobState.WAITING), Change(set={"state": JobState.QUEUED}))
    fresh.update(doc["id"], Expect.state(JobState.QUEUED), Change(set={"state": JobState.RUNNING}))
    assert aws.calls == ["UpdateItem", "UpdateItem"] and "gsi2pk" not in raw_item(aws, doc["id"])
    fresh.update(doc["id"], Expect.state(JobState.RUNNING), Change(set={"state": JobState.SUCCEEDED}))
    assert "gsi2pk" not in raw_item(aws, doc["id"])
    assert aws.store.query(queue="batch", states=["WAITING", "HELD"]).items == []
    others = [job(state=s) for s in ("QUEUED", "RUNNING", "SUCCEEDED")]
    aws.store.create(others, [])
    assert not any("gsi2pk" in raw_item(aws, d["id"]) for d in others)


def test_a_lone_job_is_one_conditional_put(aws):
    doc = job()
    aws.store.create([doc], [])
    assert aws.calls == ["PutItem", "PutItem"]  # the owner's registry entry (once per store object), the job
    aws.calls.clear()
    aws.store.create([job()], [])
    assert aws.calls == ["PutItem"]
    with pytest.raises(Conflict, match=doc["id"]):
        aws.store.create([doc], [])  # a second create of the same job is still a conflict
    assert aws.store.get(doc["id"]) == doc


def test_a_retried_lone_put_recognises_its_own_write(aws, retried):
    doc = job()
    sent = retried("PutItem")
    aws.store.create([doc], [])
    assert sent and aws.store.get(doc["id"]) == doc


def test_a_fresh_process_learns_the_queue_once(aws):
    doc = job()
    aws.store.create([doc], [])
    other = DynamoJobStore(aws.plane.table, aws.dynamodb)
    aws.calls.clear()
    other.update(doc["id"], Expect.move(JobState.HELD), Change(set={"state": JobState.HELD}))
    other.update(doc["id"], Expect.move(JobState.QUEUED), Change(set={"state": JobState.QUEUED}))
    other.update(doc["id"], Expect.move(JobState.HELD), Change(set={"state": JobState.HELD}))
    assert aws.calls == ["GetItem", "UpdateItem", "UpdateItem", "UpdateItem"]


def test_not_found_and_stale_are_told_apart_without_a_read(aws):
    doc = job()
    aws.store.create([doc], [])
    aws.calls.clear()
    with pytest.raises(StaleTransition, match="is QUEUED attempt 1"):
        aws.store.update(doc["id"], Expect.state(JobState.RUNNING), Change(set={"reason": "x"}))
    with pytest.raises(NotFound):
        aws.store.update(new_job_id(), Expect(), Change(set={"reason": "x"}))
    assert aws.calls == ["UpdateItem", "UpdateItem"]
    assert aws.store.get(doc["id"]) == doc


def test_a_stale_queue_guess_is_corrected(aws):
    doc = job(queue="west")
    aws.store.create([doc], [])
    aws.store._remember({"id": doc["id"], "queue": "batch"})  # as if another process had said so
    new = aws.store.update(doc["id"], Expect.move(JobState.HELD), Change(set={"state": JobState.HELD}))
    assert new["state"] == "HELD"
    assert raw_item(aws, doc["id"])["gsi2pk"] == {"S": "west#waiting"}


def test_index_keys_follow_the_state(aws):
    doc = job()
    aws.store.create([doc], [])
    aws.store.update(doc["id"], Expect.move(JobState.HELD), Change(set={"state": JobState.HELD}))
    assert [d["id"] for d in aws.store.query(queue="batch", states=["HELD"]).items] == [doc["id"]]
    assert aws.store.query(queue="batch", states=["WAITING"]).items == []
    item = raw_item(aws, doc["id"])
    assert (item["gsi1pk"], item["gsi1sk"], item["gsi2pk"], item["gsi2sk"]) == (
        {"S": "alice"}, {"S": sort_key(doc["id"])}, {"S": "batch#waiting"}, {"S": sort_key(doc["id"])})


def test_final_jobs_expire_after_the_retention(aws):
    doc = job()
    done = job(state="CANCELLED", finished_at=2000.0)
    aws.store.create([doc, done], [])
    assert "expires_at" not in raw_item(aws, doc["id"])
    assert raw_item(aws, done["id"])["expires_at"] == {"N": str(2000 + 30 * DAY)}
    aws.store.update(doc["id"], Expect.move(JobState.RUNNING), Change(set={"state": JobState.RUNNING}))
    assert "expires_at" not in raw_item(aws, doc["id"])
    aws.store.update(doc["id"], Expect.move(JobState.SUCCEEDED),
                     Change(set={"state": JobState.SUCCEEDED, "finished_at": 1000.5}))
    assert raw_item(aws, doc["id"])["expires_at"] == {"N": str(1000 + 30 * DAY)}
    assert "expires_at" not in aws.store.get(doc["id"])


def test_a_thousand_jobs_are_created_in_ten_transactions():
    # moto copies every table once per transaction item (quadratic), so the
    # thousand go to a stubbed client; test_jobs_spanning_two_transactions runs the real thing.
    client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    calls = []

    def answer(model, params, **kwargs):  # a before-call hook that answers stops the request
        calls.append((model.name, len(json.loads(params["body"]).get("TransactItems", []))))
        return botocore.awsrequest.AWSResponse("https://stub", 200, {}, None), {}

    client.meta.events.register("before-call.dynamodb.*", answer)
    docs = lone_jobs(1000)  # not one run of ids: no submission
    DynamoJobStore("t", client).create(docs, [(docs[0]["id"], d["id"]) for d in docs[1:50]])
    # The owner's registry entry, then 1,049 items.
    assert calls == [("PutItem", 0)] + [("TransactWriteItems", 100)] * 10 + [("TransactWriteItems", 49)]


def test_big_documents_make_smaller_transactions():
    docs = [job(script="#" * 300_000) for _ in range(30)]
    chunks = list(_chunks([{"Put": {"Item": job_item(d, DAY, 0)}} for d in docs]))
    assert [len(c) for c in chunks] == [13, 13, 4]  # about 4 MB each


def test_jobs_spanning_two_transactions(aws):
    docs = lone_jobs(104)
    aws.store.create(docs, [(docs[0]["id"], d["id"]) for d in docs[1:4]])
    assert aws.calls == ["PutItem"] + ["TransactWriteItems"] * 2
    assert aws.store.get_many(d["id"] for d in docs) == {d["id"]: d for d in docs}
    assert aws.calls[3:] == ["BatchGetItem"] * 2
    assert sorted(aws.store.dependents(docs[0]["id"])) == sorted(d["id"] for d in docs[1:4])


def test_a_conflict_in_a_later_chunk_undoes_the_earlier_ones(aws):
    taken = job()
    aws.store.create([taken], [])
    docs = [job() for _ in range(101)]
    with pytest.raises(Conflict, match=taken["id"]):
        aws.store.create(docs[:100] + [taken] + docs[100:], [(docs[0]["id"], docs[1]["id"])])
    assert aws.store.get_many(d["id"] for d in docs) == {}
    assert aws.store.dependents(docs[0]["id"]) == []
    assert aws.store.get(taken["id"]) == taken


def test_the_same_id_twice_in_one_create_is_a_conflict(aws):
    doc = job()
    with pytest.raises(Conflict):
        aws.store.create([doc, dict(doc)], [])


def test_an_ownerless_job_is_stored_but_not_indexed_by_owner(aws):
    doc = job(owner="")
    aws.store.create([doc], [])
    assert aws.store.get(doc["id"]) == doc
    assert aws.store.query(owner="").items == []


# ---- queries ------------------------------------------------------------------------------

def test_queries_use_indexes_only(aws):
    # The fixture's clients raise on Scan; walk every kind of query through pages.
    docs = [job(state=s, queue=q) for q in ("batch", "west") for s in ("QUEUED", "RUNNING", "SUCCEEDED")]
    docs += [job(owner="bob")]
    aws.store.create(docs, [])
    newest_first = [d["id"] for d in reversed(docs)]

    def walk(**kw):
        ids, token = [], None
        while True:
            page = aws.store.query(limit=2, next=token, **kw)
            ids += [d["id"] for d in page.items]
            token = page.next
            if token is None:
                return ids

    assert walk() == newest_first  # everything: every (queue, state) of the configured queues
    assert walk(owner="alice") == newest_first[1:]
    assert walk(owner="alice", queue="west", states=["QUEUED", "SUCCEEDED"]) == [
        d["id"] for d in reversed(docs) if d["owner"] == "alice" and d["queue"] == "west" and d["state"] != "RUNNING"
    ]
    assert walk(states=["RUNNING"]) == [d["id"] for d in reversed(docs) if d["state"] == "RUNNING"]
    assert walk(queue="batch") == [d["id"] for d in reversed(docs) if d["queue"] == "batch"]
    assert aws.store.counts("west") == {}  # nothing tallied yet: counts come from the stream
    # Index (and registry) queries give the ids; the page's jobs come from one BatchGetItem (by key, not a Scan).
    assert "Scan" not in aws.calls
    assert {"Query", "BatchGetItem", "GetItem"} == set(aws.calls) - {"TransactWriteItems", "BatchWriteItem"}


def test_a_filtered_owner_query_fills_its_page(aws):
    docs = [job(state="SUCCEEDED") for _ in range(30)] + [job(state="RUNNING") for _ in range(3)]
    aws.store.create(docs[30:] + docs[:30], [])  # the running ones are oldest
    page = aws.store.query(owner="alice", states=["RUNNING"], limit=3)
    assert sorted(d["id"] for d in page.items) == sorted(d["id"] for d in docs[30:])
    # The index cannot tell there are no more RUNNING ones; the next page is empty and last.
    if page.next is not None:
        assert aws.store.query(owner="alice", states=["RUNNING"], limit=3, next=page.next) == Page([], None)


def test_waiting_listings_without_queue_names_merge_the_owners(aws):
    held = job(state="HELD")
    aws.store.create([held, job()], [])
    bare = DynamoJobStore(aws.plane.table, aws.dynamodb)
    assert bare.query(states=["HELD"]).items == [held]


# ---- the same semantics as model.apply ----------------------------------------------------

keys = st.sampled_from(["1", "2", "3", "10"])
maps = st.dictionaries(keys, st.integers(-3, 300), max_size=3)
numbers = st.integers(-10**6, 10**6).map(lambda n: n / 1000)
changes = st.builds(
    Change,
    set=st.fixed_dictionaries({}, optional={
        "reason": st.text(max_size=5), "exit_status": st.none() | st.integers(-5, 300),
        "cpu_seconds": numbers, "failed_tasks": maps, "pending": st.integers(0, 50),
        "state": st.sampled_from(list(JobState)), "cancel_requested": st.booleans(),
    }),
    add=st.fixed_dictionaries({}, optional={"run_count": st.integers(-2, 2), "pending": st.integers(-2, 2)}),
    map_set=st.fixed_dictionaries({}, optional={"failed_tasks": maps, "retrying": maps}),
    map_del=st.fixed_dictionaries({}, optional={"failed_tasks": st.lists(keys, max_size=3),
                                                "retrying": st.lists(keys, max_size=3)}),
)
expects = st.builds(
    Expect,
    states=st.none() | st.frozensets(st.sampled_from([JobState.QUEUED, JobState.RUNNING, JobState.HELD]), max_size=2),
    attempt=st.none() | st.integers(1, 2),
    version=st.none() | st.integers(0, 1),
    fields=st.lists(st.tuples(st.sampled_from(["exec_host", "cancel_requested"]),
                              st.sampled_from([None, False, "h"])), max_size=1).map(tuple),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expect=expects, change=changes, failed=maps, retrying=maps)
def test_update_matches_apply(aws, expect, change, failed, retrying):
    doc = job(failed_tasks=failed, retrying=retrying, pending=7)
    aws.dynamodb.put_item(TableName=aws.plane.table, Item=job_item(doc, DAY, 0))  # cheaper than a transaction
    try:
        check_write(expect, change)
    except IllegalTransition:  # a move the transition table forbids: refused by both, before anything is written
        with pytest.raises(IllegalTransition):
            apply(doc, expect, change)
        with pytest.raises(IllegalTransition):
            aws.store.update(doc["id"], expect, change)
        assert aws.store.get(doc["id"]) == doc
        return
    if holds(doc, expect):
        assert aws.store.update(doc["id"], expect, change) == apply(doc, expect, change)
    else:
        with pytest.raises(StaleTransition):
            aws.store.update(doc["id"], expect, change)
    assert aws.store.get(doc["id"]) == doc_from_item(raw_item(aws, doc["id"]))


def test_reads_are_strongly_consistent(aws):
    doc = job()
    aws.store.create([doc], [])
    requests = []
    aws.dynamodb.meta.events.register("provide-client-params.dynamodb.*", lambda params, **kw: requests.append(params))
    aws.store.get(doc["id"])
    aws.store.get_many([doc["id"]])
    assert requests[0]["ConsistentRead"] is True
    assert requests[1]["RequestItems"][aws.plane.table]["ConsistentRead"] is True

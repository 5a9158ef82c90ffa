"""DynamoJobStore's cheap paths: ids reserved in blocks from one counter item, submissions (a run of
ids in one by_owner entry), listings over them, the owners registry, and job counts kept from the
table's stream."""

import itertools
import json

import botocore.awsrequest
import pytest

from hyperbatch.core import ids
from hyperbatch.adapters.aws import counters
from hyperbatch.adapters.aws.dynamo import DynamoJobStore
from hyperbatch.adapters.aws.items import encode
from hyperbatch.core.errors import Conflict, SpecError
from hyperbatch.core.model import Change, Expect, new_job
from hyperbatch.services.scheduler import Caller, Scheduler
from hyperbatch.core.states import JobState
from tests.streams import StreamReader

REGION = "us-east-1"  # as the aws fixture (tests/aws/conftest.py)
DAY = 86400
_numbers = itertools.count(95)  # hand-made ids, increasing (a block's consecutive); listings cross 99 -> 100


def new_job_id() -> str:
    return str(next(_numbers))


def new_job_ids(n: int) -> list[str]:
    return [new_job_id() for _ in range(n)]


def job(job_id=None, **fields):
    fields.setdefault("owner", "alice")
    fields.setdefault("queue", "batch")
    return new_job(id=job_id or new_job_id(), definition="standard", **fields)


def block(n, **fields):
    return [job(i, **fields) for i in new_job_ids(n)]


def item(aws, pk, sk="job"):
    return aws.dynamodb.get_item(TableName=aws.plane.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}).get("Item")


def submission(aws, first_id):
    return item(aws, "submission#" + first_id, "submission")


def requests(aws):
    """Every request's operation and parameters, as the store sent them."""
    sent = []
    aws.dynamodb.meta.events.register(
        "provide-client-params.dynamodb.*", lambda params, model, **kw: sent.append((model.name, params)))
    return sent


@pytest.fixture
def stream(aws):
    return StreamReader(aws.dynamodb, aws.plane.table)


# ---- ids ------------------------------------------------------------------------------------

def test_ids_are_reserved_in_blocks_by_one_conditional_add_on_one_counter_item(aws):
    sent = requests(aws)
    first = aws.store.reserve_ids(1000)
    assert (first, aws.store.reserve_ids(1)) == (1, 1001)
    assert [name for name, _ in sent] == ["UpdateItem", "UpdateItem"]
    update = sent[0][1]
    assert update["Key"] == {"pk": {"S": "sequence"}, "sk": {"S": "sequence"}}
    assert update["UpdateExpression"] == "ADD #last :n" and "ConditionExpression" in update
    other = DynamoJobStore(aws.plane.table, aws.dynamodb)  # another process: the same counter
    assert other.reserve_ids(5) == 1002 and aws.store.reserve_ids(1) == 1007


def test_the_counter_refuses_to_pass_twelve_digits(aws):
    aws.dynamodb.put_item(TableName=aws.plane.table, Item={
        "pk": {"S": "sequence"}, "sk": {"S": "sequence"}, "last": {"N": str(ids.MAX_SEQUENCE - 2)}})
    assert aws.store.reserve_ids(2) == ids.MAX_SEQUENCE - 1
    with pytest.raises(SpecError, match="job ids are used up"):
        aws.store.reserve_ids(1)


def test_a_burst_of_lone_submits_writes_the_counter_once_a_block(aws, cfg):
    blocks = ids.SequenceBlocks(aws.store.reserve_ids, block=1, max_block=1000, lifetime=60.0)
    scheduler = Scheduler(cfg, aws.store, aws.queue, aws.logs, server="Test", sequence=blocks)
    sent = requests(aws)
    made = [scheduler.submit([{"command": ["true"]}], Caller("alice"))[0]["id"] for _ in range(40)]
    assert made == [str(i) for i in range(1, 41)]
    counter_writes = [p for name, p in sent if name == "UpdateItem" and p["Key"]["pk"]["S"] == "sequence"]
    assert len(counter_writes) == 6  # blocks of 1, 2, 4, 8, 16, 32


# ---- submissions ----------------------------------------------------------------------------

def test_a_block_is_one_submission_put_then_batch_writes(aws):
    docs = block(60)
    sent = requests(aws)
    aws.store.create(docs, [(docs[0]["id"], docs[1]["id"])])
    ops = [name for name, _ in sent]
    assert ops == ["PutItem", "PutItem", "BatchWriteItem", "BatchWriteItem", "BatchWriteItem"]
    assert sent[0][1]["Item"] == {"pk": {"S": "owners"}, "sk": {"S": "alice"}}  # the registry, first sight
    put = sent[1][1]
    assert put["ConditionExpression"] == "attribute_not_exists(pk)"
    written = [r["PutRequest"]["Item"] for _, p in sent[2:] for r in p["RequestItems"][aws.plane.table]]
    assert [len(p["RequestItems"][aws.plane.table]) for _, p in sent[2:]] == [25, 25, 11]  # 60 jobs + 1 edge
    assert [i["pk"]["S"] for i in written[:60]] == [d["id"] for d in docs]
    assert not any("gsi1pk" in i or "gsi1sk" in i for i in written)
    assert written[60]["sk"] == {"S": f"parent#{docs[0]['id']}"}

    sub = submission(aws, docs[0]["id"])
    assert (sub["gsi1pk"], sub["gsi1sk"], sub["queue"]) == (
        {"S": "alice"}, {"S": ids.sort_key(docs[0]["id"])}, {"S": "batch"})
    assert sub["members"] == encode([d["id"] for d in docs])
    now = aws.store.clock()
    assert abs(int(sub["expires_at"]["N"]) - (now + 2 * 30 * DAY + 14 * DAY)) < 60
    assert aws.store.get_many(d["id"] for d in docs) == {d["id"]: d for d in docs}
    assert aws.store.dependents(docs[0]["id"]) == [docs[1]["id"]]
    assert "TransactWriteItems" not in aws.calls


def test_a_submission_of_several_queues_carries_no_queue(aws):
    docs = block(3)
    docs[1]["queue"] = "west"
    aws.store.create(docs, [])
    assert "queue" not in submission(aws, docs[0]["id"])


def test_a_second_submission_of_the_same_ids_is_a_conflict_and_writes_nothing(aws):
    first = block(3)
    aws.store.create(first, [])
    clash = [job(d["id"], owner="bob") for d in first]  # a bug elsewhere handed out the same ids again
    aws.calls.clear()
    with pytest.raises(Conflict, match="submission"):
        aws.store.create(clash, [(first[0]["id"], clash[0]["id"])])
    assert aws.calls == ["PutItem", "PutItem"]  # bob's registry entry, the refused submission
    assert {d["owner"] for d in aws.store.get_many(d["id"] for d in first).values()} == {"alice"}
    assert aws.store.dependents(first[0]["id"]) == []
    assert submission(aws, first[0]["id"])["gsi1pk"] == {"S": "alice"}


def test_a_retried_submission_put_recognises_its_own_write(aws, retried):
    docs = block(3)
    aws.store.create([job()], [])  # registry entry made: the next PutItem is the submission's
    sent = retried("PutItem")
    aws.store.create(docs, [])
    assert sent and sent[0]["Item"]["sk"] == {"S": "submission"}
    assert aws.store.get_many(d["id"] for d in docs) == {d["id"]: d for d in docs}


def test_a_failed_batch_write_undoes_the_submission(aws):
    docs = block(60)
    calls = []

    def fail_second(model, **kwargs):
        if model.name == "BatchWriteItem":
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("network down")

    aws.dynamodb.meta.events.register("before-call.dynamodb.BatchWriteItem", fail_second)
    with pytest.raises(RuntimeError, match="network down"):
        aws.store.create(docs, [])
    assert aws.store.get_many(d["id"] for d in docs) == {}
    assert submission(aws, docs[0]["id"]) is None
    assert aws.store.query(owner="alice").items == []


def test_a_workflows_record_that_cannot_be_put_undoes_its_jobs_edges_and_submission(aws):
    docs = block(3)
    edges = [(docs[0]["id"], docs[1]["id"]), (docs[1]["id"], docs[2]["id"])]
    record = {"name": "sweep", "owner": "alice", "created_at": 1.0, "steps": {f"s{i}": d["id"] for i, d in enumerate(docs)}}

    def fail_record(model, params, **kwargs):
        if params["Key" if "Key" in params else "Item"]["pk"]["S"].startswith("workflow#"):
            raise RuntimeError("network down")

    aws.dynamodb.meta.events.register("provide-client-params.dynamodb.PutItem", fail_record)
    with pytest.raises(RuntimeError, match="network down"):
        aws.store.create(docs, edges, record)
    assert aws.store.get_many(d["id"] for d in docs) == {}
    assert aws.store.dependents(docs[0]["id"]) == [] and submission(aws, docs[0]["id"]) is None
    assert aws.store.query(owner="alice").items == []
    assert item(aws, "workflow#alice", "sweep") is None


def test_unprocessed_batch_items_are_sent_again(aws):
    docs = block(5)
    answered = []

    def throttle_once(model, params, **kwargs):  # the first call writes nothing and gives everything back
        if not answered:
            body = json.loads(params["body"])
            answered.append(body)
            return botocore.awsrequest.AWSResponse("https://stub", 200, {}, None), {
                "UnprocessedItems": body["RequestItems"]}

    aws.dynamodb.meta.events.register("before-call.dynamodb.BatchWriteItem", throttle_once)
    aws.store.create(docs, [])
    assert answered and aws.store.get_many(d["id"] for d in docs) == {d["id"]: d for d in docs}


def test_a_block_of_several_owners_is_transacted_and_still_claims_its_ids(aws):
    docs = block(3)
    docs[2]["owner"] = "bob"
    aws.store.create(docs, [])
    assert "TransactWriteItems" in aws.calls and "BatchWriteItem" in aws.calls  # the registry: two owners
    assert all(item(aws, d["id"])["gsi1pk"] == {"S": d["owner"]} for d in docs)
    claim = submission(aws, docs[0]["id"])
    assert claim is not None and "gsi1pk" not in claim  # in no index
    with pytest.raises(Conflict):
        aws.store.create([job(d["id"]) for d in docs], [])
    assert [d["id"] for d in aws.store.query(owner="bob").items] == [docs[2]["id"]]


def test_ids_that_are_not_one_run_keep_the_transaction(aws):
    docs = [job(), job()]
    docs[1]["id"] = str(int(docs[1]["id"]) + 5)  # not consecutive: no submission
    aws.store.create(docs, [])
    assert "TransactWriteItems" in aws.calls and "BatchWriteItem" not in aws.calls
    assert submission(aws, docs[0]["id"]) is None


def test_a_submit_of_many_takes_one_run_of_ids_and_is_one_submission(aws, cfg):
    scheduler = Scheduler(cfg, aws.store, aws.queue, aws.logs, server="Test")
    other = Scheduler(cfg, DynamoJobStore(aws.plane.table, aws.dynamodb), aws.queue, aws.logs, server="Test")
    jobs = scheduler.submit([{"command": ["true"]}] * 3, Caller("alice"))
    assert [j["id"] for j in jobs] == ["1", "2", "3"] and jobs[0]["server"] == "Test"
    assert submission(aws, "1")["members"] == encode(["1", "2", "3"])
    theirs = other.submit([{"command": ["true"]}] * 2, Caller("alice"))  # another process: ids of its own
    again = scheduler.submit([{"command": ["true"]}] * 2, Caller("alice"))
    assert [j["id"] for j in theirs + again] == ["4", "5", "6", "7"]
    assert [d["id"] for d in aws.store.query(owner="alice").items] == ["7", "6", "5", "4", "3", "2", "1"]


# ---- listings -------------------------------------------------------------------------------

def test_an_owner_listing_reads_one_entry_for_a_whole_block(aws):
    docs = block(500)
    aws.store.create(docs, [])
    aws.calls.clear()
    page = aws.store.query(owner="alice", limit=200)
    assert [d["id"] for d in page.items] == [d["id"] for d in reversed(docs)][:200]
    assert aws.calls == ["Query", "BatchGetItem", "BatchGetItem"]
    aws.calls.clear()
    rest = aws.store.query(owner="alice", limit=1000, next=page.next)
    assert [d["id"] for d in rest.items] == [d["id"] for d in reversed(docs)][200:] and rest.next is None


def test_the_next_page_finds_a_block_that_began_before_its_token(aws):
    older = job()
    aws.store.create([older], [])
    docs = block(4)
    aws.store.create(docs, [])
    requests_sent = requests(aws)
    first = aws.store.query(owner="alice", limit=2)
    second = aws.store.query(owner="alice", limit=10, next=first.next)
    assert [d["id"] for d in second.items] == [docs[1]["id"], docs[0]["id"], older["id"]]
    key = [p for name, p in requests_sent if name == "Query"][-1]
    bound = [v["S"] for v in key["ExpressionAttributeValues"].values() if v["S"] != "alice"]
    assert bound == [ids.sort_key(first.next)]  # entries whose first member is below the token


def test_a_queue_filter_skips_single_queue_blocks_in_the_index(aws):
    aws.store.create(block(50, queue="west"), [])
    wanted = job()
    aws.store.create([wanted], [])
    aws.calls.clear()
    assert aws.store.query(owner="alice", queue="batch").items == [wanted]
    assert aws.calls == ["Query", "BatchGetItem"]  # the west block's 50 items were never fetched


def test_an_admin_listing_reads_the_registry_and_each_owner(aws):
    for owner in ("alice", "bob", "carol"):
        aws.store.create(block(2, owner=owner), [])
    ownerless = job(owner="")
    aws.store.create([ownerless], [])
    aws.calls.clear()
    page = aws.store.query(limit=100)
    assert len(page.items) == 6 and ownerless not in page.items  # no owner: in no owner's listing
    assert aws.calls == ["Query"] * 4 + ["BatchGetItem"]
    fresh = DynamoJobStore(aws.plane.table, aws.dynamodb)
    assert sorted(fresh.owners()) == ["alice", "bob", "carol"]
    aws.calls.clear()
    fresh.create([job(owner="bob")], [])
    assert aws.calls == ["PutItem"]  # bob was read from the registry: not written again


def test_waiting_and_held_listings_read_by_queue_state(aws):
    held = block(3, state="HELD")
    aws.store.create(held, [])
    aws.store.create([job(state="WAITING"), job(), job(queue="west", state="HELD")], [])
    sent = requests(aws)
    page = aws.store.query(queue="batch", states=["HELD"])
    assert [d["id"] for d in page.items] == [d["id"] for d in reversed(held)]
    (name, query), *_ = sent
    assert name == "Query" and query["IndexName"] == "by_queue_state"
    assert "FilterExpression" in query  # only HELD: the state is filtered in the index
    sent.clear()
    assert len(aws.store.query(states=["WAITING", "HELD"]).items) == 5
    assert [p["IndexName"] for name, p in sent if name == "Query"] == ["by_queue_state"] * 2  # one per queue


# ---- counts from the stream -----------------------------------------------------------------

def image(**fields):
    return {k: encode(v) for k, v in fields.items()}


def record(kind, old=None, new=None, sk="job"):
    data = {"Keys": {"pk": {"S": "12"}, "sk": {"S": sk}}}
    if old is not None:
        data["OldImage"] = image(**old)
    if new is not None:
        data["NewImage"] = image(**new)
    return {"eventName": kind, "dynamodb": data}


def test_deltas_take_old_images_out_and_put_new_ones_in():
    queued = {"queue": "batch", "state": "QUEUED", "array": None, "pending": 0}
    running = {**queued, "state": "RUNNING"}
    array = {"queue": "batch", "state": "QUEUED", "array": "0-99", "pending": 100}
    done = {**queued, "state": "SUCCEEDED"}
    records = [
        record("INSERT", new=queued),
        record("MODIFY", old=queued, new=running),
        record("INSERT", new=array),
        record("MODIFY", old=array, new={**array, "state": "RUNNING", "pending": 60}),
        record("MODIFY", old=running, new=running),  # a heartbeat: nothing changes
        {**record("REMOVE", old=done), "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"}},
        record("MODIFY", old={**queued, "state": "HELD"}, new={**queued, "queue": "west"}),  # moved between queues
        record("INSERT", new={"queue": "batch", "members": ["x"]}, sk="submission"),
        record("INSERT", new={}, sk="parent#13"),
        record("MODIFY", old={"QUEUED": 3}, new={"QUEUED": 4}, sk="counts"),
    ]
    assert counters.deltas(records) == {
        "batch": {"RUNNING": 2, "SUCCEEDED": -1, "HELD": -1, "tasks_pending": 1 - 1 + 100 - 100 + 60},  # QUEUED nets 0
        "west": {"QUEUED": 1, "tasks_pending": 1},
    }
    assert counters.deltas([record("MODIFY", old=running, new=running)]) == {}


def test_pending_work_of_a_queues_other_size_is_counted_on_its_pool():
    big = {"queue": "batch", "pool": "batch--large", "state": "QUEUED", "array": "0-9", "pending": 10}
    assert counters.deltas([record("INSERT", new=big)]) == {
        "batch": {"QUEUED": 1}, "batch--large": {"tasks_pending": 10},
    }
    resized = {**big, "pool": None}  # a qalter back to the queue's default size
    assert counters.deltas([record("MODIFY", old=big, new=resized)]) == {
        "batch": {"tasks_pending": 10}, "batch--large": {"tasks_pending": -10},
    }


@pytest.mark.parametrize("doc, pending", [
    ({"state": "QUEUED"}, 1), ({"state": "RUNNING"}, 0), ({"state": "HELD"}, 0),
    ({"state": "QUEUED", "array": "0-9", "pending": 7}, 7), ({"state": "RUNNING", "array": "0-9", "pending": 3}, 3),
    ({"state": "HELD", "array": "0-9", "pending": 10}, 0), ({"state": "FAILED", "array": "0-9", "pending": 2}, 0),
])
def test_pending_of(doc, pending):
    assert counters.pending_of(doc) == pending


def test_tally_is_one_update_per_queue_and_one_transaction_for_several(aws):
    queued = {"queue": "batch", "state": "QUEUED", "array": None, "pending": 0}
    aws.store.tally([record("MODIFY", old=queued, new={**queued, "reason": "x"})])
    assert aws.calls == []  # no count changed: no write
    aws.store.tally([record("INSERT", new=queued)])
    assert aws.calls == ["UpdateItem"]
    aws.calls.clear()
    aws.store.tally([record("INSERT", new=queued), record("INSERT", new={**queued, "queue": "west"})])
    assert aws.calls == ["TransactWriteItems"]
    assert aws.store.counts("batch") == {"QUEUED": 2} and aws.store.pending_tasks("west") == 1


def test_a_retried_tally_counts_once(aws, retried):
    queued = {"queue": "batch", "state": "QUEUED", "array": None, "pending": 0}
    sent = retried("UpdateItem")
    aws.store.tally([record("INSERT", new=queued)])
    assert sent and aws.store.counts("batch") == {"QUEUED": 1} and aws.store.pending_tasks("batch") == 1


def test_counts_and_pending_tasks_from_the_stream(aws, stream):
    arrays = block(2, array="0-99", total=100, pending=100)
    aws.store.create(arrays, [])
    plain = [job(), job(), job(state="RUNNING"), job(state="SUCCEEDED", finished_at=1.0), job(queue="west")]
    aws.store.create(plain, [])
    aws.store.update(arrays[1]["id"], Expect.state(JobState.QUEUED),
                     Change(set={"state": JobState.RUNNING}, add={"pending": -40, "running": 40}))
    aws.store.update(plain[0]["id"], Expect.state(JobState.QUEUED), Change(set={"state": JobState.HELD}))
    aws.store.update(plain[1]["id"], Expect.state(JobState.QUEUED),
                     Change(set={"queue": "west", "state": JobState.QUEUED}))  # moved between queues
    # TTL expiry (here: a delete, the same REMOVE record with the old image).
    aws.dynamodb.delete_item(TableName=aws.plane.table, Key={"pk": {"S": plain[3]["id"]}, "sk": {"S": "job"}})
    aws.store.tally(stream.records())
    assert aws.store.counts("batch") == {"HELD": 1, "QUEUED": 1, "RUNNING": 2}
    assert aws.store.pending_tasks("batch") == 100 + 60
    assert aws.store.counts("west") == {"QUEUED": 2} and aws.store.pending_tasks("west") == 2
    # The counts items' own writes are in the stream too, and count nothing.
    aws.store.tally(stream.records())
    assert aws.store.counts("batch") == {"HELD": 1, "QUEUED": 1, "RUNNING": 2}


def test_an_undone_create_counts_nothing(aws):
    taken = job()
    aws.store.create([taken], [])
    with pytest.raises(Conflict):
        aws.store.create([job() for _ in range(100)] + [taken], [])  # the second transaction fails
    # Opened only now: moto rolls a failed transaction back by swapping in a copy of the table (and its stream).
    stream = StreamReader(aws.dynamodb, aws.plane.table)
    aws.store.tally(stream.records())
    assert aws.store.counts("batch") == {"QUEUED": 1} and aws.store.pending_tasks("batch") == 1


def test_counts_read_one_item_strongly(aws):
    sent = requests(aws)
    assert aws.store.counts("batch") == {} and aws.store.pending_tasks("batch") == 0
    assert [name for name, _ in sent] == ["GetItem", "GetItem"]
    assert all(p["ConsistentRead"] and p["Key"]["pk"] == {"S": "counts#batch"} for _, p in sent)

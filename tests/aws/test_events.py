"""DynamoDB Streams records -> the same events the local events table yields, and the work they send
(hyperbatch.adapters.aws.stream: the release function's batches, parked batches read back by the reconciler)."""

import json
from types import SimpleNamespace

import boto3
import pytest
from botocore.exceptions import ClientError

from hyperbatch.core import tasks
from hyperbatch.adapters.aws import stream
from hyperbatch.services import stream_release
from hyperbatch.adapters.aws.items import encode
from hyperbatch.adapters.aws.events import events_from_stream
from hyperbatch.adapters.local import open_local
from tests.handmade_ids import new_job_id
from hyperbatch.core.model import Change, Expect, new_job
from hyperbatch.core.outbox import to_send
from hyperbatch.core.ports import Event
from hyperbatch.core.states import JobState

REGION = "us-east-1"  # as the aws fixture (tests/aws/conftest.py)


def image(**fields):
    return {k: encode(v) for k, v in fields.items()}


def record(kind, sk="job", new=None, old=None):
    data = {"Keys": {"pk": {"S": "J"}, "sk": {"S": sk}}, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    if new is not None:
        data["NewImage"] = new
    if old is not None:
        data["OldImage"] = old
    return {"eventName": kind, "dynamodb": data}


def test_records_become_state_change_events():
    records = [
        record("INSERT", new=image(id="J1", state="QUEUED", queue="batch")),
        record("MODIFY", new=image(id="J1", state="RUNNING", queue="batch"), old=image(id="J1", state="QUEUED", queue="batch")),
        record("MODIFY", new=image(id="J1", state="RUNNING", queue="batch", reason="x"),
               old=image(id="J1", state="RUNNING", queue="batch")),  # no state change
        record("INSERT", sk="parent#J0", new=image(pk="J1", sk="parent#J0", gsi3pk="J0")),  # an edge
        record("REMOVE", old=image(id="J1", state="SUCCEEDED", queue="batch")),  # TTL expiry
        record("MODIFY", new=image(id="J1", state="SUCCEEDED", queue="batch"), old=image(id="J1", state="RUNNING", queue="batch")),
    ]
    assert events_from_stream(records) == [
        Event("J1", None, "QUEUED", "batch"),
        Event("J1", "QUEUED", "RUNNING", "batch"),
        Event("J1", "RUNNING", "SUCCEEDED", "batch"),
    ]


def stream_records(aws):
    # botocore resolves stream ARNs to an account endpoint (<account>.streams-ddb...) that moto
    # 5.2.5 does not route; the regional endpoint reaches the same moto backend.
    streams = boto3.client("dynamodbstreams", region_name=REGION,
                           endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com")
    arn = aws.dynamodb.describe_table(TableName=aws.plane.table)["Table"]["LatestStreamArn"]
    out = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator)
            out += page["Records"]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return out


def test_the_table_stream_yields_what_the_local_events_table_does(aws, tmp_path):
    local = open_local(tmp_path)
    parent = new_job(id=new_job_id(), owner="alice", queue="batch", definition="standard")
    child = new_job(id=new_job_id(), owner="alice", queue="west", definition="standard", state="WAITING")

    def story(store):
        store.create([dict(parent), dict(child)], [(parent["id"], child["id"])])
        store.update(parent["id"], Expect.state(JobState.QUEUED), Change(set={"state": JobState.RUNNING}))
        store.update(parent["id"], Expect(), Change(add={"run_count": 1}))  # not a transition
        store.update(parent["id"], Expect.state(JobState.RUNNING),
                     Change(set={"state": JobState.SUCCEEDED, "finished_at": 5.0}))
        store.update(child["id"], Expect.state(JobState.WAITING), Change(set={"state": JobState.QUEUED}))

    story(local.store)
    story(aws.store)
    expected = [event for _, event in local.store.events_after(0)]
    assert events_from_stream(stream_records(aws)) == expected
    assert len(expected) == 5


# ---- the stream sends work: hyperbatch.adapters.aws.stream -----------------------------------------------


def streams_client():
    return boto3.client("dynamodbstreams", region_name=REGION,
                        endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com")


def test_what_the_stream_says_to_send_is_what_the_documents_say(aws):
    """to_send over the decoded stream images equals to_send over the documents the store returned."""
    job = new_job(id=new_job_id(), owner="alice", queue="batch", definition="standard", max_attempts=2)
    arr = new_job(id=new_job_id(), owner="alice", queue="west", definition="standard", array="1-10",
                  total=10, pending=10, priority=3)
    expected = []
    aws.store.create([dict(job), dict(arr)], [])
    expected += to_send(None, aws.store.get(job["id"])) + to_send(None, aws.store.get(arr["id"]))

    def step(job_id, expect, change):
        old = aws.store.get(job_id)
        expected.extend(to_send(old, aws.store.update(job_id, expect, change)))

    step(job["id"], Expect.state(JobState.QUEUED), Change(set={"state": JobState.RUNNING}))
    step(job["id"], Expect.state(JobState.RUNNING), Change(set={"state": JobState.QUEUED, "attempt": 2}))
    step(arr["id"], Expect.move(JobState.RUNNING), Change(set={"state": JobState.RUNNING, "dispatched": [[0, 4]], "pending": 6,
                                          "running": 4}))
    retries = tasks.pages_by_index("1-10", {"3": 2, "4": 2})
    step(arr["id"], Expect.move(JobState.QUEUED, JobState.RUNNING), Change(set={"dispatched": [[0, 2]], tasks.RETRY_MAP: retries, "running": 0,
                                          "state": JobState.QUEUED}))
    assert expected == [
        ("batch", job["id"], 0, 1, 1, 0), ("west", arr["id"], 0, 10, 1, 3), ("batch", job["id"], 0, 1, 2, 0),
        ("west", arr["id"], 2, 4, 1, 3), ("west", arr["id"], 2, 3, 2, 3), ("west", arr["id"], 3, 4, 2, 3),
    ]
    found = [item for r in stream_records(aws) for item in to_send(*stream.job_images(r))]
    assert found == expected


def test_job_images_are_the_documents_of_job_items_only():
    doc = new_job(id="J1", queue="batch", state="QUEUED")
    assert stream.job_images(record("INSERT", new=image(**doc))) == (None, doc)
    assert stream.job_images(record("REMOVE", old=image(**doc))) == (doc, None)
    edge = record("INSERT", sk="parent#J0", new=image(pk="J1", sk="parent#J0", gsi3pk="J0"))
    assert stream.job_images(edge) == (None, None)
    assert stream.job_images(record("MODIFY", sk="counts", new=image(QUEUED=3))) == (None, None)


class Recorder:
    """Stands in for the SQS queue (send_many) and the store (tally)."""

    def __init__(self):
        self.sent, self.tallied = [], []

    def send_many(self, items):
        self.sent.append(list(items))

    def tally(self, records):
        self.tallied.append(list(records))


def test_a_batch_is_handled_in_order_up_to_its_first_failed_record():
    docs = [new_job(id=f"J{i}", queue="batch", state="QUEUED") for i in range(4)]
    records = [record("INSERT", new=image(**d)) for d in docs]
    del records[1]["dynamodb"]["NewImage"]["array"]  # not a job document: to_send fails on it
    for r, n in zip(records, range(4)):
        r["dynamodb"]["SequenceNumber"] = str(100 + n)
    out = Recorder()
    result = stream_release.handle(records, SimpleNamespace(), out, out, stream.decode_record)
    assert result.handled == 1 and [r["dynamodb"]["SequenceNumber"] for r in result.failed] == ["101", "102", "103"]
    assert isinstance(result.error, KeyError)
    assert out.sent == [[("batch", "J0", 0, 1, 1, 0)]] and out.tallied == [records[:1]]
    assert dict(result.metrics.counts["batch"]) == {"JobsSubmitted": 1}
    # Once a record failed, the later ones fail without being looked at.
    batch = stream_release.StreamBatch(SimpleNamespace(), out, out, stream.decode_record)
    with pytest.raises(KeyError):
        batch.handle_record(records[1])
    with pytest.raises(stream_release.AfterFailedRecord):
        batch.handle_record(records[2])


def test_a_batch_with_nothing_to_send_sends_nothing_and_counts_what_it_handled():
    out = Recorder()
    edge = record("INSERT", sk="parent#J0", new=image(pk="J1", sk="parent#J0", gsi3pk="J0"))
    result = stream_release.handle([edge], SimpleNamespace(), out, out, stream.decode_record)
    assert (result.handled, result.failed, result.sent) == (1, [], 0)
    assert out.sent == [] and out.tallied == [[edge]]
    assert stream_release.handle([], SimpleNamespace(), out, out, stream.decode_record).handled == 0 and out.tallied == [[edge]]


def test_the_queue_the_core_holds_on_aws_sends_nothing_and_requeue_only_deletes(aws):
    wrapped = stream.StreamSentQueue(aws.queue)
    wrapped.send("batch", "J1", 0, 1, 1)
    wrapped.send_many([("batch", "J2", 0, 1, 1, 0)])
    assert aws.queue.backlog("batch") == 0
    aws.queue.send("batch", "J3", 0, 1, 1)
    item = wrapped.claim("batch", "w", 1, 30)  # passes through
    assert item.job_id == "J3" and wrapped.in_flight("batch") == 1
    wrapped.requeue(item, item.lo, 2)
    wrapped.flush()  # the ack may be buffered (SqsWorkQueue.flush), which passes through too
    assert (aws.queue.backlog("batch"), aws.queue.in_flight("batch")) == (0, 0)
    assert not hasattr(stream.StreamSentQueue(SimpleNamespace(claim=None)), "flush")


def park(aws, sqs, url, records):
    arn = aws.dynamodb.describe_table(TableName=aws.plane.table)["Table"]["LatestStreamArn"]
    shard = streams_client().describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    info = {"shardId": shard, "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
            "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"], "batchSize": len(records),
            "streamArn": arn, "approximateArrivalOfFirstRecord": "2024-01-01T00:00:00Z",
            "approximateArrivalOfLastRecord": "2024-01-01T00:00:00Z"}
    body = {"requestContext": {"condition": "RetryAttemptsExhausted"}, "version": "1.0", "DDBStreamBatchInfo": info}
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
    return info


def test_a_parked_batch_is_read_back_from_the_stream_exactly(aws):
    url = aws.sqs.create_queue(QueueName="Test-release-failures")["QueueUrl"]
    docs = [new_job(id=new_job_id(), owner="alice", queue="batch", definition="standard") for _ in range(5)]
    for doc in docs:
        aws.store.create([dict(doc)], [])
    records = [r for r in stream_records(aws) if r["dynamodb"]["Keys"]["sk"]["S"] == "job"]
    assert len(records) == 5
    park(aws, aws.sqs, url, records[1:4])
    aws.sqs.send_message(QueueUrl=url, MessageBody="not a batch")
    parked = stream.ParkedBatches(aws.sqs, url, streams_client())
    batches = parked.receive()
    assert len(batches) == 1
    read = parked.records(batches[0])
    assert [r["dynamodb"]["SequenceNumber"] for r in read] == [r["dynamodb"]["SequenceNumber"] for r in records[1:4]]
    assert all(r["eventSourceARN"].endswith(batches[0].info["streamArn"].split("/", 1)[1]) for r in read)
    assert all(isinstance(r["dynamodb"]["ApproximateCreationDateTime"], int) for r in read)


def test_redrive_sends_and_counts_a_parked_batch_once_and_parks_again_what_fails_again(aws, monkeypatch):
    url = aws.sqs.create_queue(QueueName="Test-release-failures")["QueueUrl"]
    docs = [new_job(id=new_job_id(), owner="alice", queue="batch", definition="standard") for _ in range(3)]
    for doc in docs:
        aws.store.create([dict(doc)], [])
    records = [r for r in stream_records(aws) if r["dynamodb"]["Keys"]["sk"]["S"] == "job"]
    park(aws, aws.sqs, url, records)
    parked = stream.ParkedBatches(aws.sqs, url, streams_client())
    scheduler = SimpleNamespace()
    real = stream_release.to_send

    def fails_on_the_second(old, new):
        if new["id"] == docs[1]["id"]:
            raise RuntimeError("not now")
        return real(old, new)

    monkeypatch.setattr(stream_release, "to_send", fails_on_the_second)
    assert stream_release.redrive(parked, scheduler, aws.queue, aws.store, stream.decode_record) == {"batches": 0, "records": 1, "lost": 0}
    assert aws.queue.backlog("batch") == 1 and aws.store.counts("batch")["QUEUED"] == 1
    monkeypatch.setattr(stream_release, "to_send", real)
    assert stream_release.redrive(parked, scheduler, aws.queue, aws.store, stream.decode_record) == {"batches": 1, "records": 2, "lost": 0}
    assert aws.queue.backlog("batch") == 3 and aws.store.counts("batch")["QUEUED"] == 3
    assert stream_release.redrive(parked, scheduler, aws.queue, aws.store, stream.decode_record) == {"batches": 0, "records": 0, "lost": 0}


def test_a_parked_batch_the_stream_no_longer_has_is_dropped_as_lost(aws):
    url = aws.sqs.create_queue(QueueName="Test-release-failures")["QueueUrl"]
    aws.store.create([new_job(id=new_job_id(), owner="alice", queue="batch", definition="standard")], [])
    park(aws, aws.sqs, url, stream_records(aws)[:1])

    class Trimmed:
        def get_shard_iterator(self, **_):
            raise ClientError({"Error": {"Code": "TrimmedDataAccessException", "Message": "gone"}}, "GetShardIterator")

    parked = stream.ParkedBatches(aws.sqs, url, Trimmed())
    assert stream_release.redrive(parked, SimpleNamespace(), aws.queue, aws.store, stream.decode_record) == {"batches": 0, "records": 0, "lost": 1}
    assert "Messages" not in aws.sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)

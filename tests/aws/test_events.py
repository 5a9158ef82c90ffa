"""DynamoDB Streams records -> the same events the local events table yields."""

import boto3

from hyperbatch.aws.dynamo import encode
from hyperbatch.aws.events import events_from_stream
from hyperbatch.backends import open_local
from hyperbatch.ids import new_job_id
from hyperbatch.model import Change, Expect, new_job
from hyperbatch.ports import Event
from hyperbatch.states import JobState

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

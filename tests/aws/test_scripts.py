"""Large scripts live in the files bucket (moto S3); the job item, and so the stream, keeps a reference."""

import boto3
import pytest

from hyperbatch.adapters.aws.dynamo import DynamoJobStore
from hyperbatch.adapters.aws.items import item_bytes
from hyperbatch.adapters.aws.scripts import INLINE_SCRIPT_BYTES, S3Scripts, script_key
from tests.handmade_ids import new_job_id, new_job_ids
from hyperbatch.core.model import new_job
from tests.aws.conftest import REGION, count_calls

BUCKET = "test-scripts-123456789012-us-east-1"
SMALL = "#!/bin/sh\necho small\n"
LARGE = "#!/bin/sh\n" + "# a real script's comments and functions\n" * 200 + "echo large\n"  # about 8 KB


@pytest.fixture
def scripts_store(aws):
    s3_calls: list[str] = []
    s3 = count_calls(boto3.client("s3", region_name=REGION), s3_calls)
    s3.create_bucket(Bucket=BUCKET)
    s3_calls.clear()
    store = DynamoJobStore(aws.plane.table, aws.dynamodb, queues=["batch", "west"], scripts=S3Scripts(s3, BUCKET))
    return store, s3, s3_calls


def item(aws, job_id):
    return aws.dynamodb.get_item(TableName=aws.plane.table, Key={"pk": {"S": job_id}, "sk": {"S": "job"}})["Item"]


def job(job_id, script):
    return new_job(id=job_id, owner="alice", queue="batch", definition="standard", script=script)


def test_a_large_script_is_in_the_bucket_and_the_item_only_names_it(aws, scripts_store):
    store, s3, s3_calls = scripts_store
    assert len(LARGE.encode()) > INLINE_SCRIPT_BYTES >= len(SMALL.encode())
    small, large = new_job_id(), new_job_id()
    store.create([job(small, SMALL)], [])
    store.create([job(large, LARGE)], [])
    assert s3_calls == ["PutObject"]  # the small one stays inline
    stored = item(aws, large)
    assert "script" not in stored or "NULL" in stored["script"]
    assert stored["script_ref"] == {"S": script_key(LARGE)} and item_bytes(stored) < 2048
    assert s3.get_object(Bucket=BUCKET, Key=script_key(LARGE))["Body"].read().decode() == LARGE
    # What a worker reads: the text, wherever it is kept.
    assert store.script(store.get(large)) == LARGE
    assert store.script(store.get(small)) == SMALL
    assert item(aws, small)["script"] == {"S": SMALL}


def test_a_batch_of_one_8kb_script_puts_it_once_and_writes_small_items(aws, scripts_store):
    """(1,000 of them through the API: tests/aws_box/test_jobs.py.)"""
    store, s3, s3_calls = scripts_store
    sent = []
    aws.dynamodb.meta.events.register(
        "provide-client-params.dynamodb.*", lambda params, model, **kw: sent.append((model.name, params)))
    docs = [job(i, LARGE) for i in new_job_ids(100)]
    store.create(docs, [])
    assert s3_calls == ["PutObject"]
    writes = [params for name, params in sent if name == "BatchWriteItem"]
    assert len(writes) == 4
    for params in writes:
        (requests,) = params["RequestItems"].values()
        assert len(requests) <= 25 and item_bytes(params) < 16 * 1024 * 1024
        assert max(item_bytes(r["PutRequest"]["Item"]) for r in requests) < 2048  # no script in any item
    assert store.script(store.get(docs[-1]["id"])) == LARGE


def test_without_a_bucket_a_reference_is_a_clear_error(aws, scripts_store):
    store, _, _ = scripts_store
    job_id = new_job_id()
    store.create([job(job_id, LARGE)], [])
    bare = DynamoJobStore(aws.plane.table, aws.dynamodb, queues=["batch"])
    with pytest.raises(RuntimeError, match="no bucket is configured"):
        bare.script(bare.get(job_id))

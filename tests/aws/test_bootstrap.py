"""The adapters' view of the deployment matches the CDK stack's; wiring from the stack's environment."""

import json

import pytest

from hyperbatch.adapters.aws import clients, from_environment, sqs
from tests.handmade_ids import new_job_id
from hyperbatch.core.model import new_job


def test_the_redrive_count_matches_the_stack():
    pytest.importorskip("aws_cdk")
    from stacks import storage

    assert sqs.MAX_RECEIVE_COUNT == storage.MAX_RECEIVE_COUNT


def test_adapters_from_the_stack_environment(aws):
    env = {
        "HYPER_MAIN_REGION": "us-east-1",
        "HYPER_TABLE": aws.plane.table,
        "HYPER_QUEUE_URLS": json.dumps(aws.plane.queue_urls),
        "HYPER_DLQ_URLS": json.dumps(aws.plane.dead_letter_urls),
        "HYPER_LOG_GROUP_PREFIX": aws.plane.log_group_prefix,
    }
    clients.reset()
    backend = from_environment(env, wait_seconds=0)
    doc = new_job(id=new_job_id(), owner="alice", queue="west", definition="standard")
    backend.store.create([doc], [])
    backend.queue.send("west", doc["id"], 0, 1, 1)
    assert backend.queue.claim("west", "w", 1, 30).job_id == doc["id"]
    assert backend.store.query(states=["QUEUED"]).items == [doc]  # the queue names came from the URLs
    assert backend.logs.group(doc["id"]) == f"{aws.plane.log_group_prefix}west"
    clients.reset()  # they were made under this test's mock


def test_clients_are_made_once_per_service_and_region(monkeypatch):
    from hyperbatch.adapters.aws import clients

    monkeypatch.setenv("HYPER_MAIN_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    clients.reset()
    try:
        sqs_client = clients.client("sqs")
        assert clients.client("sqs", "eu-west-1") is sqs_client
        assert sqs_client.meta.region_name == "eu-west-1"
        assert clients.client("sqs", "us-west-2") is not sqs_client
        assert sqs_client.meta.config.retries["mode"] == "standard"
        assert sqs_client.meta.config.read_timeout > 20  # above SQS's longest long poll
    finally:
        clients.reset()


def test_the_table_indexes_project_what_the_stack_projects(aws):
    from hyperbatch.core import names

    table = aws.dynamodb.describe_table(TableName=aws.plane.table)["Table"]
    projections = {
        gsi["IndexName"]: (gsi["Projection"]["ProjectionType"], sorted(gsi["Projection"].get("NonKeyAttributes", [])))
        for gsi in table["GlobalSecondaryIndexes"]
    }
    assert projections == {
        index: ("ALL", []) if attributes is None else ("INCLUDE", sorted(attributes))
        for index, attributes in names.INDEX_PROJECTIONS.items()
    }

"""The AWS adapters under moto (in-process `mock_aws`), with every API call counted.

`aws.calls` lists the operation names the adapters' clients called, in order
(a botocore `before-call` hook), so tests can say "one UpdateItem" or "never a Scan".
"""

from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from botocore import xform_name
from moto import mock_aws

from hyperbatch import config
from tests import aws_bootstrap as bootstrap

REGION = "us-east-1"
QUEUES = ["batch", "west"]
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configurations"


def count_calls(client, calls: list, forbidden: frozenset = frozenset()):
    def before_call(model, **kwargs):
        if model.name in forbidden:
            raise AssertionError(f"{model.name} called")
        calls.append(model.name)

    client.meta.events.register("before-call.*.*", before_call)
    return client


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        calls: list[str] = []
        dynamodb, sqs, logs = (
            count_calls(boto3.client(s, region_name=REGION), calls, frozenset({"Scan"}))
            for s in ("dynamodb", "sqs", "logs")
        )
        plane = bootstrap.create_control_plane(dynamodb, sqs, logs, "Test", QUEUES)
        backend = bootstrap.open_backend(plane, dynamodb, sqs, logs, flush_seconds=0.2)
        calls.clear()
        yield SimpleNamespace(
            store=backend.store, queue=backend.queue, logs=backend.logs, plane=plane, calls=calls,
            dynamodb=dynamodb, sqs=sqs, logs_client=logs,
        )


@pytest.fixture(scope="session")
def cfg():
    return config.load(CONFIG_DIR)


@pytest.fixture
def retried(aws):
    """`retried("PutItem")`: the next such DynamoDB request is sent twice, as botocore retries one whose
    response was lost. Returns the list that receives the first request's parameters."""

    def arm(operation: str) -> list:
        sent: list = []
        call = getattr(aws.dynamodb, xform_name(operation))

        def twice(params, **kwargs):
            if not sent:
                sent.append(params)
                call(**params)

        aws.dynamodb.meta.events.register(f"provide-client-params.dynamodb.{operation}", twice)
        return sent

    return arm

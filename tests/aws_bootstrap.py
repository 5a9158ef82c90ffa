"""Create the control plane's table, queues and log groups the way the CDK stack does.

For moto-backed tests and the AWS-in-a-box harness only: in a deployment
`stacks/storage.py` and `stacks/control_plane.py` own these resources. The
names come from hyperbatch/names.py, as the stacks' do.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from hyperbatch.core import names
from hyperbatch.adapters.aws.items import TTL_ATTRIBUTE
from hyperbatch.adapters.aws.sqs import MAX_RECEIVE_COUNT

SQS_RETENTION_SECONDS = 10 * 86400  # work queues; their dead letters are kept 14 days (stacks/storage.py)
DLQ_RETENTION_SECONDS = 14 * 86400




@dataclass(frozen=True)
class ControlPlane:
    table: str
    queue_urls: dict[str, str]
    dead_letter_urls: dict[str, str]
    log_group_prefix: str


def _projection(attributes) -> dict:
    if attributes is None:
        return {"ProjectionType": "ALL"}
    return {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(attributes)}


def create_table(dynamodb, name: str) -> None:
    attributes = {"pk", "sk", *(k for pair in names.INDEXES.values() for k in pair)}
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in sorted(attributes)],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": index,
                "KeySchema": [{"AttributeName": pk, "KeyType": "HASH"}, {"AttributeName": sk, "KeyType": "RANGE"}],
                "Projection": _projection(names.INDEX_PROJECTIONS.get(index)),
            }
            for index, (pk, sk) in names.INDEXES.items()
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
    )


def create_queues(sqs, deployment: str, queues: list[str], lease_seconds: float) -> tuple[dict, dict]:
    """A standard queue per HyperBatch queue (visibility = lease) with its DLQ after 5 receives."""
    urls, dead = {}, {}
    for name in queues:
        dlq = sqs.create_queue(
            QueueName=names.dead_letter_queue(deployment, name),
            Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)},
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        urls[name] = sqs.create_queue(
            QueueName=names.queue(deployment, name),
            Attributes={
                "VisibilityTimeout": str(math.ceil(lease_seconds)),
                "MessageRetentionPeriod": str(SQS_RETENTION_SECONDS),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": MAX_RECEIVE_COUNT}),
            },
        )["QueueUrl"]
        dead[name] = dlq
    return urls, dead


def create_log_groups(logs, deployment: str, queues: list[str]) -> str:
    prefix = names.log_group_prefix(deployment)
    for name in queues:
        logs.create_log_group(logGroupName=f"{prefix}{name}")
    return prefix


def create_control_plane(dynamodb, sqs, logs, deployment: str, queues: list[str], lease_seconds: float = 60,
                         pools: list[str] | None = None) -> ControlPlane:
    """`pools`: the work queues (a queue's other sizes have their own: hyperbatch.core.pools); default `queues`."""
    create_table(dynamodb, names.table(deployment))
    urls, dead = create_queues(sqs, deployment, queues if pools is None else pools, lease_seconds)
    prefix = create_log_groups(logs, deployment, queues)
    return ControlPlane(names.table(deployment), urls, dead, prefix)


def open_backend(plane: ControlPlane, dynamodb, sqs, logs, *, queues: list[str] | None = None, queue_of=None,
                 wait_seconds: int = 0, flush_seconds: float = 1.0, scripts=None):
    """The three adapters over a control plane made by `create_control_plane` (clients given, e.g. under moto).

    `queue_of` defaults to the store's (the job must exist before its output is written or read);
    `scripts` (an S3Scripts) is where the store keeps large scripts (inline without one).
    """
    from hyperbatch.adapters.aws import AwsBackend
    from hyperbatch.adapters.aws.dynamo import DynamoJobStore
    from hyperbatch.adapters.aws.logs import CloudWatchLogStore
    from hyperbatch.adapters.aws.sqs import SqsWorkQueue

    store = DynamoJobStore(plane.table, dynamodb, queues=queues if queues is not None else list(plane.queue_urls),
                           scripts=scripts)
    queue = SqsWorkQueue(plane.queue_urls, sqs, dead_letter_urls=plane.dead_letter_urls, wait_seconds=wait_seconds)
    log_store = CloudWatchLogStore(logs, plane.log_group_prefix, queue_of or store.queue_of,
                                   flush_seconds=flush_seconds)
    return AwsBackend(store, queue, log_store)

"""Each port's contract runs against every adapter: `backend` is parametrized by adapter kind.

"local" is the SQLite/file adapters; "aws" the DynamoDB/SQS/CloudWatch Logs
adapters under moto, on a table and queues made as the CDK stack makes them
(tests.aws_bootstrap).

Where the adapters honour a contract differently, the backend says so with a
capability, and the tests check each adapter for what it promises:

- ordered: claims come highest priority first, then oldest (a lease table
  does; SQS standard queues deliver in no particular order).
- reports_expired: lost leases are listed by `expired()` (the lease table);
  SQS redelivers them instead, marked `WorkItem.redelivered`.
- counts_positions: `backlog` counts array positions (SQS counts messages).
- tracks_jobs: `jobs_with_work` can search the queue (SQS cannot).
- time_granularity: delays and leases are rounded up to this (SQS: whole seconds).
- log_latency: seconds before written output can be read (CloudWatch: a pump
  ships it; files: at once).

`settle()` brings derived state up to date before a test reads it: on AWS the
job counts are tallied from the table's stream (what the release function does
with each batch it handles); the local store counts exactly, so it does nothing.
"""

from types import SimpleNamespace

import boto3
import pytest

from hyperbatch.adapters.local import open_local
from tests.streams import StreamReader

KINDS = ["local", "aws"]
REGION = "us-east-1"
QUEUES = ["batch", "west"]


@pytest.fixture(params=KINDS)
def backend(request, tmp_path):
    if request.param == "local":
        local = open_local(tmp_path)
        yield SimpleNamespace(
            **vars(local), kind="local", ordered=True, reports_expired=True, counts_positions=True,
            tracks_jobs=True, time_granularity=0.0, log_latency=0.0, settle=lambda: None,
        )
    else:
        from moto import mock_aws

        from tests import aws_bootstrap as bootstrap

        with mock_aws():
            dynamodb, sqs, logs = (boto3.client(s, region_name=REGION) for s in ("dynamodb", "sqs", "logs"))
            plane = bootstrap.create_control_plane(dynamodb, sqs, logs, "Test", QUEUES)
            # Log contract tests write output for ids the store never saw: every job is in "batch".
            aws = bootstrap.open_backend(plane, dynamodb, sqs, logs, queue_of=lambda job_id: "batch")
            yield SimpleNamespace(
                store=aws.store, queue=aws.queue, logs=aws.logs, kind="aws", ordered=False,
                reports_expired=False, counts_positions=False, tracks_jobs=False, time_granularity=1.0,
                log_latency=3.0, settle=StreamTally(dynamodb, plane.table, aws.store),
            )


class StreamTally:
    """Tallies the job table's stream records written since the last call (the release function's part)."""

    def __init__(self, dynamodb, table: str, store):
        self.reader, self.store = StreamReader(dynamodb, table), store

    def __call__(self) -> int:
        records = self.reader.records()
        self.store.tally(records)
        return len(records)

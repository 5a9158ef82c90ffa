"""The AWS adapters of the ports (docs/architecture.md §2).

| port       | adapter                                   |
|------------|-------------------------------------------|
| JobStore   | dynamo.DynamoJobStore (large scripts: scripts.S3Scripts) |
| WorkQueue  | sqs.SqsWorkQueue                          |
| LogStore   | logs.CloudWatchLogStore                   |
| Compute    | batch.BatchCompute                        |
| Events     | events.events_from_stream (stream -> Event) |
| RunRegister | runs.TableRunRegister                    |
| Census     | census.WorkerCensus (Batch, on-premises records) |

plus stream (sends from the table's stream: `StreamSentQueue`, the queue the
Scheduler and the Dispatcher hold on AWS; `StreamBatch`/`handle`, what the
release function does per batch; `ParkedBatches`, batches the mapping gave
up on, read back by the reconciler), reconcile.Reconciler,
placement.RegionWeights (`auto` region weights), lease.TableLease (the
scaler's single flight) and clients.client
(boto3 clients shared per process). `from_environment` wires the adapters
from the variables the stacks set (stacks/contract.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:  # imported when wired: importing the package stays cheap
    from hyperbatch.adapters.aws.dynamo import DynamoJobStore
    from hyperbatch.adapters.aws.logs import CloudWatchLogStore
    from hyperbatch.adapters.aws.sqs import SqsWorkQueue


@dataclass
class AwsBackend:
    store: DynamoJobStore
    queue: SqsWorkQueue
    logs: CloudWatchLogStore


def from_environment(env: Mapping[str, str] | None = None, *, queues: list[str] | None = None,
                     retention_days: float = 30, wait_seconds: int = 10) -> AwsBackend:
    """Store, queue and logs from HYPER_MAIN_REGION, HYPER_TABLE, HYPER_QUEUE_URLS, HYPER_DLQ_URLS
    (optional), HYPER_FILES_BUCKET (optional: where the store keeps large scripts) and
    HYPER_LOG_GROUP_PREFIX. Compute (BatchCompute) needs the configuration and
    HYPER_COMPUTE as well, and only the scaler uses it: build it there.
    """
    from hyperbatch.adapters.aws import clients
    from hyperbatch.adapters.aws.dynamo import DynamoJobStore
    from hyperbatch.adapters.aws.logs import CloudWatchLogStore
    from hyperbatch.adapters.aws.sqs import SqsWorkQueue

    env = os.environ if env is None else env
    region = env["HYPER_MAIN_REGION"]
    urls = json.loads(env["HYPER_QUEUE_URLS"])
    scripts = None
    if env.get("HYPER_FILES_BUCKET"):
        from hyperbatch.adapters.aws.scripts import S3Scripts

        scripts = S3Scripts(clients.client("s3", region), env["HYPER_FILES_BUCKET"])
    store = DynamoJobStore(
        env["HYPER_TABLE"], clients.client("dynamodb", region),
        queues=queues if queues is not None else list(urls), retention_days=retention_days, scripts=scripts,
    )
    queue = SqsWorkQueue(
        urls, clients.client("sqs", region), dead_letter_urls=json.loads(env.get("HYPER_DLQ_URLS", "{}")),
        wait_seconds=wait_seconds,
    )
    logs = CloudWatchLogStore(clients.client("logs", region), env["HYPER_LOG_GROUP_PREFIX"], store.queue_of)
    return AwsBackend(store, queue, logs)


def run_register(env: Mapping[str, str]):
    """The registered runs (hyperbatch.adapters.aws.runs), in the job table of HYPER_MAIN_REGION/HYPER_TABLE."""
    from hyperbatch.adapters.aws import clients
    from hyperbatch.adapters.aws.runs import TableRunRegister

    return TableRunRegister(clients.client("dynamodb", env["HYPER_MAIN_REGION"]), env["HYPER_TABLE"])

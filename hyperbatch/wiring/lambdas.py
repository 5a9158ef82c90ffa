"""What every function builds once per process (per Lambda execution environment) and reuses.

The configuration comes from HYPER_CONFIG (validated as local mode validates
its files), the adapters from the variables of stacks/contract.py, and the
Scheduler, Dispatcher, compute and reconciler over them are made on first use:
a warm invocation pays for none of it. The Scheduler and the Dispatcher hold
the stream-sent queue (hyperbatch.adapters.aws.stream.StreamSentQueue: they write the
store, the release function sends from the table's stream); `queue` is the
SQS queue itself. `reset()` forgets everything (tests
that switch moto backends or environments).

Logs are Powertools JSON lines on stdout; metrics are EMF documents on
stdout, which Lambda ships to CloudWatch Logs and CloudWatch turns into
metrics (namespace POWERTOOLS_METRICS_NAMESPACE).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from hyperbatch.config import configuration_from_environment
from hyperbatch.config import Configuration
from hyperbatch.core.access import Admins
from hyperbatch.core.ids import SequenceBlocks
from hyperbatch.services.scheduler import Caller, Scheduler

SERVICE = "hyperbatch"
ID_BLOCK_SECONDS = 1.0  # how long a block of reserved job ids is used (ids from two functions may cross this much)
NAMESPACE = "HyperBatch"


class _Stdout:
    """sys.stdout as it is at each write (Lambda's is fixed; test runners swap theirs)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE), stream=_Stdout())  # type: ignore[arg-type]
# The modules' own loggers (hyperbatch.*, children of "hyperbatch") write through the same JSON formatter.
logging.getLogger("hyperbatch")
copy_config_to_registered_loggers(source_logger=logger, include={"hyperbatch"})


@dataclass
class Runtime:
    config: Configuration
    env: dict = field(repr=False)

    @cached_property
    def backend(self):
        from hyperbatch.adapters.aws import from_environment

        # Functions never claim work, so no long poll; dead letters are read without one anyway.
        return from_environment(self.env, queues=[q.name for q in self.config.queues],
                                retention_days=self.config.settings.job_retention_days, wait_seconds=0)

    @property
    def store(self):
        return self.backend.store

    @property
    def queue(self):
        """The SQS queue itself: what the release function sends, the scaler counts, the reconciler repairs."""
        return self.backend.queue

    @cached_property
    def stream_sent(self):
        """The queue the Scheduler and Dispatcher hold: their sends come from the table's stream."""
        from hyperbatch.adapters.aws.stream import StreamSentQueue

        return StreamSentQueue(self.backend.queue)

    @cached_property
    def scheduler(self) -> Scheduler:
        # Jobs are `1234.<stack name>`. Each execution environment reserves its ids in blocks from the
        # table's counter item, used for at most a second (hyperbatch.core.ids): a burst of lone submits
        # costs one counter write per block, a trickle one per submit, and a POST of 1,000 one in all.
        sequence = SequenceBlocks(self.backend.store.reserve_ids, block=1, max_block=1000, lifetime=ID_BLOCK_SECONDS)
        return Scheduler(self.config, self.backend.store, self.stream_sent, self.backend.logs,
                         server=self.config.settings.stack_name, sequence=sequence, registry=self.registry,
                         files=self.files)

    @cached_property
    def registry(self):
        """The records of workers on your own machines (hyperbatch.adapters.aws.onprem)."""
        from hyperbatch.adapters.aws import clients
        from hyperbatch.adapters.aws.onprem import TableWorkerRegistry

        return TableWorkerRegistry(clients.client("dynamodb", self.env["HYPER_MAIN_REGION"]), self.env["HYPER_TABLE"])

    def onprem_workers(self) -> dict[str, int]:
        """Live on-premises workers per queue, for the scaler; none when they cannot be read (the
        cloud is then sized as if they were not there: more capacity, never less)."""
        from hyperbatch.core import onprem

        try:
            return onprem.per_queue(self.registry.workers(), time.time())
        except Exception as exc:
            logger.warning("on-premises workers unreadable; sizing without them", extra={"error": repr(exc)})
            return {}

    @cached_property
    def admins(self) -> Admins:
        """settings.admins: IAM users, and roles whose every session is an admin (hyperbatch.core.access)."""
        return Admins.of(json.loads(self.env.get("HYPER_ADMINS") or "[]"))

    def authorize(self, event: dict) -> Caller | None:
        """The IAM principal API Gateway verified (payload 2.0, IAM authorizer); None if there is none."""
        context = event.get("requestContext") or {}
        iam = (context.get("authorizer") or {}).get("iam") or {}
        arn = iam.get("userArn")
        if not arn:
            return None
        return Caller(arn, admin=arn in self.admins)

    @cached_property
    def api(self):
        from hyperbatch.api import AWS, build_app

        # Counting workers needs Batch permissions the API function does not have: GET /queues
        # shows none (the scaler publishes WorkersRunning per region instead).
        return build_app(self.scheduler, self.authorize, lambda: {}, platform=AWS, files=self.files)

    @cached_property
    def files(self):
        """The files bucket (hyperbatch.core.bucket): presigned URLs for uploads and job files."""
        if not self.env.get("HYPER_FILES_BUCKET"):
            return None
        from hyperbatch.adapters.aws import clients
        from hyperbatch.adapters.aws.files import S3Files

        return S3Files(clients.client("s3", self.env["HYPER_MAIN_REGION"]), self.env["HYPER_FILES_BUCKET"])

    @cached_property
    def compute(self):
        from hyperbatch.adapters.aws.batch import BatchCompute

        return BatchCompute(self.config, json.loads(self.env["HYPER_COMPUTE"]))

    @cached_property
    def scaler_lease(self):
        """The scaler's single-flight lease item in the job table (hyperbatch/adapters/aws/lease.py)."""
        from hyperbatch.adapters.aws import clients
        from hyperbatch.adapters.aws.lease import TableLease
        from hyperbatch.core.names import SCALER_LEASE_KEY

        return TableLease(clients.client("dynamodb", self.env["HYPER_MAIN_REGION"]), self.env["HYPER_TABLE"],
                          SCALER_LEASE_KEY)

    @cached_property
    def weights(self):
        from hyperbatch.adapters.aws.placement import RegionWeights

        return RegionWeights(self.config)

    def work(self, queue: str) -> int:
        """What the scaler sizes a pool on (`queue`: its work queue): tasks waiting (the store counts
        array tasks, SQS only messages; the larger, so stale messages get drained too) plus items
        being run."""
        return max(self.store.pending_tasks(queue), self.queue.backlog(queue)) + self.queue.in_flight(queue)

    @cached_property
    def dispatcher(self):
        from hyperbatch.services.dispatch import Dispatcher

        settings = self.config.settings
        return Dispatcher(self.store, self.stream_sent, "reconciler", settings.main_region, settings.lease_seconds,
                          runs=self.runs, cadence=settings.cadence())

    @cached_property
    def runs(self):
        """The registered runs (hyperbatch.adapters.aws.runs): the reconciler's list of long runs."""
        from hyperbatch.adapters.aws import run_register

        return run_register(self.env)

    @cached_property
    def census(self):
        """Which workers are gone (hyperbatch.adapters.aws.census): Batch in their regions, on-premises records."""
        from hyperbatch.adapters.aws import clients
        from hyperbatch.adapters.aws.census import WorkerCensus

        return WorkerCensus(lambda region: clients.client("batch", region), self.registry)

    @cached_property
    def parked(self):
        """The release-failures queue (HYPER_STREAM_FAILURES_URL) and the table's stream to read its batches from."""
        from hyperbatch.adapters.aws import clients
        from hyperbatch.adapters.aws.stream import ParkedBatches

        region = self.env["HYPER_MAIN_REGION"]
        return ParkedBatches(clients.client("sqs", region), self.env["HYPER_STREAM_FAILURES_URL"],
                             clients.client("dynamodbstreams", region))

    @cached_property
    def reconciler(self):
        from hyperbatch.adapters.aws.stream import decode_record
        from hyperbatch.services.dead_letters import Reconciler

        return Reconciler(self.scheduler, self.dispatcher, self.queue, self.parked, decode_record,
                          runs=self.runs, census=self.census, notices=self.notices)

    @cached_property
    def notices(self):
        """Where the release function puts state changes (while a rule could read them) and notices: the main
        region's default event bus."""
        from hyperbatch.adapters.aws import clients
        from hyperbatch.adapters.aws.notices import EventBridgeNotices

        return EventBridgeNotices(clients.client("events", self.env["HYPER_MAIN_REGION"]),
                                  state_changes=self.config.settings.notifications.event_bus)

    @cached_property
    def notice_sender(self):
        """The notifier function's: SES mail and signed webhooks (hyperbatch.adapters.aws.notices)."""
        from hyperbatch.adapters.aws import clients
        from hyperbatch.adapters.aws.notices import NoticeSender

        settings, region = self.config.settings.notifications, self.env["HYPER_MAIN_REGION"]
        return NoticeSender(clients.client("ses", region), clients.client("ssm", region), sender=settings.ses_sender,
                            secret_parameter=settings.webhook_secret_parameter)


_lock = threading.Lock()
_runtime: Runtime | None = None


def get() -> Runtime:
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                env = dict(os.environ)
                _runtime = Runtime(configuration_from_environment(env), env)
    return _runtime


def reset() -> None:
    global _runtime
    with _lock:
        _runtime = None


def publish(dimension: str | dict[str, str], value: str | None,
            metrics: dict[str, tuple[MetricUnit, list[float]]]) -> None:
    """One EMF document: `metrics` name -> (unit, values), all under `dimension`=`value` (or under
    every name=value of a `dimension` dict, `value` then None)."""
    if not any(values for _, values in metrics.values()):
        return
    emf = EphemeralMetrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE),
                           service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE))
    dimensions = dimension if isinstance(dimension, dict) else {dimension: str(value)}
    for name, given in dimensions.items():
        emf.add_dimension(name, given)
    for name, (unit, values) in metrics.items():
        for v in values:
            emf.add_metric(name=name, unit=unit, value=v)
    emf.flush_metrics()


def publish_jobs(metrics) -> None:
    """Job metrics (hyperbatch.services.metrics.JobMetrics) per queue, one EMF document each."""
    from hyperbatch.services.metrics import DISPATCH_LATENCY

    for queue, (counts, latencies) in metrics.by_queue().items():
        values = {name: (COUNT, [n]) for name, n in counts.items()}
        values[DISPATCH_LATENCY] = (MILLISECONDS, latencies)
        publish("queue", queue, values)


COUNT, MILLISECONDS = MetricUnit.Count, MetricUnit.Milliseconds

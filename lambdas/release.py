"""The release function: the job table's stream -> dependency release, and job metrics per queue.

Each stream record is handled on its own (Powertools BatchProcessor), so a
failure reports just that record and Lambda retries from it
(report_batch_item_failures); release is idempotent, so records handled
again change nothing. Metrics count only records handled without error.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from hyperbatch.aws.events import events_from_stream
from hyperbatch.metrics import DISPATCH_LATENCY, JobMetrics
from hyperbatch.release import on_event

from . import runtime

logger = runtime.logger
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def _seconds(image: dict, name: str) -> float | None:
    value = (image or {}).get(name) or {}
    return float(value["N"]) if "N" in value else None


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    scheduler = runtime.get().scheduler
    tally = JobMetrics()

    def record_handler(record: DynamoDBRecord) -> None:
        events = events_from_stream([record.raw_event])
        for change in events:
            on_event(scheduler, change)
        images = record.raw_event.get("dynamodb", {})
        new, old = images.get("NewImage"), images.get("OldImage")
        for change in events:
            tally.add(change, _seconds(new, "submitted_at"), _seconds(new, "started_at"), _seconds(old, "started_at"))

    response = process_partial_response(event, record_handler, processor, context)
    for queue, (counts, latencies) in tally.by_queue().items():
        metrics = {name: (runtime.COUNT, [n]) for name, n in counts.items()}
        metrics[DISPATCH_LATENCY] = (runtime.MILLISECONDS, latencies)
        runtime.publish("queue", queue, metrics)
    if response.get("batchItemFailures"):
        logger.warning("stream records failed", extra={"failed": len(response["batchItemFailures"])})
    return response

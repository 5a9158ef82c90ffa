"""The release function: the job table's stream -> dependency release, work sent, job counters and metrics.

Records are handled in order (Powertools BatchProcessor, hyperbatch.services.stream_release.StreamBatch):
dependency release, then what the change made runnable (hyperbatch.core.outbox.to_send), and
for a change of state its EventBridge events (hyperbatch.adapters.aws.notices).
Once a record fails, every later record of the batch is reported failed too
(report_batch_item_failures), so Lambda's checkpoint is the first failed
record and no record is handled twice. For the records handled, the work goes
out with SendMessageBatch and the store's per-queue counters are applied once
(`DynamoJobStore.tally`); if either fails, the invocation fails and the batch
comes again (sends are at least once; nothing was counted). Metrics count only
records handled. A batch still failing after the mapping's retries is parked
on the release-failures queue, and the reconciler handles it again.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from hyperbatch.adapters.aws.stream import decode_record
from hyperbatch.services.stream_release import StreamBatch
from hyperbatch.wiring import lambdas as runtime

logger = runtime.logger
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    rt = runtime.get()
    batch = StreamBatch(rt.scheduler, rt.queue, rt.store, decode_record, rt.notices)

    def record_handler(record: DynamoDBRecord) -> None:
        batch.handle_record(record.raw_event)

    response = process_partial_response(event, record_handler, processor, context)
    batch.finish()
    runtime.publish_jobs(batch.metrics)
    if response.get("batchItemFailures"):
        logger.warning("stream records failed", extra={"failed": len(response["batchItemFailures"])})
    return response

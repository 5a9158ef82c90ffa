"""Work sent from the job table's stream (the transactional outbox), and batches the stream mapping parked.

On AWS the Scheduler and the Dispatcher only write the store. Every change
reaches the release function through the table's stream (NEW_AND_OLD_IMAGES),
and that function sends what the change made runnable
(`hyperbatch.outbox.to_send` of the old and new documents). A store write and
its send can no longer be torn apart by a crash: the stream delivers every
change at least once, and a duplicate message is harmless (starting work is
a conditional write; array positions are handed out once).

Three parts:

- `StreamSentQueue` wraps the SqsWorkQueue the Scheduler and the Dispatcher
  hold: `send` and `send_many` do nothing, `requeue` only deletes the old
  message (the store change that goes with it is what sends the work again);
  everything else (claim, extend, ack, release, split, flush, counts, dead
  letters) is the SQS queue's own. `release` and `split` still send: they
  hand back work whose store state does not change.
- `StreamBatch` / `handle`: one batch of stream records, in order. For each
  record: dependency release (hyperbatch.release.on_event), what to send,
  job metrics. Once a record fails, every later record fails too without
  being looked at, so the mapping's checkpoint (the first failed record) is
  exact and nothing is handled twice. Then, for the records handled: one
  `send_many` on the real queue (SendMessageBatch, 10 a call), then the
  store's per-queue counters (`DynamoJobStore.tally`), once per batch.
- `ParkedBatches`: a batch the mapping gave up on (its retries exhausted)
  is parked as a message on the release-failures queue (the mapping's
  on-failure destination) that names the records by shard and sequence
  numbers (`DDBStreamBatchInfo`); the records themselves stay in the stream
  for 24 hours. The reconciler reads them back (GetShardIterator
  AT_SEQUENCE_NUMBER, GetRecords) and handles them again with `handle`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from ..metrics import JobMetrics
from ..outbox import SendItem, to_send
from ..release import on_event
from .items import JOB_SK, doc_from_item
from .events import events_from_stream

log = logging.getLogger("hyperbatch.stream")

GET_RECORDS_LIMIT = 1000  # GetRecords returns at most 1,000 records (1 MB) a call
MAX_EMPTY_PAGES = 10  # GetRecords may answer empty before a shard's records: this many in a row, give up for now
BATCH_INFO_KEYS = ("shardId", "startSequenceNumber", "endSequenceNumber", "streamArn")
PARKED_VISIBILITY_SECONDS = 300  # a parked batch being re-driven is hidden this long from other runs
# Gone for good: the records were trimmed (24 hours), or the stream or the shard no longer exists.
LOST_CODES = frozenset({"TrimmedDataAccessException", "ResourceNotFoundException"})


# ---- the queue the Scheduler and the Dispatcher hold --------------------------------------------

class StreamSentQueue:
    """A WorkQueue whose sends come from the stream: send/send_many do nothing, requeue only acks.

    Every other attribute is the wrapped queue's (SqsWorkQueue), `flush` included.
    So an item whose work did not change in the store (claimed but never
    started) must not be given back with `requeue`: nothing in the stream
    would send it again; `release` re-sends it.
    """

    def __init__(self, queue):
        self.queue = queue

    def send(self, queue, job_id, lo, hi, attempt, priority=0) -> None:
        """Nothing: the change that made the work runnable is in the stream, and the release function sends it."""

    def send_many(self, items) -> None:
        """Nothing, as `send`."""

    def requeue(self, item, lo, attempt) -> None:
        """Delete the old message; the store change that re-queued its work sends it again (via the stream)."""
        self.queue.ack(item)

    def __getattr__(self, name):
        return getattr(self.queue, name)


# ---- one batch of stream records ----------------------------------------------------------------

class AfterFailedRecord(Exception):
    """A record not looked at because an earlier record of its batch failed (it is retried from there)."""


def job_images(record: dict) -> tuple[dict | None, dict | None]:
    """The (old, new) job documents of a stream record; (None, None) for items that are not jobs."""
    data = record.get("dynamodb") or {}
    if ((data.get("Keys") or {}).get("sk") or {}).get("S") != JOB_SK:
        return None, None
    old, new = data.get("OldImage"), data.get("NewImage")
    return (doc_from_item(old) if old else None), (doc_from_item(new) if new else None)


def _seconds(image: dict | None, name: str) -> float | None:
    value = (image or {}).get(name) or {}
    return float(value["N"]) if "N" in value else None


@dataclass
class StreamBatch:
    """Records of one batch handled in order (`handle_record`), then what they make runnable sent (`finish`).

    `scheduler` must hold a StreamSentQueue (its releases send through the
    stream too); `queue` is the real SqsWorkQueue the work goes to; `store`
    counts the handled records (`tally`).
    """

    scheduler: object
    queue: object
    store: object
    metrics: JobMetrics = field(default_factory=JobMetrics)
    handled: list[dict] = field(default_factory=list)
    items: list[SendItem] = field(default_factory=list)
    failed: bool = False

    def handle_record(self, record: dict) -> None:
        if self.failed:
            raise AfterFailedRecord("an earlier record of this batch failed")
        try:
            events = events_from_stream([record])
            for event in events:
                on_event(self.scheduler, event)
            items = to_send(*job_images(record))
        except BaseException:
            self.failed = True
            raise
        self.handled.append(record)
        self.items += items
        data = record.get("dynamodb") or {}
        new, old = data.get("NewImage"), data.get("OldImage")
        for event in events:
            self.metrics.add(event, _seconds(new, "submitted_at"), _seconds(new, "started_at"),
                             _seconds(old, "started_at"))

    def finish(self) -> int:
        """Send the work of the handled records, then count them in the store; returns how many items went out.

        Sends come first: if counting fails the function fails and the batch
        comes again (sends are at least once anyway); counted, it is never
        counted again, since the records handled are behind the checkpoint.
        """
        if self.items:
            self.queue.send_many(self.items)
        if self.handled:
            self.store.tally(self.handled)
        return len(self.items)


@dataclass
class Handled:
    handled: int  # records handled: a prefix of the batch
    failed: list[dict]  # the rest, from the first that failed
    sent: int  # work items sent
    metrics: JobMetrics
    error: BaseException | None = None


def handle(records: list[dict], scheduler, queue, store) -> Handled:
    """A batch of stream records, in order, as the release function handles it (see StreamBatch)."""
    batch = StreamBatch(scheduler, queue, store)
    failed: list[dict] = []
    error = None
    for number, record in enumerate(records):
        try:
            batch.handle_record(record)
        except Exception as exc:
            failed, error = list(records[number:]), exc
            break
    sent = batch.finish()
    return Handled(len(batch.handled), failed, sent, batch.metrics, error)


# ---- batches the mapping gave up on -------------------------------------------------------------

@dataclass(frozen=True)
class ParkedBatch:
    """A message of the release-failures queue: which stream records a failed batch held."""

    receipt: str
    info: dict  # DDBStreamBatchInfo: shardId, startSequenceNumber, endSequenceNumber, streamArn, batchSize
    body: dict

    @property
    def start(self) -> str:
        return self.info["startSequenceNumber"]

    @property
    def end(self) -> str:
        return self.info["endSequenceNumber"]


def lambda_record(record: dict, stream_arn: str) -> dict:
    """A GetRecords record in the shape the event source mapping hands to Lambda."""
    data = dict(record["dynamodb"])
    when = data.get("ApproximateCreationDateTime")
    if hasattr(when, "timestamp"):
        data["ApproximateCreationDateTime"] = int(when.timestamp())
    return {**record, "dynamodb": data, "eventSourceARN": stream_arn}


class ParkedBatches:
    """The release-failures queue (`url`) and the stream the batches it names are read back from."""

    def __init__(self, sqs, url: str, streams):
        self.sqs, self.url, self.streams = sqs, url, streams

    def receive(self, most: int = 10) -> list[ParkedBatch]:
        """Up to `most` parked batches, hidden from other readers while they are handled.

        A message that names no stream batch is left alone (it shows up again
        after the visibility timeout and, unhandled, ends with the queue's retention).
        """
        out: list[ParkedBatch] = []
        while len(out) < most:
            response = self.sqs.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=min(10, most - len(out)), WaitTimeSeconds=0,
                VisibilityTimeout=PARKED_VISIBILITY_SECONDS,
            )
            messages = response.get("Messages", [])
            if not messages:
                break
            for message in messages:
                try:
                    body = json.loads(message["Body"])
                    info = body["DDBStreamBatchInfo"]
                    if not all(isinstance(info.get(k), str) for k in BATCH_INFO_KEYS):
                        raise KeyError("DDBStreamBatchInfo")
                except (ValueError, KeyError, TypeError, AttributeError):
                    log.warning("release-failures message %s names no stream batch", message.get("MessageId"))
                    continue
                out.append(ParkedBatch(message["ReceiptHandle"], info, body))
        return out

    def records(self, batch: ParkedBatch) -> list[dict] | None:
        """The batch's records, read back from the stream in order; None if the stream no longer has them.

        Reads from its first record (AT_SEQUENCE_NUMBER) up to and including
        its last. Raises if the shard is still open and the last record could
        not be reached (GetRecords may return empty pages): the message stays
        and is tried again.
        """
        info, end = batch.info, int(batch.end)
        out: list[dict] = []
        try:
            iterator = self.streams.get_shard_iterator(
                StreamArn=info["streamArn"], ShardId=info["shardId"],
                ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber=batch.start,
            )["ShardIterator"]
            empty = 0
            while iterator:
                page = self.streams.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
                for record in page["Records"]:
                    number = int(record["dynamodb"]["SequenceNumber"])
                    if number > end:
                        return out
                    out.append(lambda_record(record, info["streamArn"]))
                    if number == end:
                        return out
                empty = 0 if page["Records"] else empty + 1
                if empty >= MAX_EMPTY_PAGES:
                    raise RuntimeError(f"stream batch {batch.start}..{batch.end} of shard {info['shardId']}: "
                                       f"its last record not reached after {len(out)} records")
                iterator = page.get("NextShardIterator")
        except ClientError as exc:
            if exc.response["Error"]["Code"] in LOST_CODES:
                return None
            raise
        return out  # the shard closed before the batch's end: that is all of it

    def done(self, batch: ParkedBatch) -> None:
        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=batch.receipt)

    def park_rest(self, batch: ParkedBatch, rest: list[dict]) -> None:
        """Replace `batch` by a message naming only `rest` (its records from the first that failed again)."""
        info = {
            **batch.info,
            "startSequenceNumber": rest[0]["dynamodb"]["SequenceNumber"],
            "batchSize": len(rest),
        }
        self.sqs.send_message(QueueUrl=self.url, MessageBody=json.dumps({**batch.body, "DDBStreamBatchInfo": info}))
        self.done(batch)


def redrive(parked: ParkedBatches, scheduler, queue, store, *, most: int = 10,
            metrics: JobMetrics | None = None) -> dict[str, int]:
    """Handle parked batches again: {"batches": handled whole, "records": handled, "lost": no longer in the stream}.

    A batch handled whole is deleted from the release-failures queue; one
    that fails again is replaced by one naming the records from the failed
    one on (the records before it were handled and must not be counted twice);
    one whose sends or counting failed stays, to be tried again whole.
    """
    out = {"batches": 0, "records": 0, "lost": 0}
    for batch in parked.receive(most):
        try:
            records = parked.records(batch)
            if records is None:
                log.error("stream batch %s..%s of shard %s is no longer in the stream: its changes were not handled",
                          batch.start, batch.end, batch.info["shardId"])
                parked.done(batch)
                out["lost"] += 1
                continue
            result = handle(records, scheduler, queue, store)
        except Exception:
            # Nothing was counted (the counters come last): the whole batch is tried again when its
            # message shows up again (its sends are at least once anyway).
            log.exception("stream batch %s..%s: re-drive failed; tried again later", batch.start, batch.end)
            continue
        if metrics is not None:
            _merge(metrics, result.metrics)
        out["records"] += result.handled
        if result.failed:
            log.warning("stream batch %s..%s failed again at record %s: %r", batch.start, batch.end,
                        result.failed[0]["dynamodb"]["SequenceNumber"], result.error)
            parked.park_rest(batch, result.failed)
        else:
            parked.done(batch)
            out["batches"] += 1
    return out


def _merge(into: JobMetrics, more: JobMetrics) -> None:
    for queue, counts in more.counts.items():
        for name, n in counts.items():
            into.counts[queue][name] += n
    for queue, values in more.latencies.items():
        into.latencies[queue].extend(values)


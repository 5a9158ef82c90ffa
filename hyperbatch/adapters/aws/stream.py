"""The job table's stream, as the AWS adapters read it: sends that come from it, records, parked batches.

On AWS the Scheduler and the Dispatcher only write the store. Every change
reaches the release function through the table's stream (NEW_AND_OLD_IMAGES),
and hyperbatch.services.stream_release handles it: what the change made
runnable is sent from there, so a store write and its send cannot be torn
apart by a crash. This module holds the AWS side of that:

- `StreamSentQueue` wraps the SqsWorkQueue the Scheduler and the Dispatcher
  hold: `send` and `send_many` do nothing, `requeue` only deletes the old
  message (the store change that goes with it is what sends the work again);
  everything else (claim, extend, ack, release, split, flush, counts, dead
  letters) is the SQS queue's own. `release` and `split` still send: they
  hand back work whose store state does not change.
- `decode_record`: one stream record as the release use case reads it (its
  state-change events, the old and new job documents, start and submit times).
- `ParkedBatches`: a batch the mapping gave up on (its retries exhausted)
  is parked as a message on the release-failures queue (the mapping's
  on-failure destination) that names the records by shard and sequence
  numbers (`DDBStreamBatchInfo`); the records themselves stay in the stream
  for 24 hours. The reconciler reads them back (GetShardIterator
  AT_SEQUENCE_NUMBER, GetRecords) and handles them again
  (hyperbatch.services.stream_release.redrive).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from hyperbatch.adapters.aws.items import JOB_SK, doc_from_item
from hyperbatch.adapters.aws.events import events_from_stream

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


# ---- reading one record ------------------------------------------------------------------------

def job_images(record: dict) -> tuple[dict | None, dict | None]:
    """The (old, new) job documents of a stream record; (None, None) for items that are not jobs."""
    data = record.get("dynamodb") or {}
    if ((data.get("Keys") or {}).get("sk") or {}).get("S") != JOB_SK:
        return None, None
    old, new = data.get("OldImage"), data.get("NewImage")
    return (doc_from_item(old) if old else None), (doc_from_item(new) if new else None)


@dataclass(frozen=True)
class Decoded:
    """What the release use case needs of one stream record (hyperbatch.services.stream_release)."""

    events: list
    old: dict | None  # the job document before the change (None: not a job, or created)
    new: dict | None  # the job document after it (None: not a job, or removed)
    submitted_at: float | None
    started_at: float | None
    started_before: float | None


def decode_record(record: dict) -> Decoded:
    """A stream record as the release use case reads it: its state-change events and job documents."""
    data = record.get("dynamodb") or {}
    new, old = data.get("NewImage"), data.get("OldImage")
    return Decoded(events_from_stream([record]), *job_images(record),
                   _seconds(new, "submitted_at"), _seconds(new, "started_at"), _seconds(old, "started_at"))


def _seconds(image: dict | None, name: str) -> float | None:
    value = (image or {}).get(name) or {}
    return float(value["N"]) if "N" in value else None


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
    when: Any = data.get("ApproximateCreationDateTime")
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

"""What the release function does with the job table's changes: release, send, count (the stream as outbox).

On AWS the Scheduler and the Dispatcher only write the store; every change
reaches the release function through the table's stream, and this use case
handles each batch of records in order. For each record: dependency release
(hyperbatch.services.release.on_event), what the change made runnable
(hyperbatch.core.outbox.to_send of the old and new documents), job metrics,
for a change of state its EventBridge event, and the mail and webhooks any
change makes (hyperbatch.core.notices: an array's tasks too, with -m j).
Once a record fails, every later record fails too without being looked at,
so the mapping's checkpoint (the first failed record) is exact and nothing
is handled twice. Then, for the records handled: one `send_many` on the real
queue (SendMessageBatch, 10 a call), the events (PutEvents, 10 a call), then
the store's per-queue counters (`tally`), once per batch. `redrive` handles again the batches the mapping
gave up on (parked on the release-failures queue; the reconciler calls it).

Reading a record (DynamoDB images, the parked batches' shard iterators) is
the AWS adapter's (hyperbatch.adapters.aws.stream): it is passed in as `decode`
and `parked`, so this module imports no adapter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from hyperbatch.core import notices as rules
from hyperbatch.core.outbox import SendItem, to_send
from hyperbatch.services.metrics import JobMetrics
from hyperbatch.services.release import on_event

log = logging.getLogger("hyperbatch.stream")


class AfterFailedRecord(Exception):
    """A record not looked at because an earlier record of its batch failed (it is retried from there)."""


@dataclass
class StreamBatch:
    """Records of one batch handled in order (`handle_record`), then what they make runnable sent (`finish`).

    `scheduler` must hold a StreamSentQueue (its releases send through the
    stream too); `queue` is the real SqsWorkQueue the work goes to; `store`
    counts the handled records (`tally`); `decode` reads a record
    (hyperbatch.adapters.aws.stream.decode_record: events, old and new job documents, times).
    """

    scheduler: Any
    queue: Any
    store: Any
    decode: Callable[[dict], Any]
    notices: Any = None  # hyperbatch.adapters.aws.notices.EventBridgeNotices; None: nobody is told
    metrics: JobMetrics = field(default_factory=JobMetrics)
    handled: list[dict] = field(default_factory=list)
    items: list[SendItem] = field(default_factory=list)
    changes: list[dict] = field(default_factory=list)  # EventBridge details of the state changes handled
    deliveries: list[rules.Delivery] = field(default_factory=list)  # mail and webhooks they make
    failed: bool = False

    def handle_record(self, record: dict) -> None:
        if self.failed:
            raise AfterFailedRecord("an earlier record of this batch failed")
        try:
            change = self.decode(record)
            for event in change.events:
                on_event(self.scheduler, event)
            items = to_send(change.old, change.new)
        except BaseException:
            self.failed = True
            raise
        self.handled.append(record)
        self.items += items
        old, new = change.old, change.new
        if new is not None and (old is None or old["state"] != new["state"]):
            self.changes.append(rules.state_change_detail(new, old["state"] if old else None))
        self.deliveries += rules.of_change(old, new)  # an array's tasks too (-m j), which change no state
        for event in change.events:
            self.metrics.add(event, change.submitted_at, change.started_at, change.started_before)

    def finish(self) -> int:
        """Send the work of the handled records, put their state changes and notices on EventBridge, then
        count them in the store; returns how many items went out.

        Sends come first: if the events or counting fail the function fails and the batch
        comes again (sends and events are at least once anyway); counted, it is never
        counted again, since the records handled are behind the checkpoint.
        """
        if self.items:
            self.queue.send_many(self.items)
        if self.notices is not None and (self.changes or self.deliveries):
            self.notices.publish(self.changes, self.deliveries)
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


def handle(records: list[dict], scheduler, queue, store, decode, notices=None) -> Handled:
    """A batch of stream records, in order, as the release function handles it (see StreamBatch)."""
    batch = StreamBatch(scheduler, queue, store, decode, notices)
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

def redrive(parked, scheduler, queue, store, decode, *, most: int = 10,
            metrics: JobMetrics | None = None, notices=None) -> dict[str, int]:
    """Handle parked batches again: {"batches": handled whole, "records": handled, "lost": no longer in the stream}.

    `parked` is hyperbatch.adapters.aws.stream.ParkedBatches.
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
            result = handle(records, scheduler, queue, store, decode, notices)
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

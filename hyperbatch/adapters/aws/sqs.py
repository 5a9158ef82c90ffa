"""WorkQueue on SQS: a standard queue per HyperBatch queue, each with a dead-letter queue.

A message is one work item, its body JSON `{"job_id", "lo", "hi", "attempt",
"priority"}`: a job (positions [0, 1)) or a range of array positions. The
lease is the visibility timeout: `claim` receives with VisibilityTimeout =
lease, `extend` is ChangeMessageVisibility, `ack` deletes the message (in
batches, see below). An item's `id` is the SQS MessageId (stable across
redeliveries: array chunks in the store are keyed by it); its `receipt` is
the receipt handle of this delivery.

Batched deletes. `ack` only buffers the receipt; DeleteMessageBatch deletes
a queue's buffered receipts when ten are buffered, when the oldest is
`flush_seconds` (FLUSH_SECONDS) old at the next `ack` or `claim` (checked
before and after the receive), when a `claim` comes back empty, before
`backlog` and `in_flight` count the queue, and on `flush()`, which a worker
calls when it goes idle, at its heartbeats and when it stops. A message is
still deleted only after its job is final; one whose delete is late (a worker
killed with acks buffered) is received again and acknowledged by
`Dispatcher.recover_lost`, which finds the job final. Keep `flush_seconds`
well under the lease.

Receiving ahead. A claim for `max_tasks` receives up to that many messages
(ten at most) in one ReceiveMessage; the agent raises `max_tasks` only while
work is quick. The first is returned; the next claims hand out the others
if they come within AHEAD_HOLD_SECONDS (and a third of the lease), else
those go back at once (ChangeMessageVisibilityBatch to 0), as they do on
`flush()`, which the agent calls after each heartbeat of a longer run: work
received ahead never waits a lease behind a long job. A message given back
returns with a receive count above one, so it is taken for redelivered and
`Dispatcher.recover_lost`, finding its work never started, hands it out as
a fresh message. `backlog` and `in_flight` count messages received ahead as
waiting.

Ranges. SQS cannot edit a message, so a range is narrowed by sending the part
given away as a new message and keeping the original under the lease while
the returned item says the narrower range (`claim` with a range larger than
`max_tasks`, `split`). The original message still says the whole range. If
its worker dies, the redelivered message offers positions that other messages
also carry: harmless, because a worker starting array work takes only
positions the job's `dispatched` ranges do not cover yet (`tasks.first_free`),
so every position still runs once per attempt.

Lost leases. SQS redelivers a message whose visibility ran out: redelivery is
the expiry, so `expired()` is always empty here. Instead a claimed item says
whether its message was received before (`WorkItem.redelivered`, from
ApproximateReceiveCount > 1): the AWS agent hands such an item to
`Dispatcher.recover_lost` instead of running it. That re-queues or fails the
work of a worker gone silent; a run its worker registered (hyperbatch.core.cadence)
has its message hidden again (`extend`, 11 hours); for any other worker that
still beats it `release`s the item with a delay of one lease: a copy of a redelivered item says so in its
body (`"copy_of": <the item id>`), and comes back as a redelivered item with
the original id (so an array chunk, keyed by it, is still found), to be
checked again, not run. A copy is a new message: waiting for a long job does
not count toward the redrive policy.

Dead letters. After `MAX_RECEIVE_COUNT` (5) receives SQS moves a message to
the queue's DLQ; `dead_letters` reads them so the reconciler can mark their
jobs FAILED with a reason, then `drop_dead_letter` deletes each.

Limits to know: delays and visibility are whole seconds (rounded up here);
DelaySeconds is at most 900; a message's visibility cannot be extended beyond
12 hours after it was received (after that `extend` returns False: a job
longer than 12 hours needs a lease kept in the store instead).
"""

from __future__ import annotations

import logging
import json
import math
import threading
import time
from dataclasses import dataclass, replace

from botocore.exceptions import ClientError

from hyperbatch.core.ports import WorkItem

log = logging.getLogger("hyperbatch.sqs")

MAX_DELAY_SECONDS = 900
MAX_VISIBILITY_SECONDS = 43200
MAX_BATCH = 10  # SendMessageBatch and DeleteMessageBatch entries
FLUSH_SECONDS = 2.0  # the most a buffered ack waits for its batch, checked at the next ack or claim
MAX_RECEIVE_COUNT = 5  # the redrive policy of stacks/storage.py
AHEAD_HOLD_SECONDS = 2.0  # a message received ahead of its claim is handed out this soon, or given back
SEND_RETRIES = 3
# What SQS answers when a receipt no longer names an in-flight message: deleted,
# redelivered to someone else, or beyond the 12-hour visibility limit.
LEASE_LOST_CODES = frozenset({
    "ReceiptHandleIsInvalid",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
    "InvalidParameterValue",
})


@dataclass(frozen=True)
class SqsWorkItem(WorkItem):
    """A WorkItem that also remembers its priority, so work sent back keeps it."""

    priority: int = 0


def _seconds(value: float, most: int) -> int:
    return max(0, min(most, math.ceil(value)))


def _body(job_id: str, lo: int, hi: int, attempt: int, priority: int, copy_of: str | None = None) -> str:
    body = {"job_id": job_id, "lo": lo, "hi": hi, "attempt": attempt, "priority": priority}
    if copy_of is not None:
        body["copy_of"] = copy_of
    return json.dumps(body, separators=(",", ":"))


def _item(queue: str, message: dict) -> SqsWorkItem | None:
    try:
        body = json.loads(message["Body"])
        fields = (str(body["job_id"]), int(body["lo"]), int(body["hi"]), int(body["attempt"]))
        priority = int(body.get("priority", 0))
        copy_of = body.get("copy_of")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    received = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
    return SqsWorkItem(
        message["MessageId"] if copy_of is None else str(copy_of), queue, *fields,
        receipt=message["ReceiptHandle"], redelivered=received > 1 or copy_of is not None, priority=priority,
    )


class SqsWorkQueue:
    """`urls`: HyperBatch queue name -> queue URL (HYPER_QUEUE_URLS); `dead_letter_urls` likewise (HYPER_DLQ_URLS).

    `wait_seconds` is the long poll of `claim` (0-20; tests use 0): an empty
    queue costs one request per `wait_seconds` instead of one per poll.
    `flush_seconds` is how long an ack may wait in the buffer for its batch
    (see the module docstring); `clock` (monotonic seconds) times it.

    Safe to share between threads (an agent's main loop and its supervisor):
    the ack buffer is guarded by a lock, and no call to SQS is made under it.
    """

    max_delay_seconds = MAX_DELAY_SECONDS  # the longest a send may be delayed (the reconciler's copies)
    max_receive_count = MAX_RECEIVE_COUNT  # receives before a message is dead-lettered

    def __init__(self, urls: dict[str, str], client, *, dead_letter_urls: dict[str, str] | None = None,
                 wait_seconds: int = 10, flush_seconds: float = FLUSH_SECONDS, clock=time.monotonic):
        self.urls, self.client = dict(urls), client
        self.dead_letter_urls = dict(dead_letter_urls or {})
        self.wait_seconds = wait_seconds
        self.flush_seconds, self.clock = flush_seconds, clock
        self._lock = threading.Lock()
        self._acks: dict[str, dict[str, float]] = {}  # queue URL -> receipt -> when it was buffered
        # queue URL -> messages received ahead of their claim: (hand out before this clock time, message)
        self._ahead: dict[str, list[tuple[float, dict]]] = {}

    def _url(self, queue: str) -> str:
        try:
            return self.urls[queue]
        except KeyError:
            raise ValueError(f"no SQS queue for HyperBatch queue '{queue}'") from None

    # ---- send ---------------------------------------------------------------------------
    def send(self, queue, job_id, lo, hi, attempt, priority=0):
        self._send(queue, job_id, lo, hi, attempt, priority)

    def _send(self, queue, job_id, lo, hi, attempt, priority, delay: float = 0.0, copy_of: str | None = None) -> None:
        params: dict[str, str | int] = {"QueueUrl": self._url(queue), "MessageBody": _body(job_id, lo, hi, attempt, priority, copy_of)}
        if delay > 0:
            params["DelaySeconds"] = _seconds(delay, MAX_DELAY_SECONDS)
        self.client.send_message(**params)

    def reprioritise(self, job_id: str, priority: int) -> None:
        """Nothing: SQS standard queues have no priorities (a message's priority is informational)."""

    def send_many(self, items):
        """SendMessageBatch, ten entries a call; entries SQS refused are retried, then raised."""
        by_queue: dict[str, list[str]] = {}
        for queue, job_id, lo, hi, attempt, priority in items:
            by_queue.setdefault(queue, []).append(_body(job_id, lo, hi, attempt, priority))
        for queue, bodies in by_queue.items():
            url = self._url(queue)
            for start in range(0, len(bodies), MAX_BATCH):
                entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + MAX_BATCH])]
                for _ in range(SEND_RETRIES):
                    response = self.client.send_message_batch(QueueUrl=url, Entries=entries)
                    failed = {f["Id"] for f in response.get("Failed", [])}
                    entries = [e for e in entries if e["Id"] in failed]
                    if not entries:
                        break
                else:
                    raise RuntimeError(f"SQS refused {len(entries)} messages for queue '{queue}'")

    # ---- lease --------------------------------------------------------------------------
    def claim(self, queue, worker, max_tasks, lease_seconds):
        """The next item under a lease; a range over `max_tasks` keeps its head and sends the tail back.

        `max_tasks` is how much work the worker takes at once, so up to that
        many messages (ten at most) come in one ReceiveMessage: the first is
        returned, the others are handed out by the next claims, if those come
        within AHEAD_HOLD_SECONDS (and a third of the lease, so that a run's
        first heartbeat still finds its lease), else given back. Buffered acks
        that are due are deleted before and after the receive; all of them when
        nothing comes back (the worker is idle).
        """
        url = self._url(queue)
        self._flush_due()
        while True:
            message = self._next_ahead(url)
            if message is None:
                messages = self._receive(url, max_tasks, lease_seconds)
                if not messages:
                    self.flush()
                    return None
                message = messages[0]
            item = _item(queue, message)
            if item is None:  # not ours: after MAX_RECEIVE_COUNT receives it sits in the DLQ for a human
                log.warning("unreadable message %s in %s", message.get("MessageId"), queue)
                continue
            if item.size > max_tasks:
                return self.split(item, item.lo, item.lo + max(1, max_tasks))
            return item

    def _receive(self, url: str, max_tasks: int, lease_seconds: float) -> list[dict]:
        """One ReceiveMessage of up to `max_tasks` (at most 10) messages; all but the first wait in `_ahead`."""
        response = self.client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=max(1, min(MAX_BATCH, max_tasks)), WaitTimeSeconds=self.wait_seconds,
            VisibilityTimeout=_seconds(lease_seconds, MAX_VISIBILITY_SECONDS),
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        messages = response.get("Messages", [])
        if messages:
            self._flush_due()
        if len(messages) > 1:
            until = self.clock() + min(AHEAD_HOLD_SECONDS, lease_seconds / 3)
            with self._lock:
                self._ahead.setdefault(url, []).extend((until, m) for m in messages[1:])
        return messages

    def _next_ahead(self, url: str) -> dict | None:
        """The next message received ahead that may still be handed out; those held too long go back."""
        now, late = self.clock(), []
        with self._lock:
            waiting = self._ahead.get(url, [])
            while waiting and waiting[0][0] <= now:
                late.append(waiting.pop(0)[1])
            found = waiting.pop(0)[1] if waiting else None
        self._give_back({url: [m["ReceiptHandle"] for m in late]})
        return found

    def _give_back(self, receipts: dict[str, list[str]]) -> None:
        """Make messages received ahead visible again (ChangeMessageVisibilityBatch to 0).

        They come back with a receive count above one, that is as redelivered
        items: `Dispatcher.recover_lost` finds their work never started and
        hands it out again as a fresh message.
        """
        for url, handles in receipts.items():
            for start in range(0, len(handles), MAX_BATCH):
                entries = [{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                           for i, h in enumerate(handles[start:start + MAX_BATCH])]
                self.client.change_message_visibility_batch(QueueUrl=url, Entries=entries)

    def extend(self, item, lease_seconds):
        try:
            self.client.change_message_visibility(
                QueueUrl=self._url(item.queue), ReceiptHandle=item.receipt,
                VisibilityTimeout=_seconds(lease_seconds, MAX_VISIBILITY_SECONDS),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in LEASE_LOST_CODES:
                return False
            raise
        return True

    def ack(self, item):
        """Buffer the message's delete; it goes out in a DeleteMessageBatch (see the module docstring)."""
        url = self._url(item.queue)
        now = self.clock()
        with self._lock:
            buffered = self._acks.setdefault(url, {})
            buffered.setdefault(item.receipt, now)
            full = {url: self._take(url)} if len(buffered) >= MAX_BATCH else {}
        self._delete_batches(full)
        self._flush_due()

    def wait(self, queue: str, timeout: float) -> bool:
        """Nothing wakes an SQS worker but its claim's long poll (`wait_seconds`): this only sleeps."""
        time.sleep(timeout)
        return False

    def flush(self) -> None:
        """Delete every buffered ack now, and give back the messages received ahead (a worker going idle,
        running something long (after each heartbeat) or stopping calls this)."""
        with self._lock:
            taken = {url: self._take(url) for url in list(self._acks)}
            ahead = {url: [m["ReceiptHandle"] for _, m in waiting] for url, waiting in self._ahead.items()}
            self._ahead.clear()
        self._delete_batches(taken)
        self._give_back(ahead)

    def _flush_queue(self, queue: str) -> None:
        url = self._url(queue)
        with self._lock:
            taken = {url: self._take(url)} if url in self._acks else {}
        self._delete_batches(taken)

    def _flush_due(self) -> None:
        """Delete the buffered acks of each queue whose oldest has waited `flush_seconds`."""
        now = self.clock()
        with self._lock:
            due = [url for url, buffered in self._acks.items()
                   if buffered and now - min(buffered.values()) >= self.flush_seconds]
            taken = {url: self._take(url) for url in due}
        self._delete_batches(taken)

    def _take(self, url: str) -> list[str]:
        """Remove a queue's buffered receipts (the caller holds the lock)."""
        return list(self._acks.pop(url, {}))

    def _delete_batches(self, taken: dict[str, list[str]]) -> None:
        """DeleteMessageBatch, ten a call; entries SQS refused are retried, then raised.

        An entry refused because its receipt names no message in flight any
        more (LEASE_LOST_CODES: deleted already, or redelivered to someone
        else) is left alone, as a single delete would be. The receipts are out
        of the buffer whatever happens: a message whose delete failed is
        received again and acknowledged then (its job is final).
        """
        refused: list[str] = []
        for url, receipts in taken.items():
            for start in range(0, len(receipts), MAX_BATCH):
                entries = [{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(receipts[start : start + MAX_BATCH])]
                for _ in range(SEND_RETRIES):
                    response = self.client.delete_message_batch(QueueUrl=url, Entries=entries)
                    failed = {f["Id"]: f.get("Code", "") for f in response.get("Failed", [])}
                    entries = [e for e in entries if e["Id"] in failed and failed[e["Id"]] not in LEASE_LOST_CODES]
                    if not entries:
                        break
                else:
                    codes = ", ".join(sorted({failed[e["Id"]] for e in entries}))
                    refused.append(f"{len(entries)} messages of {url} ({codes})")
        if refused:
            raise RuntimeError(f"SQS refused to delete {'; '.join(refused)}")

    def _delete(self, queue: str, receipt: str, url: str | None = None) -> None:
        try:
            self.client.delete_message(QueueUrl=url or self._url(queue), ReceiptHandle=receipt)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in LEASE_LOST_CODES:
                raise  # gone already (requeued, or acked twice): nothing to delete

    def split(self, item: WorkItem, lo: int, hi: int) -> WorkItem:
        """Keep [lo, hi) under this lease; [hi, item.hi) goes out as a new message.

        The message itself still says item's whole range (see the module docstring).
        """
        if hi < item.hi:
            self._send(item.queue, item.job_id, hi, item.hi, item.attempt, _priority(item))
        return replace(item, lo=lo, hi=hi)

    def release(self, item, lo=None, delay=0.0):
        """Send [lo, hi) again, visible after `delay` (whole seconds, at most 900), and delete the original.

        Even when all of it goes back, this is a new message rather than a
        ChangeMessageVisibility(delay) of the original: every receive counts
        toward the redrive policy, and an array waiting at its concurrency
        limit (or a long job's message checked once a lease) is released over
        and over — its message would land in the DLQ after five rounds.

        The copy of a redelivered item carries the item's id (`copy_of`) and
        is claimed as a redelivered item with that id: it stands for a lease
        that ran out, so it goes back to `Dispatcher.recover_lost`, and an
        array chunk keyed by the id is still found. The original is deleted at
        once, not buffered: its copy is out already.
        """
        lo = item.lo if lo is None else lo
        if lo < item.hi:
            copy_of = item.id if item.redelivered else None
            self._send(item.queue, item.job_id, lo, item.hi, item.attempt, _priority(item), delay, copy_of)
        self._delete(item.queue, item.receipt)

    def requeue(self, item: WorkItem, lo: int, attempt: int) -> None:
        """Send [lo, hi) with the new attempt, then delete the old message (send first: never lose work)."""
        if lo < item.hi:
            self._send(item.queue, item.job_id, lo, item.hi, attempt, _priority(item))
        self._delete(item.queue, item.receipt)

    def expired(self, now):
        """Always []: SQS redelivers a message whose lease ran out; see `WorkItem.redelivered`."""
        return []

    # ---- counts -------------------------------------------------------------------------
    def _attributes(self, queue: str, *names: str) -> dict[str, int]:
        response = self.client.get_queue_attributes(QueueUrl=self._url(queue), AttributeNames=list(names))
        return {k: int(v) for k, v in response.get("Attributes", {}).items()}

    def backlog(self, queue):
        """Messages waiting to be received — messages, not array positions: one may carry thousands.

        Delayed messages are not waiting: they are the "check later" copies of
        jobs whose workers still beat (and, for a second, an array at its
        concurrency limit), so `in_flight` counts them. Approximate, as SQS says
        (it settles within a minute). The scaler on AWS sizes on
        `DynamoJobStore.pending_tasks(queue)` as well. The queue's buffered acks
        are deleted first.
        """
        self._flush_queue(queue)
        waiting = self._attributes(queue, "ApproximateNumberOfMessages").get("ApproximateNumberOfMessages", 0)
        return waiting + self._ahead_count(queue)

    def in_flight(self, queue):
        """Work being run: messages under a lease (received, not yet deleted or visible again) plus
        delayed ones, each a copy standing for a job a live worker runs; buffered acks deleted first."""
        self._flush_queue(queue)
        found = self._attributes(queue, "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed")
        leased = found.get("ApproximateNumberOfMessagesNotVisible", 0)
        return max(0, leased - self._ahead_count(queue)) + found.get("ApproximateNumberOfMessagesDelayed", 0)

    def _ahead_count(self, queue: str) -> int:
        """Messages this object received ahead of their claim: waiting, though SQS counts them leased."""
        with self._lock:
            return len(self._ahead.get(self._url(queue), []))

    def jobs_with_work(self, job_ids):
        raise NotImplementedError(
            "SQS cannot be searched for a job's messages, and need not be: on AWS the work a store "
            "change makes runnable is sent from the table's stream (hyperbatch.core.outbox), which delivers "
            "every change at least once, so no QUEUED work is left without a message; a duplicate "
            "message is harmless, since starting work is a conditional write on (state, attempt) and "
            "array positions are handed out once through the job's `dispatched` ranges."
        )

    # ---- dead letters -------------------------------------------------------------------
    def dead_letters(self, queue: str, max_messages: int = 100, lease_seconds: float = 60) -> list[tuple[WorkItem | None, str]]:
        """Up to `max_messages` messages of the queue's DLQ as (item, receipt), hidden for `lease_seconds`.

        The item is None for a body that is not a work item. Delete each one
        handled with `drop_dead_letter(queue, receipt)`; one not deleted shows
        up again after `lease_seconds`.
        """
        url = self.dead_letter_urls.get(queue)
        if url is None:
            raise ValueError(f"no dead-letter queue known for HyperBatch queue '{queue}'")
        out: list[tuple[WorkItem | None, str]] = []
        while len(out) < max_messages:
            response = self.client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=min(10, max_messages - len(out)), WaitTimeSeconds=0,
                VisibilityTimeout=_seconds(lease_seconds, MAX_VISIBILITY_SECONDS),
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
            messages = response.get("Messages", [])
            if not messages:
                break
            out += [(_item(queue, m), m["ReceiptHandle"]) for m in messages]
        return out

    def drop_dead_letter(self, queue: str, receipt: str) -> None:
        self._delete(queue, receipt, url=self.dead_letter_urls[queue])


def _priority(item: WorkItem) -> int:
    return getattr(item, "priority", 0)

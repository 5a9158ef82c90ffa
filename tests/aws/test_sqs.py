"""SqsWorkQueue beyond the contract: ranges, redelivery, dead letters, batching, what SQS cannot do."""

import json
import threading
import time
from dataclasses import replace

import boto3
import pytest

from hyperbatch.adapters.aws.sqs import FLUSH_SECONDS, LEASE_LOST_CODES, SqsWorkItem, SqsWorkQueue


def bodies(aws, queue="batch"):
    """Every message in the queue, made visible for the look and then put back."""
    url = aws.plane.queue_urls[queue]
    found = []
    while True:
        got = aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30).get("Messages", [])
        if not got:
            break
        found += got
    for m in found:
        aws.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    return sorted((json.loads(m["Body"]) for m in found), key=lambda b: (b["job_id"], b["lo"]))


def test_messages_say_job_range_attempt_and_priority(aws):
    aws.queue.send("batch", "J1", 0, 1, 2, priority=7)
    assert bodies(aws) == [{"job_id": "J1", "lo": 0, "hi": 1, "attempt": 2, "priority": 7}]


def test_a_claim_keeps_the_head_and_sends_the_tail_as_a_new_message(aws):
    aws.queue.send("batch", "A", 0, 10, 1, priority=3)
    aws.calls.clear()
    item = aws.queue.claim("batch", "w1", 4, 30)
    assert isinstance(item, SqsWorkItem)
    assert (item.lo, item.hi, item.priority, item.redelivered) == (0, 4, 3, False)
    assert aws.calls == ["ReceiveMessage", "SendMessage"]
    assert bodies(aws) == [{"job_id": "A", "lo": 4, "hi": 10, "attempt": 1, "priority": 3}]
    # The leased message still says the whole range: redelivered, it offers it all again.
    again = aws.queue.claim("batch", "w2", 100, 30)
    assert (again.lo, again.hi) == (4, 10)


def test_split_narrows_the_item_and_sends_the_rest(aws):
    aws.queue.send("batch", "A", 0, 10, 1)
    item = aws.queue.claim("batch", "w1", 10, 30)
    kept = aws.queue.split(item, 3, 6)
    assert (kept.id, kept.receipt, kept.lo, kept.hi) == (item.id, item.receipt, 3, 6)
    assert bodies(aws) == [{"job_id": "A", "lo": 6, "hi": 10, "attempt": 1, "priority": 0}]


def test_a_redelivered_message_is_marked_and_keeps_its_id(aws):
    aws.queue.send("batch", "J1", 0, 1, 1)
    first = aws.queue.claim("batch", "w1", 1, 0)  # a zero lease: visible again at once, as if the worker died
    second = aws.queue.claim("batch", "w2", 1, 30)
    assert (first.redelivered, second.redelivered) == (False, True)
    assert second.id == first.id and second.receipt != first.receipt
    aws.queue.extend(first, 30)  # an outdated receipt: SQS may accept or refuse it, never an error here


def test_release_is_a_new_message_so_waiting_does_not_count_toward_the_dlq(aws):
    aws.queue.send("batch", "A", 0, 10, 1)
    for _ in range(7):  # more rounds than the redrive policy's five receives
        item = aws.queue.claim("batch", "w1", 10, 30)
        assert item is not None and not item.redelivered
        aws.queue.release(item)
    assert aws.queue.dead_letters("batch") == []
    assert [(b["lo"], b["hi"]) for b in bodies(aws)] == [(0, 10)]


def test_requeue_sends_the_new_attempt_and_deletes_the_old(aws):
    aws.queue.send("batch", "J1", 0, 1, 1, priority=4)
    item = aws.queue.claim("batch", "w1", 1, 30)
    aws.queue.requeue(item, 0, 2)
    assert bodies(aws) == [{"job_id": "J1", "lo": 0, "hi": 1, "attempt": 2, "priority": 4}]
    assert aws.queue.in_flight("batch") == 0
    assert not aws.queue.extend(item, 30)
    aws.queue.ack(item)  # a late ack of the deleted message is harmless


def test_messages_received_too_often_are_read_from_the_dead_letter_queue(aws):
    aws.queue.send("batch", "J1", 0, 1, 3, priority=1)
    aws.sqs.send_message(QueueUrl=aws.plane.queue_urls["batch"], MessageBody="not a work item")
    for _ in range(12):  # zero leases: each claim is one receive
        aws.queue.claim("batch", "w1", 1, 0)
    letters = aws.queue.dead_letters("batch")
    items = [i for i, _ in letters if i is not None]
    assert [(i.job_id, i.lo, i.hi, i.attempt, i.priority) for i in items] == [("J1", 0, 1, 3, 1)]
    assert sum(i is None for i, _ in letters) == 1
    assert aws.queue.claim("batch", "w1", 1, 30) is None
    for _, receipt in letters:
        aws.queue.drop_dead_letter("batch", receipt)
    assert aws.sqs.get_queue_attributes(
        QueueUrl=aws.plane.dead_letter_urls["batch"], AttributeNames=["All"]
    )["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_send_many_batches_ten_a_call_per_queue(aws):
    items = [("batch", f"J{i}", 0, 1, 1, 0) for i in range(23)] + [("west", "W", 0, 5, 1, 2)]
    aws.queue.send_many(items)
    assert aws.calls == ["SendMessageBatch"] * 4
    assert aws.queue.backlog("batch") == 23 and aws.queue.backlog("west") == 1


def test_in_flight_counts_leases_and_delayed_copies_which_backlog_does_not(aws):
    """A delayed message is a "check later" copy of a running job (Dispatcher._check_later): work
    being run, which the scaler must not take for waiting work."""
    aws.queue.send("batch", "A", 0, 1, 1)
    aws.queue.send("batch", "B", 0, 1, 1)
    item = aws.queue.claim("batch", "w1", 1, 30)
    assert (aws.queue.backlog("batch"), aws.queue.in_flight("batch")) == (1, 1)
    aws.queue.release(replace(item, redelivered=True), delay=60)  # its worker beats: look again in a minute
    assert (aws.queue.backlog("batch"), aws.queue.in_flight("batch")) == (1, 1)


def test_what_sqs_cannot_answer(aws):
    assert aws.queue.expired(0) == []
    with pytest.raises(NotImplementedError, match="stream"):
        aws.queue.jobs_with_work(["J1"])
    with pytest.raises(ValueError, match="no SQS queue"):
        aws.queue.send("nope", "J1", 0, 1, 1)


# ---- watchdog copies ------------------------------------------------------------------------------

def test_a_released_copy_of_a_redelivered_item_comes_back_redelivered_under_the_same_id(aws):
    aws.queue.send("batch", "A", 0, 4, 1, priority=2)
    first = aws.queue.claim("batch", "w1", 4, 0)  # its worker's lease runs out at once
    again = aws.queue.claim("batch", "w2", 4, 30)
    assert again.redelivered and again.id == first.id
    aws.calls.clear()
    aws.queue.release(again, delay=0)
    assert aws.calls == ["SendMessage", "DeleteMessage"]  # the copy out, then the original deleted at once
    copy = aws.queue.claim("batch", "w3", 4, 30)
    assert (copy.id, copy.redelivered, copy.lo, copy.hi, copy.attempt, copy.priority) == (first.id, True, 0, 4, 1, 2)
    assert copy.receipt not in (first.receipt, again.receipt)
    aws.queue.release(copy, delay=0)  # a copy of a copy still names the first message
    assert aws.queue.claim("batch", "w4", 4, 30).id == first.id
    assert bodies(aws) == []


def test_a_requeued_or_split_redelivered_item_is_plain_new_work(aws):
    aws.queue.send("batch", "A", 0, 4, 1)
    aws.queue.claim("batch", "w1", 4, 0)
    again = aws.queue.claim("batch", "w2", 4, 30)
    aws.queue.split(again, 0, 2)
    aws.queue.requeue(again, 0, 2)
    assert bodies(aws) == [{"job_id": "A", "lo": 0, "hi": 4, "attempt": 2, "priority": 0},
                           {"job_id": "A", "lo": 2, "hi": 4, "attempt": 1, "priority": 0}]  # no copy_of


# ---- batched deletes ------------------------------------------------------------------------------

def claimed(aws, n, queue="batch", lease=30):
    aws.queue.send_many([(queue, f"J{i}", 0, 1, 1, 0) for i in range(n)])
    items = [aws.queue.claim(queue, "w1", 1, lease) for _ in range(n)]
    assert all(items)
    aws.calls.clear()
    return items


def not_visible(aws, queue="batch"):
    """In flight as SQS counts it, asked with a client of its own (uncounted; the adapter's count flushes first)."""
    client = boto3.client("sqs", region_name="us-east-1")
    attributes = client.get_queue_attributes(QueueUrl=aws.plane.queue_urls[queue],
                                              AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"])


def test_ten_acks_are_one_delete_message_batch(aws):
    items = claimed(aws, 12)
    for item in items[:10]:
        aws.queue.ack(item)
    assert aws.calls == ["DeleteMessageBatch"]
    assert not_visible(aws) == 2
    aws.calls.clear()
    aws.queue.ack(items[10])
    aws.queue.ack(items[10])  # acked twice: buffered once
    aws.queue.ack(items[11])
    assert aws.calls == []
    aws.queue.flush()
    assert aws.calls == ["DeleteMessageBatch"]
    assert not_visible(aws) == 0
    aws.queue.flush()  # nothing buffered: no call
    assert aws.calls == ["DeleteMessageBatch"]


def test_each_queue_has_its_own_batch(aws):
    items = claimed(aws, 10) + claimed(aws, 3, queue="west")
    for item in items[:9] + items[10:]:
        aws.queue.ack(item)
    assert aws.calls == []  # nine for batch, three for west
    aws.queue.ack(items[9])
    assert aws.calls == ["DeleteMessageBatch"]
    assert not_visible(aws, "batch") == 0 and not_visible(aws, "west") == 3
    assert aws.queue.in_flight("west") == 0  # counting deletes that queue's buffer first
    assert aws.calls == ["DeleteMessageBatch", "DeleteMessageBatch", "GetQueueAttributes"]


def test_an_ack_older_than_flush_seconds_is_deleted_at_the_next_call(aws):
    now = [1000.0]
    queue = SqsWorkQueue(aws.plane.queue_urls, aws.sqs, wait_seconds=0, clock=lambda: now[0])
    assert queue.flush_seconds == FLUSH_SECONDS
    queue.send_many([("batch", f"J{i}", 0, 1, 1, 0) for i in range(4)])
    first, second, third = (queue.claim("batch", "w1", 1, 30) for _ in range(3))
    aws.calls.clear()
    queue.ack(first)
    now[0] += FLUSH_SECONDS / 2
    queue.ack(second)
    assert aws.calls == []  # the oldest is not due yet
    now[0] += FLUSH_SECONDS / 2
    queue.ack(third)  # the oldest is due: the whole batch goes
    assert aws.calls == ["DeleteMessageBatch"] and not_visible(aws) == 0
    aws.calls.clear()
    fourth = queue.claim("batch", "w1", 1, 30)
    queue.ack(fourth)
    aws.calls.clear()
    now[0] += FLUSH_SECONDS
    assert queue.claim("batch", "w1", 1, 30) is None
    assert aws.calls == ["DeleteMessageBatch", "ReceiveMessage"]  # due: deleted before the receive
    assert not_visible(aws) == 0


def test_an_empty_claim_deletes_what_is_buffered(aws):
    items = claimed(aws, 2)
    aws.queue.send("batch", "J2", 0, 1, 1)
    aws.calls.clear()
    aws.queue.ack(items[0])
    assert aws.calls == []
    assert aws.queue.claim("batch", "w1", 1, 30) is not None  # work came back: the fresh ack waits
    assert aws.calls == ["ReceiveMessage"]
    aws.queue.ack(items[1])
    assert aws.queue.claim("batch", "w1", 1, 30) is None
    assert aws.calls == ["ReceiveMessage", "ReceiveMessage", "DeleteMessageBatch"]
    assert not_visible(aws) == 1  # the one claimed last and not acked


def test_an_acked_message_is_never_received_again(aws):
    aws.queue.send_many([("batch", f"J{i}", 0, 1, 1, 0) for i in range(3)])
    items = [aws.queue.claim("batch", "w1", 1, 1) for _ in range(3)]  # one-second leases
    for item in items:
        aws.queue.ack(item)
    assert aws.queue.claim("batch", "w2", 1, 30) is None  # idle: the buffer goes
    time.sleep(1.2)  # every lease has run out
    assert aws.queue.claim("batch", "w2", 1, 30) is None
    assert aws.queue.backlog("batch") == 0 and aws.queue.in_flight("batch") == 0


def test_acks_from_two_threads_and_flushes_lose_nothing(aws):
    items = claimed(aws, 40)
    errors = []
    client, lock = aws.queue.client, threading.Lock()

    class OneRequestAtATime:  # moto's in-memory SQS can lose a delete under concurrent requests; SQS cannot
        def __getattr__(self, name):
            def call(*args, **kwargs):
                with lock:
                    return getattr(client, name)(*args, **kwargs)
            return call

    aws.queue.client = OneRequestAtATime()

    def ack(part):
        try:
            for item in part:
                aws.queue.ack(item)
                aws.queue.flush()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ack, args=(items[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    aws.queue.flush()
    assert not_visible(aws) == 0 and aws.queue.backlog("batch") == 0


class FakeSqs:
    """delete_message_batch answering with the given failure code for every entry, `times` times."""

    def __init__(self, code, times=99):
        self.code, self.times, self.calls = code, times, []

    def delete_message_batch(self, QueueUrl, Entries):
        self.calls.append([e["ReceiptHandle"] for e in Entries])
        if len(self.calls) > self.times:
            return {"Successful": [{"Id": e["Id"]} for e in Entries]}
        return {"Failed": [{"Id": e["Id"], "Code": self.code, "SenderFault": True} for e in Entries]}


def fake_item(receipt):
    return SqsWorkItem("m", "batch", "J", 0, 1, 1, receipt=receipt)


def test_deletes_refused_for_a_receipt_that_is_gone_are_ignored():
    for code in LEASE_LOST_CODES:
        client = FakeSqs(code)
        queue = SqsWorkQueue({"batch": "url"}, client)
        queue.ack(fake_item("r1"))
        queue.flush()
        assert client.calls == [["r1"]]  # not retried, not raised


def test_deletes_refused_otherwise_are_retried_then_raised():
    client = FakeSqs("InternalError", times=1)
    queue = SqsWorkQueue({"batch": "url"}, client)
    queue.ack(fake_item("r1"))
    queue.flush()
    assert client.calls == [["r1"], ["r1"]]
    client = FakeSqs("InternalError")
    queue = SqsWorkQueue({"batch": "url"}, client)
    queue.ack(fake_item("r1"))
    with pytest.raises(RuntimeError, match="InternalError"):
        queue.flush()


def test_a_queue_whose_deletes_are_refused_does_not_hold_back_the_others():
    client = FakeSqs("InternalError")
    good = []
    refuse = client.delete_message_batch
    client.delete_message_batch = lambda QueueUrl, Entries: (
        refuse(QueueUrl, Entries) if QueueUrl == "bad" else good.append(Entries) or {"Successful": []})
    queue = SqsWorkQueue({"batch": "bad", "west": "good"}, client)
    queue.ack(fake_item("r1"))
    queue.ack(SqsWorkItem("m2", "west", "J2", 0, 1, 1, receipt="r2"))
    with pytest.raises(RuntimeError, match="1 messages of bad"):
        queue.flush()
    assert [[e["ReceiptHandle"] for e in entries] for entries in good] == [["r2"]]
    queue.flush()  # the refused receipts left the buffer: no endless retries
    assert len(client.calls) == 3


# ---- receiving ahead ----------------------------------------------------------------------------

def test_a_claim_for_several_receives_that_many_messages_in_one_call_and_hands_them_out_in_turn(aws):
    aws.queue.send_many([("batch", f"J{i}", 0, 1, 1, 0) for i in range(5)])
    aws.calls.clear()
    first = aws.queue.claim("batch", "w1", 3, 30)
    assert aws.calls == ["ReceiveMessage"]
    assert not_visible(aws) == 3  # received: two wait for the next claims
    assert (aws.queue.backlog("batch"), aws.queue.in_flight("batch")) == (4, 1)  # the two count as waiting
    aws.calls.clear()
    second, third = aws.queue.claim("batch", "w1", 3, 30), aws.queue.claim("batch", "w1", 3, 30)
    assert aws.calls == []  # handed out from what came with the first receive
    assert len({first.job_id, second.job_id, third.job_id}) == 3
    assert not (first.redelivered or second.redelivered or third.redelivered)
    for item in (first, second, third):
        aws.queue.ack(item)
    aws.queue.flush()
    assert sorted(b["job_id"] for b in bodies(aws)) == sorted({f"J{i}" for i in range(5)} - {
        first.job_id, second.job_id, third.job_id})


def test_messages_held_ahead_too_long_go_back_and_return_as_redelivered(aws):
    now = [1000.0]
    queue = SqsWorkQueue(aws.plane.queue_urls, aws.sqs, wait_seconds=0, clock=lambda: now[0])
    queue.send_many([("batch", f"J{i}", 0, 1, 1, 0) for i in range(3)])
    first = queue.claim("batch", "w1", 3, 30)
    now[0] += 2.5  # the claim ran long: the two received with it were held past AHEAD_HOLD_SECONDS
    aws.calls.clear()
    later = [queue.claim("batch", "w1", 1, 30), queue.claim("batch", "w1", 1, 30)]
    assert aws.calls[0] == "ChangeMessageVisibilityBatch"  # given back at once, not after a lease
    assert all(item.redelivered for item in later)  # received before: recover_lost hands their work out anew
    assert {i.job_id for i in later} | {first.job_id} == {"J0", "J1", "J2"}


def test_flush_gives_back_what_was_received_ahead(aws):
    aws.queue.send_many([("batch", f"J{i}", 0, 1, 1, 0) for i in range(4)])
    aws.queue.claim("batch", "w1", 4, 30)
    assert not_visible(aws) == 4
    aws.queue.flush()  # a heartbeat of a long run, or the worker stopping
    assert not_visible(aws) == 1 and aws.queue.backlog("batch") == 3

"""SqsWorkQueue beyond the contract: ranges, redelivery, dead letters, batching, what SQS cannot do."""

import json

import pytest

from hyperbatch.aws.sqs import SqsWorkItem


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


def test_backlog_counts_delayed_messages_and_in_flight_counts_leases(aws):
    aws.queue.send("batch", "A", 0, 10, 1)
    item = aws.queue.claim("batch", "w1", 10, 30)
    assert (aws.queue.backlog("batch"), aws.queue.in_flight("batch")) == (0, 1)
    aws.queue.release(item, lo=5, delay=60)
    assert (aws.queue.backlog("batch"), aws.queue.in_flight("batch")) == (1, 0)


def test_what_sqs_cannot_answer(aws):
    assert aws.queue.expired(0) == []
    with pytest.raises(NotImplementedError, match="by_queue_state"):
        aws.queue.jobs_with_work(["J1"])
    with pytest.raises(ValueError, match="no SQS queue"):
        aws.queue.send("nope", "J1", 0, 1, 1)

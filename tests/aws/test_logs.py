"""CloudWatchLogStore beyond the contract: pumping, batching limits, offsets, attempts, real children."""

import os
import subprocess
import time

import pytest

from hyperbatch.adapters.aws.logs import (
    ENCODED, EVENT_OVERHEAD, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, batches, from_message, stream_name,
    to_messages,
)
from tests.handmade_ids import new_job_id
from hyperbatch.core.model import new_job


@pytest.fixture
def job_id(aws):
    doc = new_job(id=new_job_id(), owner="alice", queue="west", definition="standard")
    aws.store.create([doc], [])
    return doc["id"]


def events(aws, job_id, index, attempt, stream, queue="west"):
    response = aws.logs_client.get_log_events(
        logGroupName=f"{aws.plane.log_group_prefix}{queue}", logStreamName=stream_name(job_id, index, attempt, stream),
        startFromHead=True,
    )
    return [e["message"] for e in response["events"]]


def write_and_close(aws, job_id, chunks, index=None, attempt=1, stream="stdout"):
    sink = aws.logs.sink(job_id, index, attempt)
    for chunk in chunks:
        os.write(getattr(sink, stream), chunk)
    sink.close()


def test_messages_split_at_character_boundaries():
    text = "é" * 10
    pieces = to_messages(text.encode(), most=5)
    assert "".join(pieces) == text and all(len(p.encode()) <= 5 for p in pieces) and len(pieces) == 5
    assert to_messages(b"") == []


@pytest.mark.parametrize("data", [
    bytes(range(256)),  # binary
    b"text with one stray \xff byte\n",
    b"\xe2\x82",  # a character cut in half, alone
    ENCODED.encode() + b" starts like an encoded event, but is text",
])
def test_bytes_that_are_not_plain_text_are_kept_exactly(data):
    messages = to_messages(data, most=64)
    assert all(len(m.encode()) <= 64 for m in messages)
    assert b"".join(from_message(m) for m in messages) == data


def test_text_stays_readable_text_in_cloudwatch(aws, job_id):
    write_and_close(aws, job_id, ["plain text, é and €\n".encode()])
    assert events(aws, job_id, None, 1, "stdout") == ["plain text, é and €\n"]


def test_calls_stay_within_put_log_events_limits():
    many = batches(["x"] * (MAX_BATCH_EVENTS + 5))
    assert [len(b) for b in many] == [MAX_BATCH_EVENTS, 5]
    big = batches(["y" * MAX_EVENT_BYTES] * 9)
    assert all(sum(len(m) + EVENT_OVERHEAD for m in b) <= MAX_BATCH_BYTES for b in big)
    assert sum(len(b) for b in big) == 9 and len(big) == 3


def test_output_goes_to_the_queue_group_in_a_stream_per_attempt_and_output(aws, job_id):
    write_and_close(aws, job_id, [b"out\n"], index=7, attempt=2)
    write_and_close(aws, job_id, [b"err\n"], index=7, attempt=2, stream="stderr")
    assert events(aws, job_id, 7, 2, "stdout") == ["out\n"]
    assert events(aws, job_id, 7, 2, "stderr") == ["err\n"]


def test_a_chatty_job_is_shipped_in_few_calls(aws, job_id):
    aws.calls.clear()
    write_and_close(aws, job_id, [f"line {i}\n".encode() for i in range(2000)])
    puts = aws.calls.count("PutLogEvents")
    assert 1 <= puts <= 4  # one at the first write, then at most one per flush interval, and the rest at close
    data, offset = aws.logs.read(job_id, None, "stdout", 0, 1 << 20)
    assert data == "".join(f"line {i}\n" for i in range(2000)).encode() and offset == len(data)


def test_output_is_live_before_close(aws, job_id):
    sink = aws.logs.sink(job_id, None, 1)
    os.write(sink.stdout, b"one\n")
    time.sleep(0.05)
    os.write(sink.stdout, b"two\n")  # inside the flush interval: held back briefly
    deadline = time.monotonic() + 3
    while aws.logs.read(job_id, None, "stdout", 0, 100)[0] != b"one\ntwo\n":
        assert time.monotonic() < deadline, "output was not shipped while the job ran"
        time.sleep(0.05)
    sink.close()


def test_more_than_a_megabyte_is_split_into_legal_calls(aws, job_id):
    sizes = []
    aws.logs_client.meta.events.register(
        "provide-client-params.logs.PutLogEvents",
        lambda params, **kw: sizes.append(sum(len(e["message"].encode()) + EVENT_OVERHEAD for e in params["logEvents"])),
    )
    blob = ("ü" * 1000 + "\n").encode() * 1200  # 2.4 MB, two-byte characters across every pipe read
    write_and_close(aws, job_id, [blob])
    assert sizes and max(sizes) <= MAX_BATCH_BYTES
    data, _ = aws.logs.read(job_id, None, "stdout", 0, 1 << 23)
    assert data == blob
    assert not any(m.startswith(ENCODED) for m in events(aws, job_id, None, 1, "stdout"))  # text stays text


def test_offsets_count_bytes_across_events_and_characters(aws, job_id):
    sink = aws.logs.sink(job_id, None, 1)
    os.write(sink.stdout, "aé".encode())
    time.sleep(0.3)  # past the flush interval: a second event
    os.write(sink.stdout, "€b\n".encode())
    sink.close()
    assert len(events(aws, job_id, None, 1, "stdout")) >= 2
    whole = "aé€b\n".encode()
    assert aws.logs.read(job_id, None, "stdout", 0, 100) == (whole, 8)
    # Offsets are byte offsets: a limit may cut "€" (3 bytes, starting at byte 3); the next read goes on from there.
    assert aws.logs.read(job_id, None, "stdout", 0, 4) == (whole[:4], 4)
    assert aws.logs.read(job_id, None, "stdout", 4, 3) == (whole[4:7], 7)
    assert aws.logs.read(job_id, None, "stdout", 3, 3) == ("€".encode(), 6)
    assert aws.logs.read(job_id, None, "stdout", 1, 2) == ("é".encode(), 3)
    assert aws.logs.read(job_id, None, "stdout", 6, 100) == (b"b\n", 8)
    assert aws.logs.read(job_id, None, "stdout", 8, 100) == (b"", 8)


def test_the_latest_attempt_is_read_even_where_it_wrote_nothing(aws, job_id):
    for attempt in (9, 10):
        sink = aws.logs.sink(job_id, None, attempt)
        if attempt == 9:
            os.write(sink.stderr, b"old trouble\n")
        os.write(sink.stdout, f"attempt {attempt}\n".encode())
        sink.close()
    assert aws.logs.read(job_id, None, "stdout", 0, 100)[0] == b"attempt 10\n"  # 10 > 9, not "10" < "9"
    assert aws.logs.read(job_id, None, "stderr", 0, 100) == (b"", 0)


def test_tasks_do_not_see_each_others_attempts(aws, job_id):
    write_and_close(aws, job_id, [b"task 1\n"], index=1)
    write_and_close(aws, job_id, [b"task 10\n"], index=10, attempt=3)
    assert aws.logs.read(job_id, 1, "stdout", 0, 100)[0] == b"task 1\n"
    assert aws.logs.read(job_id, 10, "stdout", 0, 100)[0] == b"task 10\n"


def test_an_unknown_job_reads_empty(aws):
    assert aws.logs.read(new_job_id(), None, "stdout", 5, 100) == (b"", 5)


def test_a_real_child_writes_through_the_pipes(aws, job_id):
    sink = aws.logs.sink(job_id, None, 1)
    code = subprocess.call(["/bin/sh", "-c", "echo hi; echo oops >&2; printf 'no newline'"],
                           stdout=sink.stdout, stderr=sink.stderr)
    sink.close()
    assert code == 0
    assert aws.logs.read(job_id, None, "stdout", 0, 100)[0] == b"hi\nno newline"
    assert aws.logs.read(job_id, None, "stderr", 0, 100)[0] == b"oops\n"


def test_close_does_not_wait_forever_for_a_background_process(aws, job_id):
    aws.logs.close_timeout = 0.3
    sink = aws.logs.sink(job_id, None, 1)
    child = subprocess.Popen(["/bin/sh", "-c", "echo started; sleep 30"], stdout=sink.stdout, stderr=sink.stderr)
    try:
        time.sleep(0.2)
        started = time.monotonic()
        sink.close()  # the sleeping child still holds the pipes
        assert time.monotonic() - started < 3
        assert aws.logs.read(job_id, None, "stdout", 0, 100)[0] == b"started\n"
    finally:
        child.kill()
        child.wait()


def test_a_silent_task_costs_no_call_and_a_silent_retry_still_hides_the_first_attempt(aws, job_id):
    aws.calls.clear()
    aws.logs.sink(job_id, 1, 1).close()
    assert aws.calls == []  # nothing printed: no stream, no call
    write_and_close(aws, job_id, [b"attempt 1 failed\n"], index=2, attempt=1, stream="stderr")
    aws.logs.sink(job_id, 2, 2).close()  # the retry prints nothing
    assert aws.logs.read(job_id, 2, "stderr", 0, 100) == (b"", 0)
    assert aws.logs.read(job_id, 2, "stdout", 0, 100) == (b"", 0)

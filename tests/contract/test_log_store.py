"""LogStore contract: what a job writes is readable while it runs, from any offset."""

import os
import time


def read_soon(backend, *args):
    """Live output: readable at once from files, within `log_latency` from a shipping pump."""
    deadline = time.monotonic() + backend.log_latency
    while True:
        text, offset = backend.logs.read(*args)
        if text or time.monotonic() >= deadline:
            return text, offset
        time.sleep(0.02)


def test_output_is_read_back_from_offsets(backend):
    sink = backend.logs.sink("J1", None, 1)
    os.write(sink.stdout, b"hello\n")
    os.write(sink.stderr, b"oops\n")
    text, offset = read_soon(backend, "J1", None, "stdout", 0, 1 << 20)
    assert (text, offset) == (b"hello\n", 6)
    os.write(sink.stdout, b"world\n")
    sink.close()
    assert backend.logs.read("J1", None, "stdout", offset, 1 << 20) == (b"world\n", 12)
    assert backend.logs.read("J1", None, "stderr", 0, 1 << 20) == (b"oops\n", 5)


def test_tasks_have_their_own_logs(backend):
    for index in (1, 2):
        sink = backend.logs.sink("A", index, 1)
        os.write(sink.stdout, f"task {index}\n".encode())
        sink.close()
    assert backend.logs.read("A", 2, "stdout", 0, 100)[0] == b"task 2\n"


def test_missing_output_reads_empty(backend):
    assert backend.logs.read("nope", None, "stdout", 0, 100) == (b"", 0)


def test_a_character_cut_by_the_limit_is_not_mangled(backend):
    sink = backend.logs.sink("U", None, 1)
    os.write(sink.stdout, "é".encode() * 3)  # 6 bytes
    sink.close()
    data, offset = backend.logs.read("U", None, "stdout", 0, 3)
    rest, end = backend.logs.read("U", None, "stdout", offset, 100)
    assert (data, offset) == ("é".encode() + b"\xc3", 3)  # byte offsets: a limit may cut a character
    assert data + rest == "ééé".encode() and end == 6


def test_any_bytes_come_back_exactly_from_any_offset(backend):
    """Output that is not UTF-8 (binary, or text with a stray byte) is not dropped, replaced or shifted."""
    blob = bytes(range(256)) * 40 + "é€\n".encode() + b"\xff\xfe\x00tail"  # 10 KiB and some
    sink = backend.logs.sink("B", None, 1)
    for start in range(0, len(blob), 4000):  # several writes: on AWS, several events
        os.write(sink.stdout, blob[start:start + 4000])
    sink.close()
    read_soon(backend, "B", None, "stdout", 0, 1)
    got, offset = b"", 0
    for _ in range(100):  # pages of an odd size, so they cut characters and events
        data, offset = backend.logs.read("B", None, "stdout", offset, 777)
        if not data:
            break
        got += data
    assert got == blob and offset == len(blob)


def test_a_new_attempt_replaces_the_output(backend):
    for attempt, text in ((1, b"first\n"), (2, b"second\n")):
        sink = backend.logs.sink("R", None, attempt)
        os.write(sink.stdout, text)
        sink.close()
    assert backend.logs.read("R", None, "stdout", 0, 100)[0] == b"second\n"

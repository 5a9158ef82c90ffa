"""LogStore on CloudWatch Logs: a log group per queue, a stream per job (or task) attempt and output.

    group:  <prefix><queue>                              e.g. /hyperbatch/HyperBatch/jobs/batch
    stream: <job id>/<array index or "job">/<attempt>/<stdout|stderr>

The groups belong to the control-plane stack (retention is set there); this
adapter only creates streams. `queue_of(job_id)` names a job's queue — wire
`DynamoJobStore.queue_of`, whose cache already knows every job the process
just read, so it costs no call in practice.

Writing. `sink` gives the child the write ends of two pipes; one pump thread
per pipe ships what it reads with PutLogEvents. The
first output after a quiet second goes out at once, then at most one call per
`flush_seconds` per stream (so `qlog -f` is live without a call per line), and
everything left goes at `close`. One event carries a whole flush (up to
256 KiB, split at character boundaries beyond that), which keeps
events few and their order certain; a call stays under the PutLogEvents limits
of 10,000 events and 1 MiB. While a pump is inside a PutLogEvents call it does not read,
so a child writing more than the 64 KiB pipe buffer in that moment waits for it.

Bytes, exactly. CloudWatch keeps UTF-8 text, but a job may write anything. An
event whose bytes are UTF-8 is stored as that text, readable in the console as
usual; any other event (binary output, a stray byte in text) is stored as
ENCODED followed by its bytes in base64, and so is a text event that happens to
start with ENCODED itself, so that reading is never ambiguous. A flush holds
back a character cut in half at its end (up to 3 bytes) for the next one, so
text cut by a pipe read stays text; at `close` everything goes. `read` turns
every event back into its bytes.

Streams are created lazily, at the first output: a task that prints nothing
costs no call, which matters because CreateLogStream allows only about 50
calls/s per account and region. A retry (attempt > 1) creates its stdout
stream at once even if silent, so that it still hides the earlier attempt's
output (a silent first attempt has nothing to hide).

Reading. The offset is the number of bytes of the stream already returned (the
job's bytes, not the stored text). `read` finds the latest attempt's stream (DescribeLogStreams by
prefix) and reads events from the head (GetLogEvents, startFromHead, following
nextForwardToken) until it has skipped `offset` bytes and gathered `limit`.
That is O(size of the stream) per call: fine for job logs of a few MB; a
follower of a very large log would want the forward token cached per offset.
DescribeLogStreams is a low-quota API (about 25 calls/s per account and
region) — one per read.

Quotas to know: with CreateLogStream at about 50 calls/s per account and
region, arrays of very short tasks that all print are bounded by it (one
stream per task and output); a stream per chunk would lift that.
"""

from __future__ import annotations

import base64
import logging
import os
import select
import threading
import time
from typing import Callable

from botocore.exceptions import ClientError

from hyperbatch.support import backoff
from hyperbatch.core.errors import NotFound

log = logging.getLogger("hyperbatch.logs")

MAX_EVENT_BYTES = 256 * 1024 - 26  # an event's message, less the 26 bytes CloudWatch adds per event
MAX_BATCH_BYTES = 1024 * 1024  # sum over a call of (message bytes + 26)
MAX_BATCH_EVENTS = 10_000
EVENT_OVERHEAD = 26
PUT_RETRIES = 3
READ_CHUNK = 64 * 1024
STREAMS = ("stdout", "stderr")


def stream_name(job_id: str, index: int | None, attempt: int, stream: str) -> str:
    return f"{job_id}/{'job' if index is None else index}/{attempt}/{stream}"


ENCODED = "\u241bbase64:"  # "␛base64:" starts an event that holds bytes in base64, not text


def to_messages(data: bytes, most: int = MAX_EVENT_BYTES) -> list[str]:
    """Messages of at most `most` UTF-8 bytes that hold `data` exactly: UTF-8 text as it is (never cut
    inside a character), anything else as ENCODED + base64."""
    raw_most = (most - len(ENCODED.encode())) // 4 * 3  # bytes whose base64 fits in a message
    messages = []
    while data:
        piece = data[: _complete(data[:most])] or data[:most]
        try:
            text = piece.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None or text.startswith(ENCODED):
            piece = data[:raw_most]
            text = ENCODED + base64.b64encode(piece).decode("ascii")
        messages.append(text)
        data = data[len(piece):]
    return messages


def from_message(message: str) -> bytes:
    """The bytes an event holds (the inverse of `to_messages`, one event at a time)."""
    if message.startswith(ENCODED):
        return base64.b64decode(message[len(ENCODED):])
    return message.encode("utf-8")


def batches(messages: list[str]) -> list[list[str]]:
    """Messages grouped into PutLogEvents calls (event count and byte limits)."""
    out: list[list[str]] = []
    size = 0
    for message in messages:
        n = len(message.encode()) + EVENT_OVERHEAD
        if not out or len(out[-1]) == MAX_BATCH_EVENTS or size + n > MAX_BATCH_BYTES:
            out.append([])
            size = 0
        out[-1].append(message)
        size += n
    return out


def _complete(data: bytes) -> int:
    """Length of the longest prefix of `data` that does not end inside a UTF-8 character."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead byte
        need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
        return len(data) - back if need > back else len(data)
    return len(data)


class _Pump(threading.Thread):
    """Reads one pipe until EOF (or `stop`), shipping its bytes to one log stream."""

    def __init__(self, client, group: str, stream: str, fd: int, flush_seconds: float,
                 clock: Callable[[], float], create_now: bool):
        super().__init__(daemon=True, name=f"logs:{stream}")
        self.client, self.group, self.stream, self.fd = client, group, stream, fd
        self.flush_seconds, self.clock = flush_seconds, clock
        self.create_now = create_now
        self.created = False
        self.stopping = threading.Event()
        self.buffer = bytearray()
        self.last_put = float("-inf")
        self.last_timestamp = 0
        self._poll = select.poll()  # not select(): an agent may hold fds above 1024
        self._poll.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)

    def run(self) -> None:
        try:
            if self.create_now:
                self._create()
            self._pump()
        except Exception as exc:  # never let output shipping take the job down
            log.warning("log pump for %s failed: %s", self.stream, exc)
        finally:
            os.close(self.fd)

    def _pump(self) -> None:
        while True:
            now = self.clock()
            if self.buffer:
                wait = max(0.0, self.last_put + self.flush_seconds - now)
            else:
                wait = None
            if self.stopping.is_set():
                wait = 0.0
            elif wait is None or wait > 0.2:
                wait = 0.2  # wake up now and then to notice `stop`
            if self._poll.poll(wait * 1000):
                data = os.read(self.fd, READ_CHUNK)
                if not data:
                    break
                self.buffer += data
            elif self.stopping.is_set():
                break  # nothing more to read right now, and asked to stop
            if self.buffer and self.clock() - self.last_put >= self.flush_seconds:
                self.flush(final=False)
        self.flush()

    def _create(self) -> None:
        try:
            self.client.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                raise
        self.created = True

    def flush(self, final: bool = True) -> None:
        """Ship the buffer; unless `final`, keep a character cut in half at its end for the next flush."""
        cut = len(self.buffer) if final else _complete(bytes(self.buffer[-4:])) + max(0, len(self.buffer) - 4)
        data = bytes(self.buffer[:cut])
        del self.buffer[:cut]
        self.last_put = self.clock()
        if not data:
            return
        if not self.created:
            self._create()
        for batch in batches(to_messages(data)):
            events = []
            for message in batch:
                # Strictly increasing timestamps: the read order is the write order.
                self.last_timestamp = max(int(self.clock() * 1000), self.last_timestamp + 1)
                events.append({"timestamp": self.last_timestamp, "message": message})
            self._put(events)

    def _put(self, events: list[dict]) -> None:
        for attempt in range(PUT_RETRIES):
            try:
                self.client.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=events)
                return
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ResourceNotFoundException" and attempt == 0:
                    self._create()
                    continue
                if attempt == PUT_RETRIES - 1:
                    raise
                backoff.pause(attempt, 0.2)


class CloudWatchSink:
    """Pipes for the child's stdout and stderr, pumped to CloudWatch Logs until `close`."""

    def __init__(self, client, group: str, names: dict[str, str], attempt: int, flush_seconds: float,
                 clock: Callable[[], float], close_timeout: float):
        self.close_timeout = close_timeout
        self._pumps = []
        fds = {}
        for stream in STREAMS:
            read_end, write_end = os.pipe()
            fds[stream] = write_end
            self._pumps.append(
                _Pump(client, group, names[stream], read_end, flush_seconds, clock,
                      create_now=stream == "stdout" and attempt > 1)
            )
        self.stdout, self.stderr = fds["stdout"], fds["stderr"]
        self._closed = False
        for pump in self._pumps:
            pump.start()

    def close(self, kept: bool = True, lingering: bool = False) -> None:
        """Close our write ends, then wait for the pumps to ship the rest (the pipes are this run's own,
        and its output has been shipped as it came: `kept` and `lingering` change nothing here).

        A pump ends at EOF, which comes when every writer is gone; a process
        the job left running in the background may still hold the pipe, so
        after `close_timeout` the pumps ship what they have and stop (that
        process then gets SIGPIPE if it writes again; the agent kills the
        job's process group anyway).
        """
        if self._closed:
            return
        self._closed = True
        os.close(self.stdout)
        os.close(self.stderr)
        deadline = time.monotonic() + self.close_timeout
        for pump in self._pumps:
            pump.join(max(0.0, deadline - time.monotonic()))
        for pump in self._pumps:
            if pump.is_alive():
                pump.stopping.set()
                pump.join(5.0)


class CloudWatchLogStore:
    def __init__(self, client, group_prefix: str, queue_of: Callable[[str], str], *, flush_seconds: float = 1.0,
                 close_timeout: float = 10.0, clock: Callable[[], float] = time.time):
        self.client, self.group_prefix, self.queue_of = client, group_prefix, queue_of
        self.flush_seconds, self.close_timeout, self.clock = flush_seconds, close_timeout, clock

    def group(self, job_id: str) -> str:
        return f"{self.group_prefix}{self.queue_of(job_id)}"

    def sink(self, job_id: str, index: int | None, attempt: int) -> CloudWatchSink:
        names = {s: stream_name(job_id, index, attempt, s) for s in STREAMS}
        return CloudWatchSink(self.client, self.group(job_id), names, attempt, self.flush_seconds, self.clock,
                              self.close_timeout)

    def read(self, job_id: str, index: int | None, stream: str, offset: int, limit: int) -> tuple[bytes, int]:
        try:
            group = self.group(job_id)
        except NotFound:
            return b"", offset
        name = self._latest(group, job_id, index, stream)
        if name is None:
            return b"", offset
        data = self._bytes(group, name, offset, limit)
        return data, offset + len(data)

    def _latest(self, group: str, job_id: str, index: int | None, stream: str) -> str | None:
        """The requested stream of the latest attempt (None if that attempt wrote nothing there)."""
        prefix = f"{job_id}/{'job' if index is None else index}/"
        names, token = [], None
        while True:
            params = {"logGroupName": group, "logStreamNamePrefix": prefix}
            if token:
                params["nextToken"] = token
            try:
                response = self.client.describe_log_streams(**params)
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                    return None
                raise
            names += [s["logStreamName"] for s in response.get("logStreams", [])]
            token = response.get("nextToken")
            if not token:
                break
        attempts = []
        for name in names:
            parts = name[len(prefix):].split("/")
            if len(parts) == 2 and parts[0].isdigit() and parts[1] in STREAMS:
                attempts.append(int(parts[0]))
        if not attempts:
            return None
        latest = f"{prefix}{max(attempts)}/{stream}"
        return latest if latest in names else None

    def _bytes(self, group: str, name: str, offset: int, limit: int) -> bytes:
        """Bytes [offset, offset + limit) of the stream, reading events from the head."""
        out = bytearray()
        seen = 0  # bytes of the stream passed so far
        token = None
        while len(out) < limit:
            params = {"logGroupName": group, "logStreamName": name, "startFromHead": True}
            if token:
                params["nextToken"] = token
            try:
                response = self.client.get_log_events(**params)
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                    break
                raise
            for event in response.get("events", []):
                data = from_message(event["message"])
                if seen + len(data) > offset:
                    out += data[max(0, offset - seen):]
                seen += len(data)
                if len(out) >= limit:
                    break
            following = response.get("nextForwardToken")
            if not following or following == token:
                break  # the same token back means the end of the stream
            token = following
        return bytes(out[:limit])

"""qlog: print (or follow) a job's or an array task's stdout or stderr.

The output is written as the bytes the job wrote, to a file, a pipe or a terminal alike: the API
sends them base64-encoded, from byte offsets, so nothing is dropped, replaced or shifted.
"""

from __future__ import annotations

import base64
import sys
import time
from typing import Any

import click
from hyperbatch.cli.errors import ApiError, CliError
from hyperbatch.cli.pbs.common import (
    CONTEXT,
    LOG_POLL_SECONDS,
    Outage,
    api_client,
    job_path,
    parse_ref,
)
from hyperbatch.cli.runner import err as _err
from hyperbatch.cli.runner import run as _run


@click.command(
    "qlog",
    context_settings=CONTEXT,
    options_metavar="[OPTIONS]",
    help="Print a job's output (stdout, or stderr with -e) exactly as stored. ID[3] picks one "
    "array task. With -f, keep printing new output as it arrives until the job finishes "
    "(Ctrl-C stops following; the job keeps running).",
)
@click.option("-e", "stderr", is_flag=True, help="Print the job's stderr instead of its stdout.")
@click.option("-f", "follow", is_flag=True, help="Follow: wait for more output until the job finishes.")
@click.argument("job_ref", metavar="ID")
def qlog(stderr: bool, follow: bool, job_ref: str) -> int:
    job_id, index, _ = parse_ref(job_ref)
    client = api_client()
    path = job_path(job_id, "log")
    stream = "stderr" if stderr else "stdout"
    offset: Any = 0
    outage = Outage()
    told = None  # the waiting state last reported, so each is said once
    while True:
        query = {"stream": stream, "offset": offset, "index": index}
        fetch = lambda: client.request("GET", path, query=query)  # noqa: E731
        try:
            answer = outage.call(fetch) if follow else fetch()
        except ApiError as exc:
            if exc.status == 404:
                raise CliError(f"Unknown Job Id {exc.job_id or job_ref}", exit_code=exc.exit_code) from None
            raise
        if answer is None:  # host briefly unreachable while following
            time.sleep(LOG_POLL_SECONDS)
            continue
        body = answer[1] if isinstance(answer[1], dict) else {}
        data = _bytes(body)
        if data:
            _write_raw(data)
        new_offset = body.get("offset")
        advanced = new_offset is not None and new_offset != offset
        if new_offset is not None:
            offset = new_offset
        if body.get("final"):
            return 0
        if not follow:
            if not data or not advanced:
                return 0
            continue  # a large log comes in pages: keep reading
        if not data:
            state = body.get("state")
            if state in _WAITING and state != told:
                _err(f"qlog: {job_ref} is {_WAITING[state]}; waiting for its output (Ctrl-C stops waiting)")
                told = state
            time.sleep(LOG_POLL_SECONDS)


# States in which a job may wait without end, and what qlog -f says of them (on stderr, once each).
_WAITING = {
    "HELD": "held: it starts once released with qrls",
    "WAITING": "waiting for the jobs it depends on",
}


def _bytes(body: dict) -> bytes:
    """The chunk's bytes: base64 as the API sends them (text from a server that predates that)."""
    data = body.get("data") or ""
    if body.get("encoding") == "base64":
        return base64.b64decode(data)
    return data.encode("utf-8", "surrogateescape")


def _write_raw(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def qlog_main(argv: list[str] | None = None) -> int:
    return _run(qlog, "qlog", argv)

"""What the PBS commands share: the current host's client, job references, exit codes, outages.

Exit codes: 0 success; 1 unknown job, refused (401/403/409), unreachable host
or no host; 2 bad usage or input the server rejected (400/422); 130 on Ctrl-C.
`qsub --wait` exits with the job's own status instead (see its --help).
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

from hyperbatch.cli.errors import ApiError, Unreachable, UsageError
from hyperbatch.cli.runner import err as _err
from hyperbatch.cli.runner import one_line as _one_line

CONTEXT = {"help_option_names": ["--help"], "max_content_width": 100}
FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
ACTIVE_STATES = ("WAITING", "HELD", "QUEUED", "RUNNING")
MAX_SCRIPT_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit; the server enforces its own, smaller one
POLL_MAX_SECONDS = 2.0
LOG_POLL_SECONDS = 0.3
OUTAGE_GRACE_SECONDS = 60.0  # --wait and qlog -f ride out a daemon restart this long
TASK_PAGE = 1000

_REF_RE = re.compile(r"([^\[\]\s]+)(?:\[([0-9]*)\])?")


# ---------------------------------------------------------------------------------------------
# helpers shared by the commands


def api_client() -> Any:
    from hyperbatch.cli.client import current_client

    return current_client()


def job_path(job_id: str, *rest: str) -> str:
    from hyperbatch.cli.client import job_path

    return job_path(job_id, *rest)


def parse_ref(text: str) -> tuple[str, int | None, bool]:
    """`ID` -> (ID, None, False); `ID[]` -> (ID, None, True); `ID[7]` -> (ID, 7, False).

    Only the brackets are checked here; the server says whether the id exists.
    """
    match = _REF_RE.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"illegally formed job identifier: {text!r} (use ID, ID[] or ID[INDEX])")
    job_id, index = match.groups()
    if index is None:
        return job_id, None, False
    if index == "":
        return job_id, None, True
    return job_id, int(index), False


def exit_code_for(job: dict[str, Any]) -> int:
    """A finished job's exit status as a shell exit code: 0..255 as is, killed by signal N
    (256+N) -> 128+N, scheduler failures (negative) -> 1, no status -> 0 if SUCCEEDED else 1."""
    status = job.get("exit_status")
    if isinstance(status, int) and not isinstance(status, bool):
        if 0 <= status <= 255:
            return status
        if status > 255:
            return min(128 + (status - 256), 255)
        return 1
    return 0 if job.get("state") == "SUCCEEDED" else 1


def split_items(text: str) -> list[str]:
    """Split 'A=1,B='x,y',C' on commas outside quotes, dropping the quotes (PBS -v/-l lists)."""
    items, buf, quote = [], [], ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
            else:
                buf.append(ch)
        elif ch in "'\"":
            quote = ch
        elif ch == ",":
            items.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    if quote:
        raise UsageError(f"unbalanced {quote} in {text!r}")
    items.append("".join(buf))
    return [item.strip() for item in items if item.strip()]


class Outage:
    """Tolerates an unreachable host for a while (daemon restart) during long polls."""

    def __init__(self) -> None:
        self.since: float | None = None

    def call(self, fn: Callable[[], Any]) -> Any:
        try:
            result = fn()
        except Unreachable:
            now = time.monotonic()
            if self.since is None:
                self.since = now
            elif now - self.since > OUTAGE_GRACE_SECONDS:
                raise
            return None
        self.since = None
        return result


# ---------------------------------------------------------------------------------------------
# qsub


def per_job_error(prog: str, text: str, exc: ApiError) -> int:
    """Report one id's failure and carry on with the rest; re-raise what no other id would survive.

    PBS's words where a client may parse them: `Unknown Job Id ID`, and `Job has finished ID` for a
    job (or task) that finished before the request (the server's code JobFinished), both exit 1.
    """
    if exc.status == 404:
        _err(f"{prog}: Unknown Job Id {text}")
        return 1
    if exc.status == 409 and exc.code == "JobFinished":
        _err(f"{prog}: Job has finished {text}")
        return 1
    if exc.status in (400, 403, 409, 422):
        _err(f"{prog}: {text}: {_one_line(exc.message)}")
        return exc.exit_code
    raise exc

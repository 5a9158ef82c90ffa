"""What the PBS commands share: running a command, the current host's client, job ids, PBS's errors.

Exit codes follow PBS: a failure the server reports with a PBS error number
exits with that number's low byte (unknown job 153, job finished 35, bad
state 168, ...), the last failure's when several operands fail; a malformed
job id exits 1; bad usage 2 (with the command's usage on stderr); an
unreachable host 1; Ctrl-C 130. Everything here imports only the standard
library's light modules, so a command starts in about the time of a bare
interpreter (bench/latency.py); click is loaded only by commands that use it.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds, and only checkers need it
if TYPE_CHECKING:
    from typing import Any, Callable

from hyperbatch.cli.errors import ApiError, CliError, Unreachable, UsageError
from hyperbatch.cli.pbs.getopt import BadOption, getopt

PBS_VERSION = "23.06.06"  # what `--version` reports: the PBS Pro release these commands follow
CONTEXT = {"help_option_names": ["--help"], "max_content_width": 100}
FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
ACTIVE_STATES = ("WAITING", "HELD", "QUEUED", "RUNNING")
MAX_SCRIPT_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit; the server enforces its own, smaller one
POLL_MAX_SECONDS = 2.0
LOG_POLL_SECONDS = 0.3
OUTAGE_GRACE_SECONDS = 60.0  # --wait and qlog -f ride out a daemon restart this long
TASK_PAGE = 1000
LIST_PAGE = 1000

# PBS error numbers the commands act on (hyperbatch.core.errors has them all, with their text).
PBSE_UNKJOBID = 15001
PBSE_HISTJOBID = 15139


class ShowUsage(Exception):
    """Bad usage: print the command's usage (after an optional line) and exit with its usage code."""

    def __init__(self, line: str = "") -> None:
        super().__init__(line)
        self.line = line


def err(line: str) -> None:
    """Write one line to stderr."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def one_line(text: str) -> str:
    """Collapse a (server's) multi-line message into one line, parts joined with '; '."""
    return "; ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


def run(prog: str, body: Callable[[list[str]], int | None], argv: list[str] | None, usage: str,
        usage_exit: int = 2) -> int:
    """Run a command's `body(args)` and turn whatever goes wrong into PBS's one line and exit code.

    `PROG --version` alone prints `pbs_version = ...` as PBS's commands do.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["--version"]:
        sys.stdout.write(f"pbs_version = {PBS_VERSION}\n")
        return 0
    try:
        code = body(args)
        sys.stdout.flush()
        return code if isinstance(code, int) else 0
    except BadOption as exc:
        err(f"{prog}: {exc}")
        sys.stderr.write(usage)
        return usage_exit
    except ShowUsage as exc:
        if exc.line:
            err(exc.line)
        sys.stderr.write(usage)
        return usage_exit
    except CliError as exc:
        err(f"{prog}: {one_line(exc.message)}")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`qstat | head`): stop quietly, and keep the interpreter from complaining at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 141
    except Exception as exc:  # last resort: still one line
        err(f"{prog}: internal error: {type(exc).__name__}: {one_line(str(exc)) or 'no detail'}")
        return 1


def parse(args: list[str], spec: str, long_flags: tuple[str, ...] = ()) -> tuple[list[tuple[str, str | None]], list[str]]:
    """getopt (PBS's option syntax) for a command; a refused option shows the usage."""
    return getopt(args, spec, long_flags)


# ---------------------------------------------------------------------------------------------
# the server and its jobs


def option_context() -> Any:
    """What the option table (hyperbatch.core.options) reads besides the text of qsub's and qalter's
    options: now, this environment, this host (gethostname(2), without importing socket) and the
    submit directory (PBS_O_WORKDIR)."""
    from hyperbatch.core.options import Context

    return Context(now=time.time(), environ=os.environ, host=os.uname().nodename, cwd=_submit_dir())


def _submit_dir() -> str | None:
    """The current directory, as $PWD names it when it is this directory (as PBS's qsub takes it)."""
    try:
        here = os.getcwd()
    except OSError:
        return os.environ.get("PWD") or None
    given = os.environ.get("PWD")
    try:
        if given and os.path.samefile(given, here):
            return given
    except OSError:
        pass
    return here


def api_client() -> Any:
    from hyperbatch.cli.client import current_client

    return current_client()


def job_path(job_id: str, *rest: str) -> str:
    from hyperbatch.cli.client import job_path

    return job_path(job_id, *rest)


def parse_id(text: str) -> Any:
    """The operand as a job reference (hyperbatch.core.ids.JobRef); CliError "illegally formed job
    identifier" (exit 1) when it is not one."""
    from hyperbatch.core.ids import IllegalJobId, parse_job_ref

    try:
        return parse_job_ref(text)
    except IllegalJobId:
        raise CliError(f"illegally formed job identifier: {text}") from None


def parse_ref(text: str) -> tuple[str, int | None, bool]:
    """`ID` -> (ID, None, False); `ID[]` -> (ID, None, True); `ID[7]` -> (ID, 7, False), ID as typed
    without its brackets (`1234.server[]` is no id: the brackets come before .SERVER)."""
    ref = parse_id(text)
    whole = text.strip()
    if ref.index is not None or ref.array:
        base = ref.seq + (f".{ref.server}" if ref.server else "")
        return base, ref.index, ref.array
    return whole, None, False


def job_error(prog: str, text: str, exc: ApiError, raw_id: bool = False) -> int:
    """Report one operand's failure as PBS's commands do (`prt_job_err`); returns the exit code.

    `raw_id`: echo the id as typed (qdel does); else with .SERVER appended, as the server names it.
    """
    from hyperbatch.core.errors import PBS_TEXT

    shown = text if raw_id else (exc.job_id or text)
    if exc.pbs_errno == PBSE_UNKJOBID:
        err(f"{prog}: Unknown Job Id {shown}")
    elif exc.pbs_errno == PBSE_HISTJOBID:
        err(f"{prog}: Job has finished" + (f" {shown}" if raw_id else ""))
    elif exc.pbs_errno in PBS_TEXT and exc.status != 422:
        err(f"{prog}: {PBS_TEXT[exc.pbs_errno]} {shown}")
    elif exc.status in (400, 403, 404, 409, 422):
        err(f"{prog}: {shown}: {one_line(exc.message)}")
    else:
        raise exc
    return exc.exit_code


def each_job(prog: str, ids: list[str], act: Callable[[Any, str], Any], raw_id: bool = False) -> int:
    """Apply `act(client, id)` to each operand in turn, as PBS's commands loop; failures are reported
    and the rest still processed; the exit code is the last failure's (0 if none failed)."""
    client = None
    rc = 0
    for text in ids:
        try:
            parse_id(text)
        except CliError as exc:
            err(f"{prog}: {exc.message}")
            rc = 1
            continue
        client = client or api_client()
        try:
            act(client, text)
        except ApiError as exc:
            rc = job_error(prog, text, exc, raw_id)
    return rc


def list_jobs(client: Any, query: dict[str, Any], most: int | None = None) -> list[dict[str, Any]]:
    """Every job a listing returns (GET /jobs, page after page), or only the newest `most`, oldest
    first as PBS lists them."""
    seen: set[str] = set()
    token = None
    out: list[dict[str, Any]] = []
    while True:
        limit = LIST_PAGE if most is None else min(LIST_PAGE, most - len(out))
        _, page = client.request("GET", "/jobs", query={**query, "limit": limit, "next": token})
        page = page or {}
        out.extend(page.get("jobs") or [])
        token = page.get("next")
        if not token or str(token) in seen or (most is not None and len(out) >= most):
            break
        seen.add(str(token))
    out.reverse()
    return out


def iter_tasks(client: Any, job_id: str):
    """An array's tasks (GET /jobs/ID/tasks, page after page)."""
    offset: Any = 0
    path = job_path(job_id, "tasks")
    while True:
        _, page = client.request("GET", path, query={"offset": offset, "limit": TASK_PAGE})
        page = page or {}
        yield from page.get("tasks") or []
        nxt = page.get("next")
        if nxt is None or nxt == offset:
            return
        offset = nxt


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

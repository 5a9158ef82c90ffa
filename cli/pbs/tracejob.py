"""tracejob: a job's history, as PBS Pro's tracejob prints what it finds in the logs.

    tracejob [-a|s|l|m|v] [-w size] [-n days] [-z] [-c count] job_identifier...

HyperBatch keeps each job's history on the job itself (hyperbatch.core.history:
submit, holds, each run with its host, signals, the exit, deletion, re-runs,
moves), so nothing is read from log files: -p (PBS_HOME) and -f (log event
types) are refused. Sources: S the server's side, M the worker's (PBS's MoM);
-s and -m leave them out (-a and -l, accounting and scheduler logs, have
nothing to leave out). Like PBS, only the last -n days (default 1) are looked
at, and a job with nothing in them is "not found" (exit 1).
"""

from __future__ import annotations

import shutil
import sys
import time

from hyperbatch.cli.errors import ApiError, CliError, UsageError
from hyperbatch.cli.pbs.common import ShowUsage, api_client, err, job_path, parse, parse_id, run

SPEC = "zvamslw:p:n:f:c:"
USAGE = """USAGE: tracejob [-a|s|l|m|v] [-w size] [-p path] [-n days] [-f filter_type] job_identifier...
   -p : path to PBS_HOME
   -w : number of columns of your terminal
   -n : number of days in the past to look for job(s) [default 1]
   -f : filter out types of log entries, multiple -f's can be specified
        error, system, admin, job, job_usage, security, sched, debug,
        debug2, resv, debug3, debug4, force or absolute numberic equiv
   -z : toggle filtering excessive messages
   -c : what message count is considered excessive
   -a : don't use accounting log files
   -s : don't use server log files
   -l : don't use scheduler log files
   -m : don't use mom log files
   -v : verbose mode - show more error messages

       tracejob --version
   --version : display version only

"""
DAY = 86400


def entry_lines(entries: list, days: int, width: int, skip: set[str], now: float | None = None) -> list[str]:
    """The history entries of the last `days` days (calendar days, today included), in order, as
    tracejob prints them: `MM/DD/YYYY HH:MM:SS  S    message`, long messages wrapped to `width`."""
    now = time.time() if now is None else now
    start = time.mktime(time.localtime(now)[:3] + (0, 0, 0, 0, 0, -1)) - (days - 1) * DAY
    out = []
    for at, source, text in entries:  # in the order they were written (a write appends its event)
        if at < start or source in skip:
            continue
        stamp = time.strftime("%m/%d/%Y %H:%M:%S", time.localtime(at))
        out.append("%-20s %-5c" % (stamp, source) + wrap(str(text), 26, width))
    return out


def wrap(line: str, start: int, end: int) -> str:
    """line_wrap: break at spaces so lines stay within `end` columns, continuations indented `start`."""
    if end <= 0:
        return line + "\n"
    room = end - start if end > start else 0
    out, first = [], True
    while line:
        if len(line) > room > 0:
            cut = line.rfind(" ", 0, room + 1)
            if cut <= 0:
                cut = line.find(" ", room)
                cut = len(line) if cut < 0 else cut
            piece, line = line[:cut], line[cut + 1:]
        else:
            piece, line = line, ""
        out.append(piece if first else " " * start + piece)
        first = False
    return "\n".join(out) + "\n"


def tracejob(args: list[str]) -> int:
    opts, ids = parse(args, SPEC)
    days, width, skip = 1, -1, set()
    for opt, value in opts:
        flag = opt.lstrip("-")
        if flag in ("n", "w", "c"):
            if not (value or "").lstrip("-").isdigit():
                raise ShowUsage()
            if flag == "n":
                days = max(1, int(value))
            elif flag == "w":
                width = int(value)
        elif flag == "s":
            skip.add("S")
        elif flag == "m":
            skip.add("M")
        elif flag == "p":
            raise UsageError("-p does not apply: HyperBatch keeps each job's history with the job, not in log files")
        elif flag == "f":
            raise UsageError("-f does not apply: a job's history holds job events only")
    if not ids:
        raise ShowUsage()
    if width < 0:
        width = shutil.get_terminal_size((0, 0)).columns if sys.stdout.isatty() else 0
    client = api_client()
    rc = 0
    for text in ids:
        try:
            parse_id(text)
            _, job = client.request("GET", job_path(text))
        except ApiError as exc:
            if exc.status != 404:
                err(f"tracejob: {exc.job_id or text}: {exc.message}")
            else:
                sys.stderr.write(_not_found(exc.job_id or text, days))
            rc = 1
            continue
        except CliError:  # not even shaped like a job id
            sys.stderr.write(_not_found(text, days))
            rc = 1
            continue
        history = job.get("history") or []
        lines = entry_lines(history, days, width, skip)
        if not lines:
            sys.stderr.write(_not_found(job["id"], days))
            rc = 1
            continue
        sys.stdout.write(f"\nJob: {job['id']}\n\n" + "".join(lines))
    return rc


def _not_found(job_id: str, days: int) -> str:
    return f"\ntracejob: Couldn't find Job Id {job_id} in logs of past {days} day{'' if days == 1 else 's'}\n\n"


def tracejob_main(argv: list[str] | None = None) -> int:
    """tracejob prints its usage on stdout and exits 1 (PBS)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        opts, ids = parse(args, SPEC)
    except Exception:
        ids = []
    if not ids and args != ["--version"]:
        sys.stdout.write(USAGE)
        return 1
    return run("tracejob", tracejob, args, USAGE, usage_exit=1)

"""qstat: jobs, arrays and their tasks, queues and the server, as PBS Pro's qstat shows them.

    qstat [-f] [-J] [-p] [-t] [-x] [-E] [-F json|dsv | -w] [-D delim] [ID... | QUEUE...]
    qstat [-a|-i|-r|-H] [-J] [-t] [-u user] [-n] [-s] [-G|-M] [-1] [-w] [ID... | QUEUE...]
    qstat -Q [-f] [-F json|dsv] [-D delim] [QUEUE...]
    qstat -q [-G|-M] [QUEUE...]
    qstat -B [-f] [-F json|dsv] [-D delim] [SERVER...]
    qstat --json [-x] [-t] [ID...]      (HyperBatch: the API's job objects as a JSON list)

Options and formats are PBS Pro's (OpenPBS src/cmds/qstat.c; the renderers
are in hyperbatch.cli.output). Without operands qstat lists every unfinished
job you may see (all users' in local mode), oldest first; -x adds finished
ones. An ID names a job, an array (`1234[]`) or one task (`1234[7]`), with or
without `.SERVER`. A finished job named without -x or -H is reported as PBS
reports it (exit 35); an unknown id exits 153.

The default table says more than PBS inside PBS's own columns (output.time_use): an
array's Time Use is its progress (`412/1000`), a task that did not succeed shows
`exit=N`, `sig=N` or `deleted` there, its state staying PBS's X.
"""

from __future__ import annotations

import sys
import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds, and only checkers need it
if TYPE_CHECKING:
    from typing import Any

from hyperbatch.cli import output
from hyperbatch.cli.errors import ApiError, CliError
from hyperbatch.cli.pbs.common import (
    ACTIVE_STATES, FINAL_STATES, PBSE_HISTJOBID, ShowUsage, api_client, err, iter_tasks, job_error,
    job_path, list_jobs, parse, parse_id, run,
)

SPEC = "ainpqrstwxu:fGHJMQEBW:T1F:D:"
USAGE = "usage: \n" """qstat [-f] [-J] [-p] [-t] [-x] [-E] [-F format | -w] [-D delim] [ job_identifier... | destination... ]
qstat [-a|-i|-r|-H|-T] [-J] [-t] [-u user] [-n] [-s] [-G|-M] [-1] [-w]
\t[ job_identifier... | destination... ]
qstat -Q [-f] [-F format] [-D delim] [ destination... ]
qstat -q [-G|-M] [ destination... ]
qstat -B [-f] [-F format] [-D delim] [ server_name... ]
qstat --version
"""
CONFLICT = "qstat: conflicting options."


class Options:
    """The parsed command line (PBS's flags; `alt` holds the ones that select the alternate format)."""

    def __init__(self, opts: list[tuple[str, str | None]]):
        self.full = self.history = self.tasks = self.arrays_only = self.wide = self.percent = False
        self.sort = self.as_json = False
        self.mode = "jobs"
        self.alt: set[str] = set()
        self.users: list[str] = []
        self.format = "default"
        self.delimiter: str | None = None
        conflict = False
        for opt, value in opts:
            flag = opt.lstrip("-")
            if flag in ("a", "i", "r", "H", "n", "s", "1", "G", "M", "T"):
                self.alt.add(flag)
                if flag in ("n", "s"):
                    self.full = False  # as qstat.c: -n and -s switch -f off
            elif flag == "u":
                self.alt.add("u")
                self.users += [u for u in (value or "").split(",") if u]
            elif flag == "q":
                self.alt.add("q")
                self.mode = "queues"
            elif flag == "f":
                self.full = True
            elif flag == "x":
                self.history = True
            elif flag == "t":
                self.tasks = True
            elif flag == "J":
                self.arrays_only = True
            elif flag == "w":
                self.wide = True
            elif flag == "p":
                self.percent = True
            elif flag == "E":
                self.sort = True
            elif flag == "Q":
                conflict |= self.mode == "server"
                self.mode = "queues"
            elif flag == "B":
                conflict |= self.mode == "queues" and "q" not in self.alt
                self.mode = "server"
            elif flag == "F":
                fmt = (value or "").lower()
                if fmt not in ("json", "dsv", "default"):
                    raise ShowUsage()
                self.format = fmt
            elif flag == "D":
                if self.format != "dsv":
                    raise ShowUsage()
                self.delimiter = value or "|"
            elif flag == "W":
                raise ShowUsage("qstat: -W is not supported; use -a, -i, -r, -H or -u")
            elif opt == "--json":
                self.as_json = True
        # The combinations qstat.c refuses.
        picked = self.alt & {"a", "i", "r", "q", "H"}
        conflict |= len(picked) > 1 or {"G", "M"} <= self.alt
        listing_alt = self.alt - {"1"}
        conflict |= self.format != "default" and (not self.full or bool(listing_alt))
        conflict |= "q" in self.alt and self.full
        conflict |= "1" in self.alt and not self.alt & {"n", "s"}
        if self.wide and self.format != "default":
            raise ShowUsage("qstat: option w cannot be used with -F")
        if conflict:
            raise ShowUsage(CONFLICT)
        if "T" in self.alt:
            raise CliError("-T option is unavailable.")

    @property
    def alternate(self) -> bool:
        return bool(self.alt) and not (self.wide and self.full)

    def states(self) -> str | None:
        """The states a listing asks the server for (None: every state)."""
        if "H" in self.alt:
            return ",".join(sorted(FINAL_STATES))
        if "r" in self.alt:
            return "RUNNING"
        if "i" in self.alt:
            return "WAITING,HELD,QUEUED"
        return None if self.history else ",".join(ACTIVE_STATES)


def qstat(args: list[str]) -> int:
    opts, operands = parse(args, SPEC, ("--json",))
    options = Options(opts)
    client = api_client()
    if options.mode == "queues":
        return _queues(client, options, operands)
    if options.mode == "server":
        return _server(client, options, operands)
    return _jobs(client, options, operands)


# ---- jobs -------------------------------------------------------------------------------------

def _jobs(client: Any, options: Options, operands: list[str]) -> int:
    now = time.time()
    rc = 0
    groups: list[list[tuple[str, list]]] = []  # per operand: the (id, attributes) it shows
    views: list[dict] = []  # --json
    if options.sort:
        operands = sorted(operands, key=_sort_key)
    if not operands:
        groups.append(_listing(client, options, None, views, now))
    for text in operands:
        if not text[:1].isdigit():  # a destination: a queue, queue@server or @server
            queue = text.split("@", 1)[0] or None
            try:
                groups.append(_listing(client, options, queue, views, now))
            except ApiError as exc:
                err(f"qstat: Unknown queue {text}" if exc.pbs_errno == 15018 else f"qstat: {exc.message}")
                rc = exc.exit_code
            continue
        try:
            parse_id(text)
            groups.append(_one(client, options, text, views, now))
        except CliError as exc:
            groups.append([])
            if isinstance(exc, ApiError) and exc.pbs_errno == PBSE_HISTJOBID:
                err(f"qstat: {exc.job_id or text} Job has finished, use -x or -H to obtain historical job information")
            elif isinstance(exc, ApiError):
                job_error("qstat", text, exc)
            else:
                err(f"qstat: {exc.message}")
            rc = exc.exit_code
    sys.stdout.write(_render(client, options, groups, views, now))
    return rc


def _listing(client: Any, options: Options, queue: str | None, views: list, now: float) -> list:
    users = options.users or ["*"]
    jobs: list[dict] = []
    for user in users:
        jobs += list_jobs(client, {"owner": user, "queue": queue, "state": options.states()})
    if len(users) > 1:
        jobs.sort(key=lambda j: int(j.get("seq") or 0))
    shown: list[tuple[str, list]] = []
    for job in jobs:
        shown += _with_tasks(client, options, job, views, now)
    return shown


def _one(client: Any, options: Options, text: str, views: list, now: float) -> list:
    _, found = client.request("GET", job_path(text))
    if "array_id" in found:  # one task, named as ID[INDEX]
        if found.get("state") in FINAL_STATES and not (options.history or "H" in options.alt):
            raise ApiError(409, "JobFinished", "Job has finished", PBSE_HISTJOBID, found.get("id"))
        views.append(found)
        return [(found["id"], output.task_attributes(found, now))]
    if found.get("state") in FINAL_STATES and not (options.history or "H" in options.alt):
        raise ApiError(409, "JobFinished", "Job has finished", PBSE_HISTJOBID, found.get("id"))
    return _with_tasks(client, options, found, views, now, named=True)


def _with_tasks(client: Any, options: Options, job: dict, views: list, now: float, named: bool = False) -> list:
    """The job's entry and, with -t, its tasks' (with -J: arrays only; -J -t: their tasks only)."""
    array = job.get("array") is not None
    if options.arrays_only and not array:
        return []
    out: list[tuple[str, list]] = []
    if not (options.arrays_only and options.tasks):
        out.append((job["id"], output.job_attributes(job, now)))
    tasks: list[dict] = []
    if options.tasks and array:
        context = {k: job.get(k) for k in ("name", "owner", "queue", "server", "submitted_at")}
        for task in iter_tasks(client, job["id"]):
            task = {**context, **task, "array_id": job["id"]}
            tasks.append(task)
            out.append((task["id"], output.task_attributes(task, now)))
    if options.as_json:
        views.append({**job, "tasks": tasks} if options.tasks and array else job)
    return out


def _render(client: Any, options: Options, groups: list[list[tuple[str, list]]], views: list, now: float) -> str:
    if options.as_json:
        import json

        return json.dumps(views, indent=2) + "\n"
    entries = [entry for group in groups for entry in group]
    if options.format == "json":
        server = _server_name(client, entries)
        return output.json_document(server, "Jobs", {i: output.json_object(a) for i, a in entries}, now)
    if options.full:
        if options.format == "dsv":
            return "".join(output.full_dsv(i, a, options.delimiter or "|") for i, a in entries)
        return "".join(output.full(i, a, one_line=options.wide) for i, a in entries)
    # Tables: the header comes with the first operand's rows only (qstat.c fetches it with that reply).
    first = groups[0] if groups else []
    out = []
    for number, group in enumerate(groups):
        if not group:
            continue
        rows = [output.row_of(a, i) for i, a in group]
        header = number == 0 and bool(first)
        if options.alternate:
            text = output.alt_header(_server_name(client, group), options.wide) if header else ""
            text += "".join(output.alt_row(
                r, wide=options.wide, nodes="n" in options.alt, comment="s" in options.alt,
                one_line="1" in options.alt, units=_units(options)) for r in rows)
            out.append(text)
        else:
            out.append(output.table(rows, wide=options.wide, header=header, percent=options.percent))
    return "".join(out)


def _units(options: Options) -> str | None:
    return "gb" if "G" in options.alt else ("mw" if "M" in options.alt else None)


def _server_name(client: Any, entries: list[tuple[str, list]]) -> str:
    for _, attrs in entries:
        for name, _, value in attrs:
            if name == "server":
                return str(value)
    _, health = client.request("GET", "/health")
    return str((health or {}).get("server") or "")


def _sort_key(text: str) -> tuple:
    seq, _, server = text.partition(".")
    digits = "".join(ch for ch in seq if ch.isdigit())
    return (server, int(digits) if digits else 0, text)


# ---- queues and the server ---------------------------------------------------------------------

def _queues(client: Any, options: Options, operands: list[str]) -> int:
    _, answer = client.request("GET", "/queues")
    server = str(answer.get("server") or "")
    queues = answer.get("queues") or []
    rc = 0
    if operands:
        by_name = {q["name"]: q for q in queues}
        picked = []
        for text in operands:
            name = text.split("@", 1)[0]
            if not name:
                picked += queues
            elif name in by_name:
                picked.append(by_name[name])
            else:
                err(f"qstat: Unknown queue {text}")
                rc = 170
        queues = picked
    if "q" in options.alt:
        sys.stdout.write(output.queue_alt(server, queues))
    elif options.format == "json":
        objects = {q["name"]: output.json_object(output.queue_attributes(q)) for q in queues}
        sys.stdout.write(output.json_document(server, "Queue", objects))
    elif options.full and options.format == "dsv":
        sys.stdout.write("".join(output.full_dsv(q["name"], output.queue_attributes(q), options.delimiter or "|",
                                                 title="Queue") for q in queues))
    elif options.full:
        sys.stdout.write("".join(output.full(q["name"], output.queue_attributes(q), options.wide, title="Queue")
                                 for q in queues))
    else:
        sys.stdout.write(output.queue_table(queues))
    return rc


def _server(client: Any, options: Options, operands: list[str]) -> int:
    _, answer = client.request("GET", "/queues")
    server = str(answer.get("server") or "")
    queues = answer.get("queues") or []
    from hyperbatch.core.ids import same_server

    rc = 0
    for text in operands:
        if not same_server(text, server):
            err(f"qstat: cannot connect to server {text}: HyperBatch knows only {server}")
            rc = 1
    if operands and rc:
        return rc
    attrs = output.server_attributes(server, queues)
    if options.format == "json":
        sys.stdout.write(output.json_document(server, "Server", {server: output.json_object(attrs)}))
    elif options.full and options.format == "dsv":
        sys.stdout.write(output.full_dsv(server, attrs, options.delimiter or "|", title="Server"))
    elif options.full:
        sys.stdout.write(output.full(server, attrs, options.wide, title="Server"))
    else:
        sys.stdout.write(output.server_table(server, queues))
    return 0


def qstat_main(argv: list[str] | None = None) -> int:
    return run("qstat", qstat, argv, USAGE)

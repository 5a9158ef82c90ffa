"""What qstat prints, byte for byte as PBS Pro's qstat prints it (OpenPBS src/cmds/qstat.c).

Pure functions from the API's job views (and queue listings) to text, so each
format has golden tests (tests/unit/test_qstat_formats.py). The PBS attribute
list of a job (`job_attributes`) is built in one place and rendered three
ways: `-f` (`full`), `-f -F dsv` (`full_dsv`) and `-f -F json` (`json_jobs`);
the tables (`table`, `alt_table`), `-Q`, `-q` and `-B` read the same
attributes. Nothing here talks to the server or imports anything heavy.

Times are shown as ctime(3) shows them, in local time: `Fri Apr 10 09:56:22 2026`.
"""

from __future__ import annotations

import re
import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds, and only checkers need it
if TYPE_CHECKING:
    from typing import Any, Iterable, Mapping, Sequence

from hyperbatch.cli.pbs.common import ACTIVE_STATES, FINAL_STATES, PBS_VERSION  # noqa: F401 (used by the commands)
from hyperbatch.core import staging

DEFAULT_PROJECT = "_pbs_project_default"
LINE_LIMIT = 78  # CHAR_LINE_LIMIT: -f folds values at commas to stay within it
TRUNC = "*"
BLANK = " -- "  # a missing value in the alternate format
# Values typed as JSON strings whatever they look like (OpenPBS batch_item_json_type_triage).
JSON_STRINGS = frozenset({"Job_Name", "project", "Account_Name"})
_NUMBER_RE = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")

Attribute = tuple[str, "str | None", object]  # (name, resource or None, value)


# ---- values ---------------------------------------------------------------------------------

def ctime(epoch: Any) -> str | None:
    """ctime(3) without its newline: 'Fri Apr 10 09:56:22 2026' (day padded with a space)."""
    if not isinstance(epoch, (int, float)) or isinstance(epoch, bool):
        return None
    return time.ctime(epoch)


def hms(seconds: Any) -> str | None:
    """Seconds as PBS prints a duration: HH:MM:SS, hours growing past 99."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return None
    total = max(0, int(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def truncated(text: str, width: int, cut_at_width: bool = False) -> str:
    """PBS's DISPLAY_TRUNC_CHAR rule: longer than `width` -> first width-1 characters and '*'
    (`cut_at_width`: already at `width` too, as qstat does for job names)."""
    if len(text) > width or (cut_at_width and len(text) >= width):
        return text[: width - 1] + TRUNC
    return text


def user_of(owner: str) -> str:
    return owner.split("@", 1)[0]


def node_of(exec_host: Any) -> str | None:
    """A HyperBatch exec_host (`region/worker`) as a PBS node name, as pbsnodes names it."""
    if not exec_host:
        return None
    from hyperbatch.core.nodes import node_of as node

    return node(str(exec_host))


def _ncpus(job: Mapping[str, Any]) -> int:
    value = str((job.get("resources") or {}).get("ncpus") or "1")
    return int(value) if value.isdigit() and int(value) > 0 else 1


def _nodect(job: Mapping[str, Any]) -> int:
    select = str((job.get("resources") or {}).get("select") or "")
    count = select.split(":", 1)[0]
    return int(count) if count.isdigit() and int(count) > 0 else 1


# ---- a job's PBS attributes -------------------------------------------------------------------

def job_attributes(job: Mapping[str, Any], now: float | None = None) -> list[Attribute]:
    """The job's attributes as PBS Pro names and orders them (master_job_attr_def.xml), from its
    API view. Values are the raw Python values; renderers turn them into text or JSON."""
    now = time.time() if now is None else now
    state = str(job.get("state") or "")
    letter = str(job.get("job_state") or "")
    server = str(job.get("server") or "")
    owner = str(job.get("owner") or "")
    submitted, started, finished = job.get("submitted_at"), job.get("started_at"), job.get("finished_at")
    node = node_of(job.get("exec_host"))
    ncpus = _ncpus(job)
    out: list[Attribute] = [
        ("Job_Name", None, job.get("name")),
        ("Job_Owner", None, owner if "@" in owner or not server else f"{owner}@{job.get('submit_host') or server}"),
    ]
    if isinstance(started, (int, float)):
        end = finished if isinstance(finished, (int, float)) else now
        used = {
            "cput": hms(job.get("cpu_seconds") or 0),
            "ncpus": ncpus,
            "walltime": hms(end - started),
        }
        out += [("resources_used", name, value) for name, value in sorted(used.items())]
    out += [
        ("job_state", None, letter),
        ("queue", None, job.get("queue")),
        ("server", None, server or None),
        ("Account_Name", None, job.get("account")),
        ("Checkpoint", None, job.get("checkpoint") or "u"),
        ("ctime", None, ctime(submitted)),
        ("depend", None, job.get("depend") or None),
        ("Error_Path", None, job.get("error_path")),
        ("exec_host", None, f"{node}/0" + (f"*{ncpus}" if ncpus > 1 else "") if node else None),
        ("exec_vnode", None, f"({node}:ncpus={ncpus})" if node else None),
        ("Execution_Time", None, ctime(job.get("execution_time"))),
        ("Hold_Types", None, "u" if state == "HELD" else "n"),
        ("Join_Path", None, job.get("join_path") or "n"),
        ("Keep_Files", None, job.get("keep_files") or "n"),
        ("Mail_Points", None, job.get("mail_points") or "a"),
        ("Mail_Users", None, job.get("mail_users")),
        ("mtime", None, ctime(_last_change(job))),
        ("Output_Path", None, job.get("output_path")),
        ("Priority", None, job.get("priority") if job.get("priority") is not None else 0),
        ("qtime", None, ctime(submitted)),
        ("Rerunable", None, "False" if job.get("rerunable") is False else "True"),
    ]
    out += [("Resource_List", name, value) for name, value in sorted(_resource_list(job).items())]
    out += [
        ("stagein", None, staging.pbs_text(job.get("stagein"))),
        ("stageout", None, staging.pbs_text(job.get("stageout"))),
        ("stime", None, ctime(started)),
        ("obittime", None, ctime(finished) if isinstance(started, (int, float)) else None),
        ("substate", None, job.get("substate")),
        ("Variable_List", None, _variables(job)),
        ("comment", None, job.get("reason") or None),
        ("etime", None, ctime(submitted)),
        ("run_count", None, job.get("run_count") or 0),
        ("Exit_status", None, job.get("exit_status") if state in FINAL_STATES else None),
        ("stageout_files", None, staging.files_text(job.get("stageout_files"))),  # HyperBatch: what went out
    ]
    array = job.get("array")
    if isinstance(array, dict):
        out += [
            ("array", None, "True"),
            ("array_state_count", None, array_state_count(array)),
            ("array_indices_submitted", None, _indices_submitted(array.get("spec"))),
            ("array_indices_remaining", None, "-" if not array.get("pending") else None),
        ]
        limit = _array_limit(array.get("spec"))
        if limit is not None:
            out.append(("max_run_subjobs", None, limit))
    out += [
        ("project", None, job.get("project") or DEFAULT_PROJECT),
        ("Submit_Host", None, job.get("submit_host")),
        ("hyper_state", None, state),  # HyperBatch: SUCCEEDED, FAILED or CANCELLED where PBS says F
        ("definition", None, job.get("definition")),
    ]
    return [a for a in out if a[2] is not None and a[2] != ""]


def task_attributes(task: Mapping[str, Any], now: float | None = None) -> list[Attribute]:
    """One array task (`GET /jobs/ID[INDEX]`): PBS's subjob attributes."""
    server = str(task.get("server") or "")
    owner = str(task.get("owner") or "")
    state = str(task.get("state") or "")
    out: list[Attribute] = [
        ("Job_Name", None, task.get("name")),
        ("Job_Owner", None, owner if "@" in owner or not server else f"{owner}@{server}"),
        ("job_state", None, task.get("job_state")),
        ("queue", None, task.get("queue")),
        ("server", None, server or None),
        ("ctime", None, ctime(task.get("submitted_at"))),
        ("run_count", None, task.get("attempt") if state != "QUEUED" else 0),
        ("Exit_status", None, task.get("exit_status") if state in FINAL_STATES else None),
        ("array_id", None, task.get("array_id")),
        ("array_index", None, task.get("index")),
        ("comment", None, outcome_text(state, task.get("exit_status"))),  # HyperBatch: why a task did not succeed
        ("project", None, DEFAULT_PROJECT),
        ("hyper_state", None, state),
    ]
    return [a for a in out if a[2] is not None and a[2] != ""]


def _last_change(job: Mapping[str, Any]) -> float | None:
    times = [e[0] for e in job.get("history") or [] if isinstance(e, list) and e]
    times += [t for t in (job.get("submitted_at"), job.get("started_at"), job.get("finished_at"))
              if isinstance(t, (int, float))]
    return max(times) if times else None


def _resource_list(job: Mapping[str, Any]) -> dict[str, Any]:
    resources = {str(k): v for k, v in (job.get("resources") or {}).items()}
    ncpus = _ncpus(job)
    out: dict[str, Any] = {**resources, "ncpus": ncpus, "nodect": _nodect(job)}
    out.setdefault("place", "pack")
    out.setdefault("select", f"1:ncpus={ncpus}")
    walltime = job.get("walltime")
    if isinstance(walltime, (int, float)):
        out["walltime"] = hms(walltime)
    return out


def _variables(job: Mapping[str, Any]) -> str | None:
    env = {str(k): str(v) for k, v in (job.get("env") or {}).items()}
    if job.get("workdir") and "PBS_O_WORKDIR" not in env:
        env["PBS_O_WORKDIR"] = str(job["workdir"])
    if job.get("queue"):
        env.setdefault("PBS_O_QUEUE", str(job["queue"]))
    first = sorted(k for k in env if k.startswith("PBS_O_"))
    rest = sorted(k for k in env if not k.startswith("PBS_O_"))
    return ",".join(f"{k}={_escape_commas(env[k])}" for k in first + rest) or None


def _escape_commas(value: str) -> str:
    return value.replace(",", "\\,")


def array_state_count(array: Mapping[str, Any]) -> str:
    """PBS's `Queued:N Running:N Exiting:0 Expired:N` (finished and cancelled tasks are Expired)."""
    expired = sum(int(array.get(k) or 0) for k in ("succeeded", "failed", "cancelled"))
    return (f"Queued:{int(array.get('pending') or 0)} Running:{int(array.get('running') or 0)} "
            f"Exiting:0 Expired:{expired}")


def _indices_submitted(spec: Any) -> str | None:
    return str(spec).split("%", 1)[0] if spec else None


def _array_limit(spec: Any) -> int | None:
    limit = str(spec or "").partition("%")[2]
    return int(limit) if limit.isdigit() else None


# ---- the default table ------------------------------------------------------------------------

_HEADER = ("Job id            Name             User              Time Use S Queue\n"
           "----------------  ---------------- ----------------  -------- - -----\n")
_HEADER_WIDE = ("Job id                         Name            User             Time Use S Queue\n"
                "-----------------------------  --------------- ---------------  -------- - ---------------\n")


def short_id(job_id: str) -> str:
    """The id cut after the first label of its server part (`1.host.example.com` -> `1.host`)."""
    seq, dot, server = job_id.partition(".")
    return seq + dot + server.split(".", 1)[0] if dot else job_id


def row_of(attrs: Sequence[Attribute], job_id: str) -> dict[str, Any]:
    """The attributes the tables read, by their `name` or `name.resource`."""
    out: dict[str, Any] = {"id": job_id}
    for name, resource, value in attrs:
        out[f"{name}.{resource}" if resource else name] = value
    return out


def table(rows: Iterable[Mapping[str, Any]], wide: bool = False, header: bool = True, percent: bool = False) -> str:
    """qstat's default format (display_statjob): rows from `row_of`; '' when there are none.
    `percent` (-p): the Time Use column shows how far each job has come instead."""
    lines = []
    for row in rows:
        job_id = short_id(str(row["id"]))
        name = str(row.get("Job_Name") or "")
        user = user_of(str(row.get("Job_Owner") or ""))
        timeu = percent_done(row) if percent else time_use(row)
        state = str(row.get("job_state") or "")[:1]
        queue = str(row.get("queue") or "").split("@", 1)[0]
        if wide:
            lines.append("%-30s %-15s %-15s  %8s %1s %-15s\n" % (
                truncated(job_id, 30), truncated(name, 15, True), truncated(user, 15),
                truncated(timeu, 8), state, truncated(queue, 15)))
        else:
            lines.append("%-17s %-16s %-16s  %8s %1s %-16s\n" % (
                truncated(job_id, 17), truncated(name, 16, True), truncated(user, 16),
                truncated(timeu, 8), state, truncated(queue, 16)))
    if not lines:
        return ""
    if percent:
        head = _HEADER_WIDE_P if wide else _HEADER_P
    else:
        head = _HEADER_WIDE if wide else _HEADER
    return (head if header else "") + "".join(lines)


def time_use(row: Mapping[str, Any]) -> str:
    """The default table's Time Use column: cput, as PBS prints it, except where HyperBatch has more to
    say in the same 8 characters, so that every PBS column keeps its place (tools split these rows):
    an array shows how many of its tasks finished (`412/1000`; `41%` when that is too wide), and a
    finished task that did not succeed what became of it (`exit=3`, `sig=9`, `deleted`), where PBS
    shows every finished task alike (state X)."""
    counts = row.get("array_state_count")
    if counts:
        numbers = {k: int(v) for k, _, v in (part.partition(":") for part in str(counts).split()) if v.isdigit()}
        total, done = sum(numbers.values()), numbers.get("Expired", 0)
        text = f"{done}/{total}"
        return text if len(text) <= 8 else f"{done * 100 // total}%"
    mark = task_outcome(str(row.get("hyper_state") or ""), row.get("Exit_status")) if row.get("array_id") else None
    return mark or str(row.get("resources_used.cput") or "0")


def task_outcome(state: str, exit_status: Any) -> str | None:
    """One word for a finished job or task that did not succeed, which a script can match: `exit=N`
    (a non-zero exit, or the scheduler's negative status), `sig=N` (killed by signal N: PBS's exit
    status 256+N), `deleted` (qdel); None for any other state."""
    if state == "CANCELLED":
        return "deleted"
    if state != "FAILED":
        return None
    if isinstance(exit_status, int) and not isinstance(exit_status, bool):
        return f"sig={exit_status - 256}" if exit_status > 256 else f"exit={exit_status}"
    return "failed"


def outcome_text(state: str, exit_status: Any) -> str | None:
    """`task_outcome` in words, for people (qstat -f's comment of a task, `hyper top`'s failures)."""
    mark = task_outcome(state, exit_status)
    if mark is None or mark == "failed":
        return mark
    if mark == "deleted":
        return "deleted before it finished"
    kind, _, number = mark.partition("=")
    if kind == "sig":
        import signal

        try:
            return f"killed by signal {number} ({signal.Signals(int(number)).name})"
        except ValueError:
            return f"killed by signal {number}"
    return f"exit status {number}"


_HEADER_P = ("Job id            Name             User               % done  S Queue\n"
             "----------------  ---------------- ----------------  -------- - -----\n")
_HEADER_WIDE_P = ("Job id                         Name            User              % done  S Queue\n"
                  "-----------------------------  --------------- ---------------  -------- - ---------------\n")


def _seconds(text: Any) -> int:
    total = 0
    for part in str(text).split(":"):
        total = total * 60 + (int(part) if part.isdigit() else 0)
    return total


def percent_done(row: Mapping[str, Any]) -> str:
    """percent_cal (-p): tasks expired of an array's, else the larger of cput and walltime used of
    requested; '-- ' while queued or waiting, '100' for a finished task."""
    state = str(row.get("job_state") or "")
    if state in ("Q", "T", "W"):
        return "-- "
    if state == "X":
        return "100"
    counts = row.get("array_state_count")
    if counts:
        numbers = dict(part.split(":") for part in str(counts).split())
        total = sum(int(n) for n in numbers.values())
        return "%3d " % (int(numbers.get("Expired", 0)) * 100 // total) if total else "-- "
    best = -1
    for used, asked in (("resources_used.cput", "Resource_List.cput"),
                        ("resources_used.walltime", "Resource_List.walltime")):
        if row.get(used) and row.get(asked) and _seconds(row[asked]):
            best = max(best, _seconds(row[used]) * 100 // _seconds(row[asked]))
    return "%3d " % best if 0 <= best < 1000 else "-- "


# ---- the alternate table (-a -n -s -1 -u -H -i -r, with -w) -----------------------------------

_DASH, _SPACE = "-" * 80, " " * 80
_WIDE_COLUMNS = (30, 15, 15, 15, 8, 4, 5)
_WIDE_NAMES = ("Job ID", "Username", "Queue", "Jobname", "SessID", "NDS", "TSK")


def alt_header(server: str, wide: bool = False) -> str:
    out = f"\n{server}: "
    if wide:
        out += "\n" + " ".join(_SPACE[:w] for w in _WIDE_COLUMNS) + " Req'd  Req'd   Elap\n"
        out += " ".join(n.ljust(w)[:w] for n, w in zip(_WIDE_NAMES, _WIDE_COLUMNS)) + " Memory Time  S Time\n"
        out += " ".join(_DASH[:w] for w in _WIDE_COLUMNS) + " ------ ----- - -----\n"
        return out
    out += "\n%60s%-7s%-8s%s\n" % (" ", "Req'd", "Req'd", "Elap")
    out += "Job ID          Username Queue    Jobname    SessID NDS TSK Memory Time  S Time\n"
    out += "--------------- -------- -------- ---------- ------ --- --- ------ ----- - -----\n"
    return out


def _cut(value: Any, width: int) -> str:
    """trunc_value: a value longer than `width` gets '*' at position width (then %.*s cuts it)."""
    text = BLANK if value is None or value == "" else str(value)
    return truncated(text, width)


def alt_row(row: Mapping[str, Any], *, wide: bool = False, nodes: bool = False, comment: bool = False,
            one_line: bool = False, units: str | None = None) -> str:
    """One job in the alternate format, with its -n (nodes) and -s (comment) lines; `units` "gb"
    (-G) or "mw" (-M) fixes the Memory column's unit."""
    uses_cput = row.get("Resource_List.cput") is not None
    requested = row.get("Resource_List.cput") if uses_cput else row.get("Resource_List.walltime")
    elapsed = row.get("resources_used.cput") if uses_cput else row.get("resources_used.walltime")
    memory = cnv_size(str(row["Resource_List.mem"]), units) if row.get("Resource_List.mem") else BLANK
    ncpus = row.get("Resource_List.ncpus")
    tasks = None if ncpus in (None, 0, "0") else ncpus
    user = user_of(str(row.get("Job_Owner") or "")) or None
    state = row.get("job_state") or BLANK
    if wide:
        out = "%-30.30s %-15.15s %-15.15s %-15.15s %8.8s %4.4s %5.5s " % (
            _cut(row["id"], 30), _cut(user, 15), _cut(row.get("queue"), 15), _cut(row.get("Job_Name"), 15),
            _cut(row.get("session_id"), 8), _cut(row.get("Resource_List.nodect"), 4), _cut(tasks, 5))
        out += "%6.6s %5.5s %1s %5.5s" % (memory, requested or BLANK, state, elapsed or BLANK)
    else:
        out = "%-15.15s %-8.8s %-8.8s " % (_cut(row["id"], 15), _cut(user, 8), _cut(row.get("queue"), 8))
        out += "%-10.10s %6.6s %3.3s %3.3s " % (
            _cut(row.get("Job_Name"), 10), _cut(row.get("session_id"), 6),
            _cut(row.get("Resource_List.nodect"), 3), _cut(tasks, 3))
        out += "%6.6s %5.5s %1.1s %5.5s" % (memory, requested or BLANK, state, elapsed or BLANK)
    out += " " if one_line else "\n"
    if nodes:
        out += nodes_text(row.get("exec_host") or BLANK, one_line)
    if comment:
        text = str(row.get("comment") or BLANK)
        if not wide and len(text) > 74:
            text = text[:71] + "..."
        elif wide and len(text) > 114:
            text = text[:111] + "..."
        out += f"   {text}\n"
    return out


def nodes_text(exec_host: str, one_line: bool = False) -> str:
    """prt_nodes: exec_host with host domains stripped, wrapped before 77 characters, '   ' indented."""
    lines, line = [], ""
    for chunk in exec_host.split("+"):
        host, slash, rest = chunk.partition("/")
        name = host.split(".", 1)[0] + slash + rest if not _is_ip(host) else chunk
        if line and len(line) + len(name) >= LINE_LIMIT - 1:
            lines.append(line[:-1])
            line = ""
        line += name + "+"
    if line:
        lines.append(line[:-1])
    if one_line:
        return "".join(lines) + "\n" if lines else "\n"
    return "".join(f"   {text}\n" for text in lines)


def _is_ip(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)


def cnv_size(value: str, units: str | None = None) -> str:
    """A size as the alternate format shows it (qstat.c cnv_size): its unit kept, the magnitude raised
    while above 9999; `units` "gb" (-G) or "mw" (-M) converts to that unit first (rounding up)."""
    match = re.fullmatch(r"([0-9]+)([kmgtp]?)([bw]?)", value.strip().lower())
    if match is None:
        return value
    number, magnitude, unit = int(match[1]), " kmgtp".index(match[2] or " "), match[3] or "b"
    if unit == "w":
        number <<= 3  # words to bytes
    if units:
        target = 3 if units == "gb" else 2
        shift = 10 * (magnitude - target)
        number = number << shift if shift >= 0 else (number + (1 << -shift) - 1) >> -shift
        magnitude, unit = target, units[1]
    if unit == "w":
        number = (number + 7) >> 3
    while number > 9999:
        number = (number + 1023) >> 10
        magnitude += 1
    return f"{number}{' kmgtp?'[magnitude].strip()}{unit}"


# ---- -f ---------------------------------------------------------------------------------------

def text_value(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def fold(name: str, resource: str | None, value: str) -> str:
    """prt_attr: `    name = value`, the value broken at commas so lines stay within 78 characters."""
    head = f"    {name}" + (f".{resource}" if resource else "") + " = "
    start = len(name) + 7 + (len(resource) + 1 if resource else 0)
    out = [head]
    tokens = [t for t in value.split(",") if t]  # strtok: empty items vanish
    for number, token in enumerate(tokens):
        if len(token) + start < LINE_LIMIT:
            out.append(token)
            start += len(token)
        else:
            if number:
                out.append("\n\t")
                start = 9
            for ch in token:
                out.append(ch)
                start += 1
                if start > LINE_LIMIT:
                    start = 8
                    out.append("\n\t")
        if number + 1 < len(tokens):
            out.append(",")
    return "".join(out)


def _feeds(value: str) -> str:
    return value.replace("\n", "\\n").replace("\f", "\\f")


def full(job_id: str, attrs: Sequence[Attribute], one_line: bool = False, title: str = "Job Id") -> str:
    """`qstat -f` (and -Qf, -Bf with another title): a block per object, a blank line after it."""
    lines = [f"{title}: {job_id}"]
    for name, resource, value in attrs:
        text = text_value(value)
        if one_line:
            lines.append(f"    {name}" + (f".{resource}" if resource else "") + f" = {_feeds(text)}")
        else:
            lines.append(fold(name, resource, text))
    return "\n".join(lines) + "\n\n"


def full_dsv(job_id: str, attrs: Sequence[Attribute], delimiter: str = "|", title: str = "Job Id") -> str:
    """`qstat -f -F dsv`: one line per object, delimiter-separated, delimiters in values escaped."""
    parts = [f"{title}: {job_id}"]
    for name, resource, value in attrs:
        text = _feeds(text_value(value).replace(delimiter, "\\" + delimiter)) if delimiter else text_value(value)
        parts.append((f"{name}.{resource}" if resource else name) + "=" + text)
    return delimiter.join(parts) + "\n"


# ---- -F json ----------------------------------------------------------------------------------

def json_value(name: str, value: Any) -> Any:
    """A value typed as current PBS Pro types it: what parses as a JSON number or literal keeps that
    type (Exit_status, run_count, ncpus ...); `True`, times, sizes and names stay strings."""
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    text = str(value)
    if name in JSON_STRINGS:
        return text
    if _NUMBER_RE.fullmatch(text):
        number = float(text)
        return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
    return {"true": True, "false": False, "null": None}.get(text, text)


def json_object(attrs: Sequence[Attribute]) -> dict[str, Any]:
    """One object's attributes for -F json: resources nest under their attribute, Variable_List
    becomes an object of its variables."""
    out: dict[str, Any] = {}
    for name, resource, value in attrs:
        if resource is not None:
            out.setdefault(name, {})[resource] = json_value(resource, value)
        elif name == "Variable_List":
            out[name] = {k: json_value(k, v) for k, v in _split_variables(str(value))}
        else:
            out[name] = json_value(name, value)
    return out


def _split_variables(text: str) -> list[tuple[str, str]]:
    items, buf, i = [], [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1:i + 2] == ",":
            buf.append(",")
            i += 2
            continue
        if text[i] == ",":
            items.append("".join(buf))
            buf = []
        else:
            buf.append(text[i])
        i += 1
    items.append("".join(buf))
    return [(k, v) for k, _, v in (item.partition("=") for item in items if item)]


def json_document(server: str, key: str | None = None, objects: Mapping[str, dict] | None = None,
                  now: float | None = None) -> str:
    """The whole -F json answer: timestamp, pbs_version, pbs_server, then `key` ("Jobs", "Queue",
    "Server") only when there is something under it, as PBS creates it lazily."""
    import json

    doc: dict[str, Any] = {
        "timestamp": int(time.time() if now is None else now),
        "pbs_version": PBS_VERSION,
        "pbs_server": server,
    }
    if key and objects:
        doc[key] = dict(objects)
    return json.dumps(doc, indent=4, separators=(",", ":")) + "\n"


# ---- queues and the server --------------------------------------------------------------------

def state_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """HyperBatch's jobs per state as PBS's state_count: a job waiting on dependencies is Held."""
    return {
        "Transit": 0,
        "Queued": int(counts.get("QUEUED") or 0),
        "Held": int(counts.get("HELD") or 0) + int(counts.get("WAITING") or 0),
        "Waiting": 0,
        "Running": int(counts.get("RUNNING") or 0),
        "Exiting": 0,
        "Begun": 0,
    }


def state_count_text(counts: Mapping[str, int]) -> str:
    return "".join(f"{k}:{v} " for k, v in state_counts(counts).items())


def queue_attributes(queue: Mapping[str, Any]) -> list[Attribute]:
    counts = queue.get("counts") or {}
    pbs = state_counts(counts)
    attrs: list[Attribute] = [
        ("queue_type", None, "Execution"),
        ("total_jobs", None, sum(pbs.values())),
        ("state_count", None, state_count_text(counts)),
    ]
    workers = queue.get("workers") or {}
    attrs += [
        ("enabled", None, "True"),
        ("started", None, "True"),
        ("definition", None, queue.get("definition")),  # HyperBatch: the default job definition
        ("backlog", None, queue.get("backlog")),
        ("workers", None, ",".join(f"{r}={n}" for r, n in sorted(workers.items())) or None),
    ]
    return [a for a in attrs if a[2] is not None and a[2] != ""]


def queue_table(queues: Sequence[Mapping[str, Any]]) -> str:
    """`qstat -Q`."""
    if not queues:
        return ""
    out = ["Queue              Max   Tot Ena Str   Que   Run   Hld   Wat   Trn   Ext Type\n",
           "---------------- ----- ----- --- --- ----- ----- ----- ----- ----- ----- ----\n"]
    for queue in queues:
        pbs = state_counts(queue.get("counts") or {})
        out.append("%-16s %5s %5s %3s %3s %5s %5s %5s %5s %5s %5s %-4s\n" % (
            truncated(str(queue["name"]), 16), "0", truncated(str(sum(pbs.values())), 5), "yes", "yes",
            *(truncated(str(pbs[k]), 5) for k in ("Queued", "Running", "Held", "Waiting", "Transit", "Exiting")),
            truncated("Execution", 4)))
    return "".join(out)


def queue_alt(server: str, queues: Sequence[Mapping[str, Any]]) -> str:
    """`qstat -q`."""
    out = [f"\nserver: {server}\n\n",
           "Queue            Memory CPU Time Walltime Node   Run   Que   Lm  State\n",
           "---------------- ------ -------- -------- ---- ----- ----- ----  -----\n"]
    total_run = total_que = 0
    for queue in queues:
        pbs = state_counts(queue.get("counts") or {})
        run, que = pbs["Running"], pbs["Queued"] + pbs["Held"] + pbs["Waiting"]
        total_run, total_que = total_run + run, total_que + que
        out.append("%-16.16s %6.6s %8.8s %8.8s %4.4s " % (queue["name"], "--  ", "  --   ", "  --   ", "-- "))
        out.append("%5d %5d %4.4s   %c %c\n" % (run, que, "  --   ", "E", "R"))
    out.append("                                               ----- -----\n")
    out.append("                                               %5d %5d\n" % (total_run, total_que))
    return "".join(out)


def server_attributes(server: str, queues: Sequence[Mapping[str, Any]]) -> list[Attribute]:
    totals: dict[str, int] = {}
    for queue in queues:
        for state, n in (queue.get("counts") or {}).items():
            totals[state] = totals.get(state, 0) + int(n)
    pbs = state_counts(totals)
    return [
        ("server_state", None, "Active"),
        ("server_host", None, server),
        ("scheduling", None, "True"),
        ("total_jobs", None, sum(pbs.values())),
        ("state_count", None, state_count_text(totals)),
        ("default_queue", None, queues[0]["name"] if queues else None),
        ("pbs_version", None, PBS_VERSION),
        ("job_history_enable", None, "True"),
    ]


def server_table(server: str, queues: Sequence[Mapping[str, Any]]) -> str:
    """`qstat -B`."""
    attrs = dict((name, value) for name, _, value in server_attributes(server, queues))
    pbs = state_counts({})
    for queue in queues:
        for key, n in state_counts(queue.get("counts") or {}).items():
            pbs[key] += n
    return ("Server             Max   Tot   Que   Run   Hld   Wat   Trn   Ext Status\n"
            "---------------- ----- ----- ----- ----- ----- ----- ----- ----- -----------\n"
            + "%-16s %5s %5s %5s %5s %5s %5s %5s %5s %-10s\n" % (
                truncated(server, 16), "0", truncated(str(attrs["total_jobs"]), 5),
                *(truncated(str(pbs[k]), 5) for k in ("Queued", "Running", "Held", "Waiting", "Transit", "Exiting")),
                "Active"))

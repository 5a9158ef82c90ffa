"""The PBS-style job commands: qsub, qstat, qdel, qhold, qrls, qlog.

Each `*_main()` is a console script (see pyproject.toml). They talk to the
current host's HTTP API (cli.hosts, cli.client); the server validates every
field, so the client only splits the command line into the JobRequest fields
and passes the server's 4xx messages through.

Exit codes: 0 success; 1 unknown job, refused (401/403/409), unreachable host
or no host; 2 bad usage or input the server rejected (400/422); 130 on Ctrl-C.
`qsub --wait` exits with the job's own status instead (see its --help).
"""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Any, Callable, Iterator

import click

from cli.errors import ApiError, CliError, Unreachable, UsageError
from cli.runner import err as _err
from cli.runner import one_line as _one_line
from cli.runner import run as _run

CONTEXT = {"help_option_names": ["--help"], "max_content_width": 100}
FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
ACTIVE_STATES = ("WAITING", "HELD", "QUEUED", "RUNNING")
MAX_SCRIPT_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit; the server enforces its own, smaller one
POLL_MAX_SECONDS = 2.0
LOG_POLL_SECONDS = 0.3
OUTAGE_GRACE_SECONDS = 60.0  # --wait and qlog -f ride out a daemon restart this long
TASK_PAGE = 1000

_REF_RE = re.compile(r"([^\[\]\s]+)(?:\[([0-9]*)\])?")
_SIMPLE_SPEC_RE = re.compile(r"\s*([0-9]+)(?:-([0-9]+)(?::([0-9]+))?)?(?:%[0-9]+)?\s*")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# -V leaves out what looks like a secret or belongs to this login session rather than to the job.
_SECRETISH_RE = re.compile(
    r"SECRET|TOKEN|PASSW|CREDENTIAL|PRIVATE|APIKEY|API_KEY|(^|_)KEY($|_)|(^|_)AUTH($|_)"
    r"|^(AWS_|SSH_|GPG_|HYPERBATCH_|BASH_FUNC_)",
    re.IGNORECASE,
)
_SESSION_VARS = frozenset(
    {
        "_",
        "OLDPWD",
        "SHLVL",
        "DISPLAY",
        "XAUTHORITY",
        "DBUS_SESSION_BUS_ADDRESS",
        "XDG_RUNTIME_DIR",
        "XDG_SESSION_ID",
        "WINDOWID",
        "TERM_SESSION_ID",
    }
)


# ---------------------------------------------------------------------------------------------
# helpers shared by the commands


def _client() -> Any:
    from cli.client import current_client

    return current_client()


def _job_path(job_id: str, *rest: str) -> str:
    from cli.client import job_path

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


def _split_items(text: str) -> list[str]:
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


class _Outage:
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


QSUB_HELP = """Submit a job and print its id.

\b
  qsub [OPTIONS] SCRIPT                 submit a job script
  qsub [OPTIONS] < SCRIPT               the script on stdin (PBS style)
  qsub [OPTIONS] -- COMMAND [ARGS]...   run a command, no script

A script's header may carry directives read the way PBS qsub reads them
(`#PBS -N name`, `#PBS -l walltime=01:00:00`, `#PBS -J 1-100`, and the same
as `#HYPER` lines); options given on the command line win over them. The
server parses the directives and checks every value; its message says what
to fix. The current directory is sent along as the job's PBS_O_WORKDIR.
"""

QSUB_EPILOG = """\b
Examples:
  qsub -N sweep -J 1-100%10 -l walltime=00:30:00 run.sh
  qsub -W depend=afterok:01JD4V8ZK2N3Q post.sh
  qsub -v INPUT=/data/a.csv,HOME -- python3 analyse.py
  qsub --wait -- make test && echo passed

\b
Exit status: 0 once submitted; 2 for bad options or a request the server
rejects; 1 when the host cannot be reached. With --wait, the job's own exit
status: 0-255 as the job exited, 128+N if it was killed by signal N (as a
shell reports it), 1 if it failed on the scheduler's side or was cancelled.
"""


@click.command(
    "qsub",
    context_settings=CONTEXT,
    help=QSUB_HELP,
    epilog=QSUB_EPILOG,
    options_metavar="[OPTIONS]",
    no_args_is_help=False,
)
@click.option("-N", "--name", metavar="NAME", help="Job name (default: the script's file name, or the command).")
@click.option("-q", "--queue", metavar="QUEUE", help="Queue to submit to (default: the server's default queue).")
@click.option(
    "-d", "--definition", metavar="DEFINITION", help="Job definition (image and sizing) to run under."
)
@click.option(
    "-J",
    "-t",
    "--array",
    "array",
    metavar="RANGE",
    help="Submit an array job: START-END[:STEP][%LIMIT], e.g. 1-100, 0-10:2, 1-1000%10 (at most 10 "
    "tasks at once). Each task sees HYPER_ARRAY_INDEX and PBS_ARRAY_INDEX.",
)
@click.option(
    "-W",
    "attributes",
    multiple=True,
    metavar="depend=DEPS",
    help="Run after other jobs, as in depend=afterok:ID:ID,afterany:ID (also afternotok). "
    "depend= is the only -W attribute supported. Repeatable.",
)
@click.option(
    "-p", "--priority", type=int, metavar="N", help="Priority (higher runs first within a queue)."
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    metavar="N",
    help="Run again up to N more times after a failure (sends max_attempts N+1).",
)
@click.option(
    "-l",
    "limits",
    multiple=True,
    metavar="KEY=VAL[,KEY=VAL]",
    help="Resources: walltime=HH:MM:SS sets the time limit; any other KEY=VAL (mem=4gb, ncpus=2, "
    "...) is sent as a resource request. Repeatable.",
)
@click.option(
    "-v",
    "variables",
    multiple=True,
    metavar="VAR[=VAL][,...]",
    help="Set environment variables for the job. A bare VAR copies its value from your environment "
    "(an error if it is not set). Quote values that hold commas: -v \"LIST='a,b'\". Repeatable.",
)
@click.option(
    "-V",
    "export_all",
    is_flag=True,
    help="Pass your whole environment to the job, except variables that look like secrets or belong "
    "to this login session (names with SECRET, TOKEN, PASSW, CREDENTIAL, PRIVATE, API_KEY, KEY or "
    "AUTH as a word; AWS_*, SSH_*, GPG_*, HYPERBATCH_*; exported shell functions; DISPLAY, SHLVL, "
    "...). -v values win.",
)
@click.option("-h", "hold", is_flag=True, help="Submit the job held; release it with qrls.")
@click.option(
    "--wait",
    is_flag=True,
    help="After printing the id, wait until the job finishes and exit with its exit status.",
)
@click.argument("script", required=False, metavar="[SCRIPT]")
@click.pass_context
def qsub(
    ctx: click.Context,
    name: str | None,
    queue: str | None,
    definition: str | None,
    array: str | None,
    attributes: tuple[str, ...],
    priority: int | None,
    retries: int | None,
    limits: tuple[str, ...],
    variables: tuple[str, ...],
    export_all: bool,
    hold: bool,
    wait: bool,
    script: str | None,
) -> int:
    command, dashdash = (ctx.obj or {}).get("command", []), (ctx.obj or {}).get("dashdash", False)
    request: dict[str, Any] = {}
    if dashdash:
        if script is not None:
            raise UsageError(f"give either a SCRIPT ({script}) or -- COMMAND, not both")
        if not command:
            raise UsageError("nothing to run after --: qsub [OPTIONS] -- COMMAND [ARGS]...")
        request["command"] = list(command)
    elif script is not None and script != "-":
        request["script"] = _read_script_file(script)
        request["script_name"] = os.path.basename(script.rstrip("/")) or script
    else:
        request["script"] = _read_script_stdin()
        request["script_name"] = "STDIN"

    for key, value in (("name", name), ("queue", queue), ("definition", definition), ("array", array)):
        if value is not None:
            request[key] = value
    depend = _depend(attributes)
    if depend:
        request["depend"] = depend
    if priority is not None:
        request["priority"] = priority
    if retries is not None:
        request["max_attempts"] = retries + 1
    walltime, resources = _limits(limits)
    if walltime is not None:
        request["walltime"] = walltime
    if resources:
        request["resources"] = resources
    env = _environment(variables, export_all)
    if env:
        request["env"] = env
    if hold:
        request["hold"] = True
    workdir = _cwd()
    if workdir:
        request["workdir"] = workdir

    client = _client()
    _, job = client.request("POST", "/jobs", body=request)
    if not isinstance(job, dict) or not job.get("id"):
        raise CliError(f"the server accepted the job but sent no id: {job!r}")
    sys.stdout.write(f"{job['id']}\n")
    sys.stdout.flush()
    if not wait:
        return 0
    return exit_code_for(_wait_final(client, str(job["id"]), job))


def _read_script_file(path: str) -> str:
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"script {path} not found") from None
    except OSError as exc:
        raise UsageError(f"cannot read script {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"script {path} is a directory")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SCRIPT_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read script {path}: {exc.strerror or exc}") from None
    return _script_text(raw, f"script {path}")


def _read_script_stdin() -> str:
    stdin = sys.stdin
    if stdin is None or stdin.closed or stdin.isatty():
        raise UsageError(
            "no job to submit: give a SCRIPT, pipe one on stdin, or run a command with "
            "qsub [OPTIONS] -- COMMAND [ARGS]..."
        )
    raw = stdin.buffer.read(MAX_SCRIPT_BYTES + 1)
    if not raw:
        raise UsageError(
            "no job to submit: stdin is empty; give a SCRIPT, pipe one on stdin, or run a command "
            "with qsub [OPTIONS] -- COMMAND [ARGS]..."
        )
    return _script_text(raw, "the script on stdin")


def _script_text(raw: bytes, where: str) -> str:
    if len(raw) > MAX_SCRIPT_BYTES:
        raise UsageError(f"{where} is larger than {MAX_SCRIPT_BYTES // (1024 * 1024)} MiB: that is not a job script")
    if b"\0" in raw:
        raise UsageError(
            f"{where} is a binary file, not a job script; to run a program use qsub [OPTIONS] -- PROGRAM [ARGS]..."
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{where} is not UTF-8 text; a job script must be a text file") from None
    if not text.strip():
        raise UsageError(f"{where} is empty")
    return text


def _depend(attributes: tuple[str, ...]) -> str | None:
    parts = []
    for attribute in attributes:
        key, sep, value = attribute.partition("=")
        if key.strip().lower() != "depend" or not sep:
            raise UsageError(f"-W {attribute}: only depend=... is supported, as in -W depend=afterok:ID")
        if not value.strip():
            raise UsageError("-W depend= needs a value, as in -W depend=afterok:ID")
        parts.append(value.strip())
    return ",".join(parts) or None


def _limits(limits: tuple[str, ...]) -> tuple[str | None, dict[str, str]]:
    walltime, resources = None, {}
    for text in limits:
        for item in _split_items(text):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise UsageError(f"-l {item}: expected KEY=VALUE, as in -l walltime=01:00:00,mem=4gb")
            if key.lower() == "walltime":
                walltime = value.strip()
            else:
                resources[key] = value.strip()
    return walltime, resources


def _environment(variables: tuple[str, ...], export_all: bool) -> dict[str, str]:
    env: dict[str, str] = {}
    if export_all:
        env.update(
            (k, v)
            for k, v in os.environ.items()
            if k not in _SESSION_VARS and not _SECRETISH_RE.search(k) and _ENV_NAME_RE.fullmatch(k)
        )
    for text in variables:
        for item in _split_items(text):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not key:
                raise UsageError(f"-v {item}: expected VAR or VAR=VALUE")
            if sep:
                env[key] = value
            elif key in os.environ:
                env[key] = os.environ[key]
            else:
                raise UsageError(f"-v {key}: {key} is not set in your environment; give a value with -v {key}=VALUE")
    return env


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return os.environ.get("PWD") or None


def _wait_final(client: Any, job_id: str, job: dict[str, Any]) -> dict[str, Any]:
    delay, outage = 0.2, _Outage()
    path = _job_path(job_id)
    while job.get("state") not in FINAL_STATES:
        time.sleep(delay)
        delay = min(delay * 1.5, POLL_MAX_SECONDS)
        answer = outage.call(lambda: client.request("GET", path))
        if answer is not None and isinstance(answer[1], dict):
            job = answer[1]
    return job


def _split_dashdash(args: list[str]) -> tuple[list[str], list[str], bool]:
    """Split qsub's argv at the first `--` that is not an option's value."""
    value_opts = set()
    for param in qsub.params:
        if isinstance(param, click.Option) and not param.is_flag:
            value_opts.update(param.opts)
            value_opts.update(param.secondary_opts)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return args[:i], args[i + 1 :], True
        if arg in value_opts:
            i += 2
            continue
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
            # a cluster such as -hN NAME or -Nname: a value option inside takes the rest or the next arg
            for pos in range(1, len(arg)):
                if "-" + arg[pos] in value_opts:
                    if pos == len(arg) - 1:
                        i += 1
                    break
        i += 1
    return args, [], False


def qsub_main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    options, command, dashdash = _split_dashdash(args)
    return _run(qsub, "qsub", options, obj={"command": command, "dashdash": dashdash})


# ---------------------------------------------------------------------------------------------
# qstat


QSTAT_HELP = """Show jobs: by default your jobs that have not finished yet.

\b
Columns: Job id (ID[] for an array), Name, User, Time Use (CPU time, or the
time it has run so far), S (state), Queue.
State letters: W waiting on dependencies, H held, Q queued, R running,
F finished (succeeded, failed or cancelled; qstat -f shows which).
With -t, array tasks: the same letters, X for a cancelled task.

Jobs named by ID are always shown, finished or not. ID[] names an array,
ID[3] one of its tasks.
"""


@click.command("qstat", context_settings=CONTEXT, help=QSTAT_HELP, options_metavar="[OPTIONS]")
@click.option("-x", "finished", is_flag=True, help="Include finished jobs (succeeded, failed, cancelled).")
@click.option("-f", "full", is_flag=True, help="Full listing: every attribute of each job, PBS style.")
@click.option("-t", "tasks", is_flag=True, help="Expand arrays: one row per task, ID[INDEX].")
@click.option(
    "-u",
    "user",
    metavar="USER",
    help="Show USER's jobs instead of yours ('*' for every user; admins only).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as a JSON list (the API's Job objects).")
@click.argument("ids", nargs=-1, metavar="[ID]...")
def qstat(finished: bool, full: bool, tasks: bool, user: str | None, as_json: bool, ids: tuple[str, ...]) -> int:
    from cli import output

    client = _client()
    rc = 0
    entries: list[tuple[dict[str, Any], dict[str, Any] | None]] = []  # (job, task or None)
    if ids:
        for text in ids:
            try:
                job_id, index, _ = parse_ref(text)
                _, job = client.request("GET", _job_path(job_id))
                if index is None:
                    entries.append((job, None))
                    continue
                if not job.get("array"):
                    raise _NotAnArray(f"{text}: {job_id} is not an array job")
                task = _find_task(client, job, index)
                if task is None:
                    _err(f"qstat: Unknown Job Id {text}")
                    rc = max(rc, 1)
                    continue
                entries.append((job, task))
            except ApiError as exc:
                rc = max(rc, _per_job_error("qstat", text, exc))
            except (UsageError, _NotAnArray) as exc:
                _err(f"qstat: {exc.message}")
                rc = max(rc, exc.exit_code)
    else:
        query = {"owner": user, "state": None if finished else ",".join(ACTIVE_STATES)}
        jobs = list(_list_jobs(client, query))
        jobs.reverse()  # the API gives newest first; PBS lists oldest first
        entries = [(job, None) for job in jobs]

    now = time.time()
    if as_json:
        items: list[Any] = []
        for job, task in entries:
            if task is not None:
                items.append(output.task_json(job, task))
            elif tasks and job.get("array"):
                items.append({**job, "tasks": list(_iter_tasks(client, str(job["id"])))})
            else:
                items.append(job)
        sys.stdout.write(output.dump_json(items))
    elif full:
        sys.stdout.write(
            "".join(output.full_task(job, task) if task else output.full(job, now) for job, task in entries)
        )
    else:
        rows = []
        for job, task in entries:
            if task is not None:
                rows.append(output.task_row(job, task))
                continue
            rows.append(output.job_row(job, now))
            if tasks and job.get("array"):
                rows.extend(output.task_row(job, t) for t in _iter_tasks(client, str(job["id"])))
        sys.stdout.write(output.table(rows))
    sys.stdout.flush()
    return rc


class _NotAnArray(CliError):
    pass


def _per_job_error(prog: str, text: str, exc: ApiError) -> int:
    """Report one id's failure and carry on with the rest; re-raise what no other id would survive."""
    if exc.status == 404:
        _err(f"{prog}: Unknown Job Id {text}")
        return 1
    if exc.status in (400, 403, 409, 422):
        _err(f"{prog}: {text}: {_one_line(exc.message)}")
        return exc.exit_code
    raise exc


def _list_jobs(client: Any, query: dict[str, Any]) -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    token = None
    while True:
        _, page = client.request("GET", "/jobs", query={**query, "next": token})
        page = page or {}
        yield from page.get("jobs") or []
        token = page.get("next")
        if not token or str(token) in seen:
            return
        seen.add(str(token))


def _iter_tasks(client: Any, job_id: str) -> Iterator[dict[str, Any]]:
    offset: Any = 0
    path = _job_path(job_id, "tasks")
    while True:
        _, page = client.request("GET", path, query={"offset": offset, "limit": TASK_PAGE})
        page = page or {}
        yield from page.get("tasks") or []
        nxt = page.get("next")
        if nxt is None or nxt == offset:
            return
        offset = nxt


def _spec_position(spec: Any, index: int) -> tuple[bool, int | None]:
    """(understood, position of `index` in START-END[:STEP][%LIMIT]) — a guess to fetch one task directly."""
    match = _SIMPLE_SPEC_RE.fullmatch(str(spec or ""))
    if match is None:
        return False, None
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) else start
    step = int(match.group(3)) if match.group(3) else 1
    if step < 1 or index < start or index > end or (index - start) % step:
        return True, None
    return True, (index - start) // step


def _find_task(client: Any, job: dict[str, Any], index: int) -> dict[str, Any] | None:
    job_id = str(job["id"])
    understood, position = _spec_position((job.get("array") or {}).get("spec"), index)
    if understood and position is None:
        return None
    if position is not None:
        _, page = client.request(
            "GET", _job_path(job_id, "tasks"), query={"offset": position, "limit": 1}
        )
        for task in (page or {}).get("tasks") or []:
            if task.get("index") == index:
                return task
    for task in _iter_tasks(client, job_id):
        if task.get("index") == index:
            return task
    return None


def qstat_main(argv: list[str] | None = None) -> int:
    return _run(qstat, "qstat", argv)


# ---------------------------------------------------------------------------------------------
# qdel, qhold, qrls


def _act_on_each(prog: str, ids: tuple[str, ...], method: str, suffix: tuple[str, ...], tasks_ok: bool) -> int:
    client = _client()
    rc = 0
    for text in ids:
        try:
            job_id, index, _ = parse_ref(text)
        except UsageError as exc:
            _err(f"{prog}: {exc.message}")
            rc = max(rc, exc.exit_code)
            continue
        if index is not None and not tasks_ok:
            verb = "held" if prog == "qhold" else "released"
            _err(f"{prog}: {text}: one array task cannot be {verb} on its own; use the whole array {job_id}[]")
            rc = max(rc, 2)
            continue
        try:
            client.request(method, _job_path(job_id, *suffix), query={"index": index})
        except ApiError as exc:
            rc = max(rc, _per_job_error(prog, text, exc))
    return rc


_ID_NOTE = "\n\nID is a job id, ID[] an array, ID[3] one array task."


@click.command(
    "qdel",
    context_settings=CONTEXT,
    options_metavar="",
    help="Cancel jobs. A queued, held or waiting job is cancelled at once; a running one is "
    "stopped by its worker within a heartbeat. ID[] cancels a whole array, ID[3] one task. "
    "Prints nothing on success; an unknown id is reported and the rest are still processed "
    "(exit 1).",
)
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
def qdel(ids: tuple[str, ...]) -> int:
    return _act_on_each("qdel", ids, "DELETE", (), tasks_ok=True)


@click.command(
    "qhold",
    context_settings=CONTEXT,
    options_metavar="",
    help="Hold jobs that have not started: they stay held (state H) until qrls. Arrays are held "
    "whole (ID or ID[]). Prints nothing on success; an unknown id is reported and the rest are "
    "still processed (exit 1).",
)
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
def qhold(ids: tuple[str, ...]) -> int:
    return _act_on_each("qhold", ids, "POST", ("hold",), tasks_ok=False)


@click.command(
    "qrls",
    context_settings=CONTEXT,
    options_metavar="",
    help="Release held jobs (from qhold or qsub -h): each becomes queued, or waiting if its "
    "dependencies are not met yet. Prints nothing on success; an unknown id is reported and the "
    "rest are still processed (exit 1).",
)
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
def qrls(ids: tuple[str, ...]) -> int:
    return _act_on_each("qrls", ids, "POST", ("release",), tasks_ok=False)


def qdel_main(argv: list[str] | None = None) -> int:
    return _run(qdel, "qdel", argv)


def qhold_main(argv: list[str] | None = None) -> int:
    return _run(qhold, "qhold", argv)


def qrls_main(argv: list[str] | None = None) -> int:
    return _run(qrls, "qrls", argv)


# ---------------------------------------------------------------------------------------------
# qlog


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
    client = _client()
    path = _job_path(job_id, "log")
    stream = "stderr" if stderr else "stdout"
    offset: Any = 0
    outage = _Outage()
    while True:
        query = {"stream": stream, "offset": offset, "index": index}
        fetch = lambda: client.request("GET", path, query=query)  # noqa: E731
        try:
            answer = outage.call(fetch) if follow else fetch()
        except ApiError as exc:
            if exc.status == 404:
                raise CliError(f"Unknown Job Id {job_ref}") from None
            raise
        if answer is None:  # host briefly unreachable while following
            time.sleep(LOG_POLL_SECONDS)
            continue
        body = answer[1] if isinstance(answer[1], dict) else {}
        data = body.get("data") or ""
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
            time.sleep(LOG_POLL_SECONDS)


def _write_raw(data: str) -> None:
    try:
        raw = data.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = data.encode("utf-8", "replace")
    sys.stdout.buffer.write(raw)
    sys.stdout.buffer.flush()


def qlog_main(argv: list[str] | None = None) -> int:
    return _run(qlog, "qlog", argv)

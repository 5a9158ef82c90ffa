"""qsub: submit a job (a script, stdin, or `-- COMMAND ARGS`) and print its id."""

from __future__ import annotations

import os
import re
import sys
import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds, and only checkers need it
if TYPE_CHECKING:
    from typing import Any

from hyperbatch.cli.errors import CliError, UsageError
from hyperbatch.cli.pbs.common import (
    FINAL_STATES,
    MAX_SCRIPT_BYTES,
    POLL_MAX_SECONDS,
    Outage,
    api_client,
    exit_code_for,
    job_path,
    run,
    split_items,
)
from hyperbatch.cli.pbs.getopt import BadOption, getopt

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
  qsub -W depend=afterok:1234.server post.sh
  qsub -v INPUT=/data/a.csv,HOME -- python3 analyse.py
  qsub --wait -- make test && echo passed

\b
Exit status: 0 once submitted; 2 for bad options or a request the server
rejects; 1 when the host cannot be reached. With --wait, the job's own exit
status: 0-255 as the job exited, 128+N if it was killed by signal N (as a
shell reports it), 1 if it failed on the scheduler's side or was cancelled.
"""


OPTIONS_HELP = """\
Options:
  -N, --name NAME              Job name (default: the script's file name, or the command).
  -q, --queue QUEUE            Queue to submit to (default: the server's default queue).
  -d, --definition DEFINITION  Job definition (image and sizing) to run under.
  -J, -t, --array RANGE        Submit an array job: START-END[:STEP][%LIMIT], e.g. 1-100, 0-10:2,
                               1-1000%10 (at most 10 tasks at once). Each task sees
                               HYPER_ARRAY_INDEX and PBS_ARRAY_INDEX.
  -W depend=DEPS               Run after other jobs, as in depend=afterok:ID:ID,afterany:ID (also
                               afternotok). depend= is the only -W attribute supported. Repeatable.
  -p, --priority N             Priority (higher runs first within a queue).
  --retries N                  Run again up to N more times after a failure (sends max_attempts N+1).
  -l KEY=VAL[,KEY=VAL]         Resources: walltime=HH:MM:SS sets the time limit; any other KEY=VAL
                               (mem=4gb, ncpus=2, ...) is sent as a resource request. Repeatable.
  -v VAR[=VAL][,...]           Set environment variables for the job. A bare VAR copies its value
                               from your environment (an error if it is not set). Quote values that
                               hold commas: -v "LIST='a,b'". Repeatable.
  -V                           Pass your whole environment to the job, except variables that look
                               like secrets or belong to this login session (names with SECRET,
                               TOKEN, PASSW, CREDENTIAL, PRIVATE, API_KEY, KEY or AUTH as a word;
                               AWS_*, SSH_*, GPG_*, HYPERBATCH_*; exported shell functions; DISPLAY,
                               SHLVL, ...). -v values win.
  -h                           Submit the job held; release it with qrls.
  --wait                       After printing the id, wait until the job finishes and exit with
                               its exit status.
  --help                       Show this message and exit.
"""
# The command line, getopt-style (hyperbatch.cli.pbs.getopt): no click on the path of a command
# that shell loops call thousands of times (bench/latency.py).
SPEC = "N:q:d:J:t:W:p:l:v:Vh"
LONG_VALUES = ("--name", "--queue", "--definition", "--array", "--priority", "--retries")
LONG_FLAGS = ("--wait", "--help")
ALIASES = {"--name": "-N", "--queue": "-q", "--definition": "-d", "--array": "-J", "-t": "-J", "--priority": "-p"}


def _integer(option: str, value: str, minimum: int | None = None) -> int:
    text = value.strip()
    if not text.lstrip("+-").isdigit():
        raise UsageError(f"invalid value for '{option}': '{value}' is not a valid integer")
    number = int(text)
    if minimum is not None and number < minimum:
        raise UsageError(f"invalid value for '{option}': {number} is not in the range x>={minimum}")
    return number


def qsub(args: list[str]) -> int:
    options, command, dashdash = _split_dashdash(args)
    try:
        opts, operands = getopt(options, SPEC, LONG_FLAGS, long_values=LONG_VALUES)
    except BadOption as exc:
        raise UsageError(f"{exc} (try 'qsub --help')") from None
    single: dict[str, str] = {}
    attributes: list[str] = []
    limits: list[str] = []
    variables: list[str] = []
    export_all = hold = wait = False
    for opt, value in opts:
        opt = ALIASES.get(opt, opt)
        if opt == "--help":
            text = f"Usage: qsub [OPTIONS] [SCRIPT]\n\n{QSUB_HELP}\n{OPTIONS_HELP}\n{QSUB_EPILOG}"
            sys.stdout.write(text.replace("\b\n", ""))
            return 0
        if opt == "-W":
            attributes.append(value or "")
        elif opt == "-l":
            limits.append(value or "")
        elif opt == "-v":
            variables.append(value or "")
        elif opt == "-V":
            export_all = True
        elif opt == "-h":
            hold = True
        elif opt == "--wait":
            wait = True
        else:
            single[opt] = value or ""
    if len(operands) > 1:
        raise UsageError(f"got unexpected extra argument ({operands[1]})")
    priority = _integer("-p", single["-p"]) if "-p" in single else None
    retries = _integer("--retries", single["--retries"], 0) if "--retries" in single else None
    return _submit(
        name=single.get("-N"), queue=single.get("-q"), definition=single.get("-d"), array=single.get("-J"),
        attributes=tuple(attributes), priority=priority, retries=retries, limits=tuple(limits),
        variables=tuple(variables), export_all=export_all, hold=hold, wait=wait,
        script=operands[0] if operands else None, command=command, dashdash=dashdash,
    )


def _submit(
    *,
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
    command: list[str],
    dashdash: bool,
) -> int:
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

    client = api_client()
    _, job = client.request("POST", "/jobs", body=request)
    if not isinstance(job, dict) or not job.get("id"):
        raise CliError(f"the server accepted the job but sent no id: {job!r}")
    sys.stdout.write(f"{job['id']}\n")
    sys.stdout.flush()
    if not wait:
        return 0
    return exit_code_for(_wait_final(client, str(job["id"]), job))


def _read_script_file(path: str) -> str:
    """The script at `path`, which must be a regular file: opening a FIFO for reading would wait for a
    writer (qsub hung), and a device is no script. Opened without blocking, then checked, so a FIFO
    put in its place after a look cannot hang it either."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise UsageError(f"script {path} not found") from None
    except IsADirectoryError:
        raise UsageError(f"script {path} is a directory") from None
    except OSError as exc:
        raise UsageError(f"cannot read script {path}: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise UsageError(f"script {path} is a directory")
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise UsageError(f"script {path} is {kind}, not a file; to submit what it gives, use qsub < {path}")
    with os.fdopen(fd, "rb") as f:
        try:
            os.set_blocking(fd, True)
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
        for item in split_items(text):
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
        for item in split_items(text):
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
    delay, outage = 0.2, Outage()
    path = job_path(job_id)
    while job.get("state") not in FINAL_STATES:
        time.sleep(delay)
        delay = min(delay * 1.5, POLL_MAX_SECONDS)
        answer = outage.call(lambda: client.request("GET", path))
        if answer is not None and isinstance(answer[1], dict):
            job = answer[1]
    return job


def _split_dashdash(args: list[str]) -> tuple[list[str], list[str], bool]:
    """Split qsub's argv at the first `--` that is not an option's value."""
    value_opts = {f"-{ch}" for i, ch in enumerate(SPEC) if SPEC[i + 1:i + 2] == ":"} | set(LONG_VALUES)
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
    return run("qsub", qsub, argv, "")

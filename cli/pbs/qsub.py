"""qsub: submit a job (a script, stdin, or `-- COMMAND ARGS`) and print its id.

Its options are the option table's (hyperbatch.core.options.OPTIONS): the command line is read
getopt-style by that table (hyperbatch.cli.pbs.getopt: no click on the path of a command that
shell loops call thousands of times, bench/latency.py), and qsub reads the script's
`#PBS`/`#HYPER` directives with the same table, as PBS's qsub does, so a value means the same
on the command line and in a script. qsub sends the server what it found (with
`directive_prefix: ""`, so the header is not read twice) plus what only it knows: the PBS_O_*
variables of the submitter, -V's environment, the values of `-v VAR` without one, and the
submit directory.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds, and only checkers need it
if TYPE_CHECKING:
    from typing import Any, Callable

from hyperbatch.cli.errors import CliError, UsageError
from hyperbatch.cli.pbs.common import (
    FINAL_STATES,
    MAX_SCRIPT_BYTES,
    POLL_MAX_SECONDS,
    Outage,
    api_client,
    err,
    exit_code_for,
    job_path,
    option_context,
    run,
)
from hyperbatch.cli.pbs.getopt import BadOption, getopt
from hyperbatch.core import directives, options
from hyperbatch.core.errors import SpecError

QSUB_HELP = """Submit a job and print its id.

\b
  qsub [OPTIONS] SCRIPT                 submit a job script
  qsub [OPTIONS] < SCRIPT               the script on stdin (PBS style)
  qsub [OPTIONS] -- COMMAND [ARGS]...   run a command, no script

A script's header may carry the same options as directives (`#PBS -N name`,
`#PBS -l walltime=01:00:00`, `#PBS -J 1-100`, and the same as `#HYPER`
lines); options on the command line win over them, -l and -v merge. An option
HyperBatch cannot honour is refused, with the reason, wherever it is given.

The job starts in your home directory with a clean environment: HOME, USER,
LOGNAME, SHELL, PATH, LANG and TZ from here, PBS_O_* (PBS_O_WORKDIR is the
current directory), PBS_JOBID, PBS_JOBNAME, PBS_QUEUE, PBS_NODEFILE, TMPDIR,
NCPUS, ..., and -v/-V variables. Its output goes to NAME.oSEQ and NAME.eSEQ in
the current directory when it ends (qlog shows it live).
"""

QSUB_EPILOG = """\b
Examples:
  qsub -N sweep -J 1-100%10 -l walltime=00:30:00 run.sh
  qsub -W depend=afterok:123 -j oe -o post.log post.sh
  qsub -a 2330 -l select=1:ncpus=4:mem=8gb nightly.sh
  qsub -v INPUT=/data/a.csv,HOME -- python3 analyse.py
  qsub -W block=true -- make test && echo passed
  qsub --stage-in data/in.csv --stage-out 'results/*.csv' analyse.sh

\b
Exit status: 0 once submitted; 2 for bad or refused options or a request the
server rejects; 1 when the host cannot be reached. With -W block=true, the
job's Exit_status modulo 256 as PBS gives it (3 if it was deleted before it
ran); with --wait, as a shell reports it: 0-255 as the job exited, 128+N if
killed by signal N, 1 for a failure on the scheduler's side or a cancel.
"""



def _table() -> tuple[str, tuple[str, ...], tuple[str, ...], dict[str, str]]:
    """getopt's view of the option table: the short spec ("N:q:...h"), long options with a value,
    long flags, and each spelling's option (`--name` and `-N` are -N)."""
    spec, long_values, long_flags, canonical = "", [], ["--help"], {}
    for option in options.OPTIONS:
        for flag in option.flags:
            canonical[flag] = option.flag
            if flag.startswith("--"):
                (long_flags if option.metavar is None else long_values).append(flag)
            else:
                spec += flag[1] + ("" if option.metavar is None else ":")
    return spec, tuple(long_values), tuple(long_flags), canonical


def _help() -> str:
    rows = []
    for option in options.OPTIONS:
        flags = ", ".join(option.flags) + (f" {option.metavar}" if option.metavar else "")
        rows.append(f"  {flags:<24} {f'Refused: {option.refused}.' if option.refused else option.help}")
    rows.append(f"  {'--help':<24} Show this message and exit.")
    return (f"Usage: qsub [OPTIONS] [SCRIPT]\n\n{QSUB_HELP}\nOptions:\n" + "\n".join(rows) + "\n\n"
            + QSUB_EPILOG).replace("\b\n", "")


def qsub(args: list[str]) -> int:
    options_part, command, dashdash = _split_dashdash(args)
    spec, long_values, long_flags, canonical = _table()
    try:
        opts, operands = getopt(options_part, spec, long_flags, long_values=long_values)
    except BadOption as exc:
        raise UsageError(f"{exc} (try 'qsub --help')") from None
    if any(flag == "--help" for flag, _ in opts):
        sys.stdout.write(_help())
        return 0
    if len(operands) > 1:
        raise UsageError(f"got unexpected extra argument ({operands[1]})")
    pairs = [(canonical[flag], value) for flag, value in opts]
    return _submit(pairs, operands[0] if operands else None, command, dashdash)


def _submit(pairs: list[tuple[str, str | None]], script_arg: str | None, command: list[str], dashdash: bool) -> int:
    parse_ctx = option_context()
    cwd = parse_ctx.cwd
    line = _fields(lambda: options.parse_occurrences(pairs, parse_ctx))

    request: dict[str, Any] = {}
    if dashdash:
        if script_arg is not None:
            raise UsageError(f"give either a SCRIPT ({script_arg}) or -- COMMAND, not both")
        if not command:
            raise UsageError("nothing to run after --: qsub [OPTIONS] -- COMMAND [ARGS]...")
        request["command"] = list(command)
        header: dict[str, Any] = {}
    else:
        if script_arg is not None and script_arg != "-":
            request["script"] = read_script_file(script_arg)
            request["script_name"] = os.path.basename(script_arg.rstrip("/")) or script_arg
        else:
            request["script"] = _read_script_stdin()
            request["script_name"] = "STDIN"
        prefix = line.get("prefix", os.environ.get("PBS_DPREFIX"))
        header = _fields(lambda: directives.parse_directives(request["script"], prefix, parse_ctx))

    fields = options.combine(header, line)
    client_side = {key: fields.pop(key) for key in options.CLIENT_KEYS if key in fields}
    environment = options.submitter_environment(os.environ, workdir=cwd, host=parse_ctx.host,
                                                system=os.uname().sysname, user=_user())
    if client_side.get("export_all"):
        environment.update(options.exported_environment(os.environ))
    fields["env"] = {**environment, **(fields.get("env") or {})}
    fields = _fields(lambda: options.finish(fields, workdir=cwd))
    for key in ("output_path", "error_path"):
        if fields.get(key) and not fields[key].endswith("/") and os.path.isdir(fields[key]):
            fields[key] += "/"  # an existing directory: the file is named after the job inside it, as PBS does
    request.update(fields)
    request["directive_prefix"] = ""  # read here already
    if cwd:
        request["workdir"] = cwd

    client = api_client()
    on_aws = getattr(client, "kind", "local") == "aws"
    if on_aws and request.get("stagein"):  # a worker on AWS reads this machine's files only once uploaded
        from hyperbatch.cli.files import upload_stage_in

        request["stagein"] = upload_stage_in(client, request["stagein"], request.get("array"))
    _, job = client.request("POST", "/jobs", body=request)
    if not isinstance(job, dict) or not job.get("id"):
        raise CliError(f"the server accepted the job but sent no id: {job!r}")
    if not client_side.get("quiet"):
        sys.stdout.write(f"{job['id']}\n")
        sys.stdout.flush()
    if client_side.get("block"):
        return _block_exit(_fetched(client, _wait_final(client, str(job["id"]), job), on_aws))
    if client_side.get("wait"):
        return exit_code_for(_fetched(client, _wait_watched(client, job), on_aws))
    return 0


def _fetched(client: Any, job: dict[str, Any], on_aws: bool) -> dict[str, Any]:
    """On AWS, a job waited for leaves its files here as a local one would: its output files into the
    submit directory, its stage-out files where their pairs named (hyperbatch.cli.files)."""
    if on_aws:
        from hyperbatch.cli.files import fetch

        fetch(client, job, None)
    return job


def _fields(parse) -> dict[str, Any]:
    try:
        return parse()
    except SpecError as exc:
        raise UsageError(str(exc)) from None


def _block_exit(job: dict[str, Any]) -> int:
    """`-W block=true`: PBS's qsub exits with the job's Exit_status modulo 256 (an array: 0, 1 if a
    task exited non-zero, 2 if one failed on the scheduler's side); a job deleted before it ran: 3."""
    status = job.get("exit_status")
    if job.get("state") == "CANCELLED" and status is None:
        err(f"qsub: {job['id']} Job to be deleted at request of {job.get('owner') or 'its owner'}")
        return 3
    if job.get("array"):
        failed = list(((job.get("array") or {}).get("failed_tasks") or {}).values())
        return 2 if any(isinstance(s, int) and s < 0 for s in failed) else 1 if failed else 0
    if isinstance(status, int) and not isinstance(status, bool):
        return status & 0xFF
    return 0 if job.get("state") == "SUCCEEDED" else 1


def read_script_file(path: str, stdin_hint: bool = True) -> str:
    """The script at `path`, which must be a regular file: opening a FIFO for reading would wait for a
    writer (qsub hung), and a device is no script (/dev/zero never ends). Opened without blocking,
    then checked, so a FIFO put in its place after a look cannot hang it either. `stdin_hint`: say that
    qsub reads what a device gives from stdin (not for a workflow's step)."""
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
        hint = f"; to submit what it gives, use qsub < {path}" if stdin_hint else ""
        raise UsageError(f"script {path} is {kind}, not a file{hint}")
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
    if "\r\n" in text:
        raise UsageError(f"{where} contains cr, lf (DOS line ends): convert it with dos2unix")
    return text


def _user() -> str | None:
    if os.environ.get("LOGNAME") or os.environ.get("USER"):
        return None  # not needed
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _wait_final(client: Any, job_id: str, job: dict[str, Any],
                seen: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Poll until the job is final; `seen` is shown each answer."""
    delay, outage = 0.2, Outage()
    path = job_path(job_id)
    while job.get("state") not in FINAL_STATES:
        time.sleep(delay)
        delay = min(delay * 1.5, POLL_MAX_SECONDS)
        answer = outage.call(lambda: client.request("GET", path))
        if answer is not None and isinstance(answer[1], dict):
            job = answer[1]
            if seen is not None:
                seen(job)
    return job


def _wait_watched(client: Any, job: dict[str, Any]) -> dict[str, Any]:
    """--wait: an array's progress bar while it runs when stdout is a terminal (hyperbatch.cli.top);
    anywhere else nothing more than the id already printed, as scripts parse it."""
    if job.get("array") is None or not sys.stdout.isatty():
        return _wait_final(client, str(job["id"]), job)
    from hyperbatch.cli.top import ArrayBar

    bar = ArrayBar(job)
    try:
        return _wait_final(client, str(job["id"]), job, bar.show)
    finally:
        bar.close()


def _split_dashdash(args: list[str]) -> tuple[list[str], list[str], bool]:
    """Split qsub's argv at the first `--` that is not an option's value."""
    value_opts = {flag for option in options.OPTIONS if option.metavar is not None for flag in option.flags}
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

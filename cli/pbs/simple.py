"""qrerun, qsig and qmove: one request per job operand, as PBS Pro's commands send them.

Success prints nothing. Each failure prints PBS's line for it (`qsig:
Request invalid for state of job 123.server`) and the rest are still
processed; the exit code is the last failure's PBS error number (low byte).
"""

from __future__ import annotations

from hyperbatch.cli.pbs.common import ShowUsage, each_job, job_path, parse, run

QRERUN_USAGE = "usage: qrerun [-W force] job_identifier...\n       qrerun --version\n"
QSIG_USAGE = "usage: qsig [-s signal] job_identifier...\n       qsig --version\n"
QMOVE_USAGE = "usage: qmove destination job_identifier...\n       qmove --version\n"


def qrerun(args: list[str]) -> int:
    """A running job is killed by its worker at its next look at the store and then goes back to the
    queue at a new attempt; `ID[]` re-runs an array's failed and cancelled tasks, `ID[7]` one of them.
    `-W force` re-runs a job submitted with -r n too (as PBS)."""
    opts, ids = parse(args, "W:")
    query = {}
    for _, value in opts:
        if (value or "").lower() != "force":
            raise ShowUsage("qrerun: illegal -W value")
        query["force"] = "true"
    if not ids:
        raise ShowUsage()
    return each_job("qrerun", ids, lambda client, text: client.request("POST", job_path(text, "rerun"), query=query))


def qsig(args: list[str]) -> int:
    """The signal (default SIGTERM) goes to the running job's process group: at once in local mode,
    at the worker's next heartbeat on AWS; `ID[7]` signals one running task, `ID[]` every one."""
    opts, ids = parse(args, "s:")
    signame = "SIGTERM"
    for _, value in opts:
        signame = value or ""
    if not ids:
        raise ShowUsage()
    body = {"signal": signame}
    return each_job("qsig", ids, lambda client, text: client.request("POST", job_path(text, "signal"), body=body))


def qmove(args: list[str]) -> int:
    """A job that has not started moves to another queue (`queue` or `queue@server`)."""
    opts, operands = parse(args, "")
    if len(operands) < 2:
        raise ShowUsage()
    destination, ids = operands[0], operands[1:]
    queue = destination.split("@", 1)[0]
    if not queue:
        raise ShowUsage("qmove: give a queue as the destination, as in `qmove workq 123`")
    body = {"queue": queue}
    return each_job("qmove", ids, lambda client, text: client.request("POST", job_path(text, "move"), body=body))


def qrerun_main(argv: list[str] | None = None) -> int:
    return run("qrerun", qrerun, argv, QRERUN_USAGE)


def qsig_main(argv: list[str] | None = None) -> int:
    return run("qsig", qsig, argv, QSIG_USAGE)


def qmove_main(argv: list[str] | None = None) -> int:
    return run("qmove", qmove, argv, QMOVE_USAGE)

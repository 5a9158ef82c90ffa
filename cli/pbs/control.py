"""qdel, qhold, qrls: act on jobs, arrays and array tasks by id, as PBS Pro's commands do.

Each operand is a job id with or without `.SERVER`, `ID[]` for a whole array
or (qdel) `ID[7]` for one task. Success prints nothing; each failure prints
PBS's line (`qdel: Unknown Job Id 123`, `qhold: Request invalid for state of
job 123.server`) and the rest are still processed; the exit code is the last
failure's PBS error number (153 unknown, 35 finished, 168 bad state), as PBS.
"""

from __future__ import annotations

from hyperbatch.cli.pbs.common import ShowUsage, each_job, job_path, parse, run

QDEL_USAGE = "usage:\n\tqdel [-W force|suppress_email=X] [-x] job_identifier...\n\tqdel --version\n"
QHOLD_USAGE = "usage: qhold [-h hold_list] job_identifier...\n       qhold --version\n"
QRLS_USAGE = "usage: qrls [-h hold_list] job_identifier...\n       qrls --version\n"


def qdel(args: list[str]) -> int:
    opts, ids = parse(args, "W:x")
    for opt, value in opts:
        if opt == "-x":
            raise ShowUsage("qdel: -x (delete the job's history too) is not supported: HyperBatch keeps a "
                            "finished job for the configured job_retention_days")
        key = (value or "").split("=", 1)[0].lower()
        if key not in ("force", "suppress_email"):
            raise ShowUsage("qdel: illegal -W value")
        # force: a running job is stopped at its worker's next heartbeat either way; no mail is sent (yet)
    if not ids:
        raise ShowUsage()
    return each_job("qdel", ids, lambda client, text: client.request("DELETE", job_path(text)), raw_id=True)


def _holds(opts: list, prog: str) -> None:
    for _, value in opts:
        if not value or any(ch not in "uosnp" for ch in value) or ("n" in value and len(value) > 1):
            raise ShowUsage(f"{prog}: illegal -h value")


def qhold(args: list[str]) -> int:
    """One kind of hold: -h u (the default), o and s all hold the job until qrls."""
    opts, ids = parse(args, "h:")
    _holds(opts, "qhold")
    if not ids:
        raise ShowUsage()
    return each_job("qhold", ids, lambda client, text: client.request("POST", job_path(text, "hold")))


def qrls(args: list[str]) -> int:
    opts, ids = parse(args, "h:")
    _holds(opts, "qrls")
    if not ids:
        raise ShowUsage()
    return each_job("qrls", ids, lambda client, text: client.request("POST", job_path(text, "release")))


def qdel_main(argv: list[str] | None = None) -> int:
    return run("qdel", qdel, argv, QDEL_USAGE)


def qhold_main(argv: list[str] | None = None) -> int:
    return run("qhold", qhold, argv, QHOLD_USAGE)


def qrls_main(argv: list[str] | None = None) -> int:
    return run("qrls", qrls, argv, QRLS_USAGE)

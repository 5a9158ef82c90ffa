"""qdel, qhold, qrls: act on jobs, arrays and array tasks by id."""

from __future__ import annotations

import click
from hyperbatch.cli.errors import ApiError, UsageError
from hyperbatch.cli.pbs.common import (
    CONTEXT,
    api_client,
    job_path,
    parse_ref,
    per_job_error,
)
from hyperbatch.cli.runner import err as _err
from hyperbatch.cli.runner import run as _run


def _act_on_each(prog: str, ids: tuple[str, ...], method: str, suffix: tuple[str, ...], tasks_ok: bool) -> int:
    client = api_client()
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
            client.request(method, job_path(job_id, *suffix), query={"index": index})
        except ApiError as exc:
            rc = max(rc, per_job_error(prog, text, exc))
    return rc




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

"""`hyper workflow`: submit a DAG of jobs from one YAML file, follow it, draw it.

    hyper workflow submit FILE.yaml [-v KEY=VAL ...]      every job created at once, or none
    hyper workflow status NAME [--json]                   each step's job and state
    hyper workflow list [--json]                          your workflows, newest first
    hyper workflow show FILE.yaml|NAME --svg OUT.svg      the DAG (a file: the plan; a name: live states)
    hyper workflow cancel NAME                            qdel of every step not finished, dependents first

The format is README's "Workflows" (schema: docs/workflow.schema.json); the file is
read by hyperbatch.cli.workflow_file, the rules are hyperbatch.core.workflows'.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from hyperbatch.cli.errors import ApiError, CliError, UsageError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
VARIABLE = click.option("-v", "variables", multiple=True, metavar="KEY=VAL",
                        help="Substitute ${KEY} in the file's values (repeat for more; $${KEY} is a literal ${KEY}).")


@click.group(context_settings=CONTEXT)
def workflow() -> None:
    """Workflows: a DAG of jobs in one YAML file, submitted in one request (see README, Workflows)."""


def _load(file: str, variables: tuple[str, ...]) -> Any:
    from hyperbatch.cli.workflow_file import load
    from hyperbatch.core.errors import SpecError
    from hyperbatch.core.workflows import parse_variables

    try:
        values = parse_variables(list(variables))
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    return load(Path(file), values)


@workflow.command("submit", context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False))
@VARIABLE
def submit(file: str, variables: tuple[str, ...]) -> None:
    """Submit FILE's jobs: all are created, with their dependencies, or none is.

    The steps share the submit directory (PBS_O_WORKDIR: the current directory) and this
    environment's PBS_O_* variables, as qsub's jobs do.
    """
    from hyperbatch.cli.client import current_client
    from hyperbatch.cli.pbs.common import option_context
    from hyperbatch.core import options

    found = _load(file, variables)
    request = found.request
    workdir = option_context().cwd
    if workdir and "workdir" not in request:
        request["workdir"] = workdir
    submitter = options.submitter_environment(os.environ, workdir=request.get("workdir"), host=os.uname().nodename,
                                              system=os.uname().sysname)
    defaults = request.get("defaults")
    if defaults is None or isinstance(defaults, dict):
        defaults = dict(defaults or {})
        own_env = defaults.get("env")
        defaults["env"] = {**submitter, **own_env} if isinstance(own_env, dict) else own_env or submitter
        request["defaults"] = defaults
    client = current_client()
    try:
        if getattr(client, "kind", "local") == "aws":  # a worker on AWS reads this machine's files only once uploaded
            _upload_stage_in(client, found, submitter)
        _, shown = client.request("POST", "/workflows", body=request)
    except ApiError as exc:
        raise CliError(found.locate(exc.message) if exc.status == 400 else exc.message,
                       exit_code=exc.exit_code) from None
    for row in shown["steps"]:
        click.echo(f"{row['step']}\t{row['job']}")


def _upload_stage_in(client: Any, found: Any, submitter: dict[str, str]) -> None:
    """On AWS, as qsub does: each step's (and the defaults') stage-in files on this machine are uploaded
    and named by their s3:// URIs (hyperbatch.cli.files). Relative paths are the submit directory's."""
    from hyperbatch.cli.files import upload_stage_in
    from hyperbatch.core import staging
    from hyperbatch.core.errors import SpecError

    jobs = found.request.get("jobs")
    places = [("defaults", found.request.get("defaults"))]
    places += [(f"jobs.{step}", spec) for step, spec in (jobs.items() if isinstance(jobs, dict) else ())]
    for path, spec in places:
        if not isinstance(spec, dict) or not spec.get("stagein"):
            continue
        try:
            pairs = staging.resolve(staging.check_field(spec["stagein"], "stagein"), found.request.get("workdir"),
                                    "stagein", submitter.get("PBS_O_HOST"))
        except SpecError as exc:
            raise UsageError(found.locate(f"{path}.stagein: {exc}")) from None
        spec["stagein"] = upload_stage_in(client, pairs, spec.get("array"))


def _status(name: str) -> dict:
    from hyperbatch.cli.client import current_client
    from hyperbatch.core.errors import SpecError
    from hyperbatch.core.workflows import check_name

    try:
        check_name(name)
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    try:
        _, shown = current_client().request("GET", "/workflows/" + quote(name, safe=""))
    except ApiError as exc:
        raise CliError(exc.message, exit_code=2 if exc.status == 400 else 1) from None
    return shown


def _echo_columns(rows: list[tuple[str, ...]]) -> None:
    """Rows in columns two spaces apart, each as wide as its widest cell; the last column is not padded."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[-1])


@workflow.command("status", context_settings=CONTEXT)
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the workflow as the API answers it.")
def status(name: str, as_json: bool) -> None:
    """Show each step of your newest workflow NAME: its job, state, exit status and dependencies."""
    shown = _status(name)
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(shown["created_at"]))
    click.echo(f"workflow {shown['name']} of {shown['owner']}, submitted {when}")
    rows = [("STEP", "JOB", "STATE", "EXIT", "TASKS", "DEPENDS ON")]
    for row in shown["steps"]:
        array = row.get("array")
        tasks = (f"{array['succeeded'] + array['failed'] + array['cancelled']}/{array['total']} done"
                 if array else "-")
        exit_status = "-" if row["exit_status"] is None else str(row["exit_status"])
        depends = ", ".join(f"{p} ({k})" for p, k in row["depends_on"].items()) or "-"
        rows.append((row["step"], row["job"], row["state"], exit_status, tasks, depends))
    _echo_columns(rows)


@workflow.command("list", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the list as the API answers it.")
def list_workflows(as_json: bool) -> None:
    """List your workflows, newest first: the newest of each name, when it was submitted, its steps."""
    from hyperbatch.cli.client import current_client

    try:
        _, shown = current_client().request("GET", "/workflows")
    except ApiError as exc:
        raise CliError(exc.message, exit_code=exc.exit_code) from None
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    rows = [("NAME", "SUBMITTED", "STEPS")] + [
        (w["name"], time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(w["created_at"])), str(w["steps"]))
        for w in shown["workflows"]]
    _echo_columns(rows)


@workflow.command("cancel", context_settings=CONTEXT)
@click.argument("name")
def cancel(name: str) -> None:
    """Cancel every step of your newest workflow NAME that has not finished (as qdel each).

    Dependents go first: a step is cancelled only once every step that depends on it is, so that
    no `afterany` or `afternotok` step is released by the cancel of what it waits for and runs.
    """
    from hyperbatch.cli.client import current_client
    from hyperbatch.cli.pbs.common import FINAL_STATES, job_path

    shown = _status(name)
    open_steps = {row["step"]: row for row in shown["steps"] if row["state"] not in FINAL_STATES}
    if not open_steps:
        raise CliError(f"workflow {shown['name']} has finished: no step to cancel")
    client = current_client()
    failed = 0
    for step in dependents_first(shown["steps"]):
        row = open_steps.get(step)
        if row is None:
            continue
        try:
            client.request("DELETE", job_path(row["job"]))
        except ApiError as exc:
            if exc.status == 409 and "finished" in exc.message:
                continue  # it finished meanwhile: nothing left to cancel
            click.echo(f"hyper: {step} ({row['job']}): {exc.message}", err=True)
            failed += 1
            continue
        click.echo(f"{step}\t{row['job']}\tcancelled")
    if failed:
        raise CliError(f"{failed} step(s) of workflow {shown['name']} could not be cancelled")


def dependents_first(rows: list[dict]) -> list[str]:
    """The steps ordered so that each comes after every step that depends on it (a DAG: the API checked)."""
    waiting = {row["step"]: 0 for row in rows}  # per step: its dependents not yet ordered
    for row in rows:
        for parent in row["depends_on"]:
            waiting[parent] = waiting.get(parent, 0) + 1
    ready = [step for step, n in waiting.items() if n == 0]
    parents = {row["step"]: list(row["depends_on"]) for row in rows}
    order: list[str] = []
    while ready:
        step = ready.pop()
        order.append(step)
        for parent in parents.get(step, ()):
            waiting[parent] -= 1
            if waiting[parent] == 0:
                ready.append(parent)
    return order


@workflow.command("show", context_settings=CONTEXT)
@click.argument("source")
@click.option("--svg", "svg", type=click.Path(dir_okay=False), required=True, help="Write the picture here.")
@VARIABLE
def show(source: str, svg: str, variables: tuple[str, ...]) -> None:
    """Draw SOURCE's DAG as SVG: a FILE.yaml draws the plan (no states yet), a NAME the workflow
    submitted under that name, each step coloured by its state now."""
    from hyperbatch.core.workflow_svg import draw

    if os.path.isfile(source):
        from hyperbatch.cli.workflow_file import plan

        found = _load(source, variables)
        steps, edges = plan(found)
        name = found.request.get("name")
        picture = draw(steps, edges, title=f"{name} (plan)" if isinstance(name, str) else "plan")
    else:
        if source.endswith((".yaml", ".yml")):
            raise UsageError(f"{source}: no such file")
        shown = _status(source)
        steps = [row["step"] for row in shown["steps"]]
        edges = [(parent, row["step"], kind) for row in shown["steps"] for parent, kind in row["depends_on"].items()]
        picture = draw(steps, edges, states={row["step"]: row["state"] for row in shown["steps"]},
                       labels={row["step"]: row["job"] for row in shown["steps"]}, title=shown["name"])
    try:
        Path(svg).write_text(picture, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {svg}: {exc.strerror or exc}") from None
    click.echo(f"{svg}: {len(steps)} steps")

"""Workflows: a DAG of jobs submitted in one request, all created or none (hyperbatch.core.workflows).

The steps' dependencies are resolved here, on the server: the job ids do not exist before the
request. Every step is first built alone (its options, queue, resources, any `depend` on jobs that
exist already and, on AWS, its staging places), so a bad value is refused before an id is reserved;
then one run of consecutive ids is taken, parents first, each step's `depends_on` becomes its
`depend` on its parents' ids, and the store writes every job, every edge and the workflow's record
at once (`JobStore.create`). From there the jobs are ordinary jobs: release, cancel and arrays
follow the dependency rules they always follow (a failed step cancels its afterok dependents and
runs its afterany ones).

A name submitted again by the same owner makes a new workflow; `status NAME` shows the newest.
"""

from __future__ import annotations

import time

from hyperbatch.core import ids as job_ids, options, workflows
from hyperbatch.core.dependencies import Dependency, format_depend, parse_depend
from hyperbatch.core.errors import NotFound, SpecError
from hyperbatch.core.views import view
from hyperbatch.services.scheduler import Caller, Scheduler


def submit(scheduler: Scheduler, body: dict, caller: Caller) -> dict:
    """`body` as the API's WorkflowRequest validated it: name, defaults, jobs (step -> request with
    `depends_on`), workdir. Returns the workflow as `status` shows it."""
    jobs: dict[str, dict] = body["jobs"]
    if len(jobs) > workflows.MAX_STEPS:
        raise SpecError(f"jobs: {len(jobs)} steps; a workflow holds at most {workflows.MAX_STEPS}")
    steps = workflows.order(jobs)
    requests = {step: _request(body, step) for step in steps}
    for step in steps:  # each alone first: nothing reserved, nothing written, for a bad value
        doc, _ = _built(scheduler, requests[step], step, caller, {})
        if scheduler.files is not None:  # AWS: its S3 stage-in and stage-out places are its owner's to use
            try:
                scheduler.check_staging([doc], caller)
            except SpecError as exc:
                raise SpecError(f"jobs.{step}: {exc}", pbs_errno=exc.pbs_errno) from None
    ids = dict(zip(steps, scheduler.sequence.take(len(steps))))  # parents first: lower ids
    docs: dict[str, dict] = {}
    edges: list[tuple[str, str]] = []
    for step in steps:
        request = dict(requests[step])
        inner = [Dependency(kind, ids[parent]) for parent, kind in workflows.parents(jobs[step].get("depends_on")).items()]
        depend = ",".join(p for p in (request.get("depend") or "", format_depend(inner)) if p)
        if depend:
            request["depend"] = depend
        doc, parents = _built(scheduler, request, step, caller, {ids[s]: d for s, d in docs.items()})
        doc["id"] = ids[step]
        docs[step] = doc
        edges += [(parent, doc["id"]) for parent in parents]
    ordered = [docs[step] for step in steps]
    record = {"name": body["name"], "owner": caller.name, "created_at": time.time(),
              "steps": {step: ids[step] for step in jobs}}
    scheduler.store_new(ordered, edges, record)
    return _shown(scheduler, record, {doc["id"]: doc for doc in ordered})


def status(scheduler: Scheduler, name: str, caller: Caller) -> dict:
    """The caller's newest workflow of that name, each step with its job's state now."""
    workflows.check_name(name)
    try:
        record = scheduler.store.workflow(caller.name, name)
    except NotFound:
        missing = NotFound(f"no workflow named {name}: submit one with hyper workflow submit FILE.yaml")
        missing.pbs_errno = None  # type: ignore[assignment]  # not PBS's Unknown Job Id
        raise missing from None
    return _shown(scheduler, record, scheduler.store.get_many(record["steps"].values()))


def listing(scheduler: Scheduler, caller: Caller) -> dict:
    """The caller's workflows, newest first: each one's name, when it was submitted and how many steps it has
    (their states are `status`'s: a listing reads no job)."""
    return {"workflows": [{"name": r["name"], "created_at": r["created_at"], "steps": len(r["steps"])}
                          for r in scheduler.store.workflows(caller.name)]}


def _request(body: dict, step: str) -> dict:
    """The step's job request: the workflow's defaults under the step's own keys (resources and env
    merge per key, as qsub's levels do), in the submit directory."""
    own = {k: v for k, v in body["jobs"][step].items() if k != "depends_on" and v is not None}
    request = options.combine(body.get("defaults") or {}, own)
    if body.get("workdir"):
        request["workdir"] = body["workdir"]
    return request


def _built(scheduler: Scheduler, request: dict, step: str, caller: Caller, known: dict[str, dict]):
    try:
        return scheduler.build(request, caller, known, default_name=step)
    except SpecError as exc:
        raise SpecError(f"jobs.{step}: {exc}", pbs_errno=exc.pbs_errno) from None


def _shown(scheduler: Scheduler, record: dict, docs: dict[str, dict]) -> dict:
    """The record as the API answers: each step's job (PBS id), state, exit status and its
    dependencies on other steps (step -> kind), read from the job's own `depend`."""
    step_of = {job_id: step for step, job_id in record["steps"].items()}
    rows = []
    for step, job_id in record["steps"].items():
        doc = docs.get(job_id)
        if doc is None:  # gone from the store (its retention passed)
            rows.append({"step": step, "job": job_ids.format_id(job_id, scheduler.server), "state": "UNKNOWN",
                         "exit_status": None, "depends_on": {}, "array": None})
            continue
        shown = view(doc)
        depends = {step_of[d.job_id]: d.kind for d in parse_depend(doc["depend"] or "") if d.job_id in step_of}
        rows.append({"step": step, "job": shown["id"], "state": doc["state"], "exit_status": doc.get("exit_status"),
                     "depends_on": depends, "array": shown["array"]})
    return {"name": record["name"], "owner": record["owner"], "created_at": record["created_at"], "steps": rows}

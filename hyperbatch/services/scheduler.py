"""What users ask of the scheduler: submit, look, cancel, hold, release, read logs.

The API application calls these; they talk only to ports, so the same code
runs in the local daemon and in Lambda.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hyperbatch.core import arrays, deferral, dependencies, directives, ids, options, outbox
from hyperbatch.config import Configuration
from hyperbatch.core.errors import Conflict, Forbidden, NotFound, SpecError, StaleTransition
from hyperbatch.core.model import Change, Expect, is_array, new_job
from hyperbatch.core.ports import JobStore, LogStore, WorkQueue
from hyperbatch.core.states import FINAL, JobState
from hyperbatch.core.tasks import task_state, update_array

MAX_SCRIPT_BYTES = 256 * 1024
# Option fields stored on the job as they are (the others become its name, queue, array, ...).
PBS_ATTRIBUTES = (
    "account", "project", "checkpoint", "output_path", "error_path", "join", "keep", "remove_files", "shell",
    "rerunnable", "execution_time", "mail_points", "mail_users", "umask", "sandbox",
)


@dataclass(frozen=True)
class Caller:
    name: str
    admin: bool = False


class Scheduler:
    def __init__(self, config: Configuration, store: JobStore, queue: WorkQueue, logs: LogStore):
        self.config, self.store, self.queue, self.logs = config, store, queue, logs

    # ---- submit -------------------------------------------------------------------------
    def submit(self, requests: list[dict], caller: Caller) -> list[dict]:
        """Validate every request, store all jobs, then queue the runnable ones (store first)."""
        built = []
        for number, request in enumerate(requests):
            try:
                built.append(self._build(request, caller))
            except SpecError as exc:
                raise SpecError(f"job #{number + 1}: {exc}" if len(requests) > 1 else str(exc)) from None
        docs = [doc for doc, _ in built]
        if 1 < len(built) <= ids.MAX_BLOCK:
            # One block of ids: the store writes it as one submission (see DynamoJobStore.create).
            for doc, job_id in zip(docs, ids.new_job_ids(len(built))):
                doc["id"] = job_id
        self._create(built)
        self.send_work(docs)
        # A parent may have finished between our look and the edge write: look again.
        for doc in docs:
            if doc["state"] == JobState.WAITING.value:
                doc.update(self.reevaluate(doc["id"]) or {})
        return docs

    def _create(self, built: list[tuple[dict, list[str]]], tries: int = 3) -> None:
        """Store new jobs; ids are unique only with high probability across processes, so a clash gets new ones
        (a whole new block when they were one: another process took its millisecond)."""
        for attempt in range(tries):
            try:
                self.store.create([doc for doc, _ in built], [(p, doc["id"]) for doc, parents in built for p in parents])
                return
            except Conflict:
                if attempt == tries - 1:
                    raise
                if 1 < len(built) <= ids.MAX_BLOCK:
                    fresh = ids.new_job_ids(len(built))
                else:
                    fresh = [ids.new_job_id() for _ in built]
                for (doc, _), job_id in zip(built, fresh):
                    doc["id"] = job_id

    def _build(self, request: dict, caller: Caller) -> tuple[dict, list[str]]:
        script, command = request.get("script"), request.get("command")
        if (script is None) == (not command):
            raise SpecError("give exactly one of 'script' (the job script's text) or 'command' (a list of arguments)")
        now = time.time()
        given = {k: options.check_field(k, v) for k, v in request.items() if k in options.FIELDS and v is not None}
        header: dict = {}
        if script is not None:
            if len(script.encode()) > MAX_SCRIPT_BYTES:
                raise SpecError(f"the script is larger than {MAX_SCRIPT_BYTES // 1024} KiB; stage data in files instead")
            # qsub reads the header itself and sends directive_prefix "" with what it found.
            found = directives.parse_directives(script, request.get("directive_prefix"), options.Context(now=now))
            header = {k: v for k, v in found.items() if k not in options.CLIENT_KEYS}
        # Request fields (the command line) win over script directives.
        fields = options.finish(options.combine(header, given), workdir=request.get("workdir"))

        queue = fields.get("queue") or self.config.queues[0].name
        queue_config = self._configured("queue", queue)
        definition = fields.get("definition") or queue_config.definition
        self._configured("definition", definition)

        deps = dependencies.parse_depend(fields.get("depend") or "")
        parents = self._visible_parents(deps, caller)
        spec = arrays.parse_array(fields["array"]) if fields.get("array") else None
        env = {**(fields.get("env") or {}), "PBS_O_QUEUE": queue}  # the server adds the queue, as PBS's does

        name = fields.get("name") or options.default_name(request.get("script_name") if script is not None else None)
        attributes = {k: fields[k] for k in PBS_ATTRIBUTES if k in fields}
        doc = new_job(
            id=ids.new_job_id(),
            name=name,
            owner=caller.name,
            queue=queue,
            definition=definition,
            script=script,
            script_name=request.get("script_name"),
            command=list(command) if command else None,
            array=str(spec) if spec else None,
            depend=dependencies.format_depend(deps),
            priority=int(fields.get("priority") or 0),
            max_attempts=int(fields.get("max_attempts") or queue_config.max_attempts),
            walltime=fields.get("walltime"),
            env=env,
            resources=dict(fields.get("resources") or {}),
            workdir=request.get("workdir"),
            total=spec.size if spec else 1,
            pending=spec.size if spec else 0,
            **attributes,
        )
        verdict, reason = self._verdict(doc, {p: d["state"] for p, d in parents.items()}, now)
        if fields.get("hold"):
            doc["state"], doc["reason"] = JobState.HELD.value, "held at submission"
        elif verdict == "never":
            doc.update(state=JobState.CANCELLED.value, reason=reason, finished_at=time.time())
            if spec:
                doc.update(pending=0, cancelled=spec.size, cancel_requested=True)
        elif verdict == "wait":
            doc["state"], doc["reason"] = JobState.WAITING.value, reason
        return doc, list(parents)

    @staticmethod
    def _verdict(doc: dict, parent_states: dict[str, str], now: float) -> tuple[str, str]:
        """("met" | "wait" | "never", reason): dependencies first, then the execution time (-a)."""
        deps = dependencies.parse_depend(doc["depend"] or "")
        verdict, reason = dependencies.evaluate(deps, parent_states)
        if verdict == "wait":
            return verdict, f"waiting for {doc['depend']}"
        if verdict == "met" and not deferral.eligible(doc.get("execution_time"), now):
            return "wait", deferral.reason(doc["execution_time"])
        return verdict, reason

    def _visible_parents(self, deps, caller: Caller) -> dict[str, dict]:
        found = self.store.get_many(d.job_id for d in deps)
        for dep in deps:
            parent = found.get(dep.job_id)
            if parent is None or not _may_see(caller, parent):
                raise SpecError(f"dependency {dep}: no job {dep.job_id} (check the id with qstat -x)")
        return found

    def send_work(self, docs: list[dict]) -> None:
        """Send all the work these runnable jobs have: a QUEUED job, or an array's positions never
        handed out and its retries (outbox.to_send). On AWS the queue leaves it to the table's stream."""
        items = [item for doc in docs for item in outbox.to_send(None, doc)]
        if items:
            self.queue.send_many(items)

    def reevaluate(self, job_id: str) -> dict | None:
        """Release or cancel a WAITING job whose dependencies have settled and whose execution time (-a)
        has come; None if nothing changed."""
        doc = self.store.get(job_id)
        if doc["state"] != JobState.WAITING.value:
            return None
        deps = dependencies.parse_depend(doc["depend"])
        parents = self.store.get_many(d.job_id for d in deps)
        verdict, reason = self._verdict(doc, {p: d["state"] for p, d in parents.items()}, time.time())
        if verdict == "wait":
            if reason != doc["reason"]:  # dependencies met, now waiting for the execution time
                try:
                    self.store.update(job_id, Expect.state(JobState.WAITING), Change(set={"reason": reason}))
                except StaleTransition:
                    pass
            return None
        if verdict == "met":
            change = Change(set={"state": JobState.QUEUED, "reason": ""})
        else:
            change = Change(set={"state": JobState.CANCELLED, "reason": reason, "finished_at": time.time()})
            if is_array(doc):
                change.set.update(pending=0, cancelled=doc["total"], cancel_requested=True)
        try:
            new = self.store.update(job_id, Expect.state(JobState.WAITING), change)
        except StaleTransition:
            return None
        if verdict == "met":
            self.send_work([new])
        return new

    # ---- look ---------------------------------------------------------------------------
    def get(self, job_id: str, caller: Caller) -> dict:
        doc = self.store.get(job_id)
        if not _may_see(caller, doc):
            raise Forbidden(f"job {job_id} belongs to {doc['owner']}")
        return doc

    def list(self, caller: Caller, owner=None, queue=None, states=None, limit=100, next=None):
        if owner is None:
            owner = caller.name
        elif owner == "*":
            owner = None
        if owner != caller.name and not caller.admin:
            raise Forbidden("only admins may list other users' jobs")
        if queue is not None:
            self._configured("queue", queue)
        return self.store.query(owner=owner, queue=queue, states=states, limit=limit, next=next)

    def tasks(self, job_id: str, caller: Caller, offset: int, limit: int) -> tuple[list[dict], int | None]:
        doc = self.get(job_id, caller)
        if not is_array(doc):
            raise Conflict(f"job {job_id} is not an array job")
        spec = arrays.parse_array(doc["array"])
        end = min(spec.size, offset + limit)
        rows = [task_state(doc, spec, pos) for pos in range(offset, end)]
        return rows, (end if end < spec.size else None)

    def read_log(self, job_id, caller, stream, offset, index=None, limit=1 << 20):
        doc = self.get(job_id, caller)
        if stream not in ("stdout", "stderr"):
            raise SpecError("stream must be stdout or stderr")
        if is_array(doc):
            spec = arrays.parse_array(doc["array"])
            if index is None or spec.position_of(index) is None:
                raise SpecError(f"job {job_id} is an array: name a task, as in {job_id}[{spec.start}]")
            final = task_state(doc, spec, spec.position_of(index))["state"] in {s.value for s in FINAL}
        else:
            if index is not None:
                raise SpecError(f"job {job_id} is not an array job; drop the [{index}]")
            final = doc["state"] in {s.value for s in FINAL}
        data, new_offset = self.logs.read(job_id, index, stream, offset, limit)
        return {"data": data, "offset": new_offset, "final": final and len(data.encode()) < limit}

    def queues(self, workers: dict[tuple[str, str], int]) -> list[dict]:
        out = []
        for q in self.config.queues:
            per_region: dict[str, int] = {}
            for (region, queue), n in workers.items():
                if queue == q.name:
                    per_region[region] = per_region.get(region, 0) + n
            out.append(
                {
                    "name": q.name,
                    "counts": self.store.counts(q.name),
                    "backlog": self.queue.backlog(q.name),
                    "workers": per_region,
                }
            )
        return out

    def _configured(self, kind: str, name: str):
        """The configured queue or definition called `name`, or a SpecError that lists the real ones."""
        try:
            return getattr(self.config, kind)(name)
        except KeyError:
            names = ", ".join(item.name for item in getattr(self.config, f"{kind}s"))
            raise SpecError(f"unknown {kind} '{name}': configured {kind}s are {names}") from None

    # ---- control ------------------------------------------------------------------------
    def cancel(self, job_id: str, caller: Caller, index: int | None = None) -> dict:
        doc = self.get(job_id, caller)
        if index is not None:
            return self._cancel_task(doc, index, caller)
        state = JobState(doc["state"])
        if state in FINAL:
            raise Conflict(f"job {job_id} has already finished ({state.value})")
        reason = f"cancelled by {caller.name}"
        if is_array(doc):
            return update_array(self.store, job_id, lambda d: _cancel_array(d, reason))
        if state == JobState.RUNNING:
            # The worker sees the flag at its next heartbeat, kills the job and records CANCELLED.
            change = Change(set={"cancel_requested": True, "reason": f"cancel requested by {caller.name}"})
        else:
            change = Change(set={"state": JobState.CANCELLED, "reason": reason, "finished_at": time.time()})
        try:
            return self.store.update(job_id, Expect.state(state, attempt=doc["attempt"]), change)
        except StaleTransition:
            return self.cancel(job_id, caller)

    def _cancel_task(self, doc: dict, index: int, caller: Caller) -> dict:
        if not is_array(doc):
            raise SpecError(f"job {doc['id']} is not an array job; drop the [{index}]")
        spec = arrays.parse_array(doc["array"])
        pos = spec.position_of(index)
        if pos is None:
            raise NotFound(f"Unknown Job Id {doc['id']}[{index}]: the array's range is {doc['array']}")
        if task_state(doc, spec, pos)["state"] in {s.value for s in FINAL}:
            raise Conflict(f"task {doc['id']}[{index}] has already finished")
        # Recorded as cancelled now; a claimer skips it and a worker running it kills it.
        return update_array(
            self.store, doc["id"], lambda d: _cancel_one(d, spec, pos, index, f"cancelled by {caller.name}")
        )

    def hold(self, job_id: str, caller: Caller) -> dict:
        doc = self.get(job_id, caller)
        state = JobState(doc["state"])
        if state not in (JobState.QUEUED, JobState.WAITING) or (is_array(doc) and doc["running"]):
            raise Conflict(f"job {job_id} is {state.value}: only queued or waiting jobs can be held")
        change = Change(set={"state": JobState.HELD, "reason": f"held by {caller.name}"})
        try:
            return self.store.update(job_id, Expect(version=doc["version"]), change)
        except StaleTransition:
            return self.hold(job_id, caller)

    def release(self, job_id: str, caller: Caller) -> dict:
        doc = self.get(job_id, caller)
        if doc["state"] != JobState.HELD.value:
            raise Conflict(f"job {job_id} is {doc['state']}, not held")
        change = Change(set={"state": JobState.WAITING, "reason": f"waiting for {doc['depend']}"})
        new = self.store.update(job_id, Expect.state(JobState.HELD), change)
        waits = doc["depend"] or not deferral.eligible(doc.get("execution_time"), time.time())
        released = self.reevaluate(job_id) if waits else self._requeue_held(new)
        return released or new

    def _requeue_held(self, doc: dict) -> dict:
        new = self.store.update(
            doc["id"], Expect.state(JobState.WAITING), Change(set={"state": JobState.QUEUED, "reason": ""})
        )
        self.send_work([new])
        return new


def _may_see(caller: Caller, doc: dict) -> bool:
    return caller.admin or doc["owner"] == caller.name


def _cancel_array(doc: dict, reason: str) -> Change:
    """Cancel every task not yet running; running chunks stop at their next heartbeat."""
    cancelled = {**doc["cancelled_tasks"], **{index: True for index in doc["retrying"]}}
    return Change(
        set={
            "cancel_requested": True,
            "reason": reason,
            "retrying": {},
            "cancelled_tasks": cancelled,
            "cancelled": doc["cancelled"] + doc["pending"],
            "pending": 0,
        }
    )


def _cancel_one(doc: dict, spec, pos: int, index: int, reason: str) -> Change:
    key = str(index)
    cancelled = {**doc["cancelled_tasks"], key: True}
    retrying = {k: v for k, v in doc["retrying"].items() if k != key}
    change = Change(set={"cancelled_tasks": cancelled, "retrying": retrying})
    if task_state(doc, spec, pos)["state"] != JobState.RUNNING.value:
        change.set.update(pending=doc["pending"] - 1, cancelled=doc["cancelled"] + 1)
    return change

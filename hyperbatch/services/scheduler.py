"""What users ask of the scheduler: submit, look, cancel, hold, release, read logs.

The API application calls these; they talk only to ports, so the same code
runs in the local daemon and in Lambda.
"""

from __future__ import annotations

import builtins
import math
import time
from dataclasses import dataclass
from typing import Callable

from hyperbatch.core import (arrays, deferral, dependencies, directives, history, ids, limits, nodes, onprem, options,
                             outbox, pools, resources, signals)
from hyperbatch.config import Configuration, Queue
from hyperbatch.core.errors import (
    PBSE_BADATVAL, PBSE_BADDEPEND, PBSE_IVALREQ, PBSE_MODATRRUN, PBSE_NOHISTARRAYSUBJOB, PBSE_NORERUN, PBSE_UNKQUE, Conflict,
    Forbidden, JobFinished, NotFound, SpecError, StaleTransition,
)
from hyperbatch.core.model import NO_REQUEST, Change, Expect, is_array, new_job
from hyperbatch.core import bucket as layout, staging
from hyperbatch.core.ports import FileBucket, JobStore, LogStore, WorkerRegistry, WorkQueue
from hyperbatch.core.states import FINAL, JobState, task_letter
from hyperbatch.core import tasks
from hyperbatch.core.tasks import cancel_tasks, running_chunk, task_state, update_array


@dataclass(frozen=True)
class Caller:
    name: str
    admin: bool = False


class Scheduler:
    """`server` is the name in the jobs' PBS ids (`1234.server`: hyperbatch.core.ids); `sequence` hands
    out their numbers (default: exactly what each submit needs, reserved in the store)."""

    def __init__(self, config: Configuration, store: JobStore, queue: WorkQueue, logs: LogStore, *,
                 server: str = "", sequence: ids.SequenceBlocks | None = None,
                 deliver: Callable[[dict, str, int | None], bool] | None = None,
                 offer: Callable[[str], resources.Amount] | None = None,
                 registry: WorkerRegistry | None = None, files: FileBucket | None = None):
        self.config, self.store, self.queue, self.logs = config, store, queue, logs
        # The deployment's files bucket (AWS): the S3 locations a job stages from and to are checked
        # against it at submit (hyperbatch.core.bucket). None: local mode, whose stager copies on this machine.
        self.files = files
        # The records of workers on your own machines (hyperbatch.core.onprem), listed as nodes.
        self.registry = registry
        # offer(definition): the most one worker gives a job (local mode: the machine; default: the
        # definition's container, hyperbatch.core.resources).
        self.offer = offer or self._definition_offer
        self.server = server
        self.sequence = sequence or ids.SequenceBlocks(store.reserve_ids)
        # deliver(job document, signal name, task index) -> True once the signal reached the job's
        # processes (local mode, at once); None: workers deliver signals at their next heartbeat.
        self.deliver = deliver

    # ---- submit -------------------------------------------------------------------------
    def submit(self, requests: list[dict], caller: Caller) -> list[dict]:
        """Validate every request, store all jobs, then queue the runnable ones (store first)."""
        built = []
        for number, request in enumerate(requests):
            try:
                built.append(self.build(request, caller))
            except SpecError as exc:
                raise SpecError(f"job #{number + 1}: {exc}" if len(requests) > 1 else str(exc),
                                pbs_errno=exc.pbs_errno) from None
        docs = [doc for doc, _ in built]
        if self.files is not None:
            self.check_staging(docs, caller)
        # One run of consecutive ids for the whole submit (a batch is one submission on DynamoDB).
        for doc, job_id in zip(docs, self.sequence.take(len(docs))):
            doc["id"] = job_id
        self.store_new(docs, [(p, doc["id"]) for doc, parents in built for p in parents])
        return docs

    def store_new(self, docs: list[dict], edges: list[tuple[str, str]], workflow: dict | None = None) -> None:
        """Write new jobs (with their ids) and their edges, all or none, then queue the runnable ones."""
        self.store.create(docs, edges, workflow)
        self.send_work(docs)
        # A parent may have finished between our look and the edge write: look again.
        for doc in docs:
            if doc["state"] == JobState.WAITING.value:
                doc.update(self.reevaluate(doc["id"]) or {})

    def check_staging(self, docs: list[dict], caller: Caller) -> None:
        """On AWS: every S3 location a job stages from or to is one it may use (its owner's uploads in
        the files bucket, or where settings.staging_locations allow), and every upload it names is there,
        so a job never starts before its inputs exist (hyperbatch.core.bucket)."""
        assert self.files is not None
        allowed, uploads = self.config.settings.staging_locations, {}
        for number, doc in enumerate(docs):
            where = f"job #{number + 1}: " if len(docs) > 1 else ""
            for field, writing in ((staging.STAGEIN, False), (staging.STAGEOUT, True)):
                for stage in staging.stages(doc, field):
                    if not stage.is_s3:
                        if not writing:
                            raise SpecError(f"{where}stagein {stage.text()}: a worker on AWS cannot reach {stage.host}; "
                                            "qsub uploads the submit host's files, or name an s3:// URI")
                        continue
                    uri = layout.parse_s3(stage.remote)
                    try:
                        layout.check_job_uri(uri, bucket=self.files.bucket, owner=caller.name, allowed=allowed,
                                             writing=writing)
                    except SpecError as exc:
                        raise SpecError(f"{where}{field} {stage.local}: {exc}") from None
                    if uri.bucket == self.files.bucket and staging.ARRAY_INDEX not in uri.key:
                        # (a task's own upload, named through ^array_index^, is looked for when the task runs)
                        uploads[uri] = f"{where}stagein {stage.text()}"
        for uri in self.files.missing(list(uploads)):
            raise SpecError(f"{uploads[uri]}: nothing was uploaded there (qsub uploads the file before it submits)")

    def build(self, request: dict, caller: Caller, known: dict[str, dict] | None = None,
               default_name: str | None = None) -> tuple[dict, list[str]]:
        """A new job's document (no id yet) and its parents' ids. `known`: parents not stored yet
        (a workflow's earlier steps), by id; `default_name`: the name when neither the request nor the
        script's header gives one."""
        script, command = request.get("script"), request.get("command")
        if (script is None) == (not command):
            raise SpecError("give exactly one of 'script' (the job script's text) or 'command' (a list of arguments)")
        limits.check_request({"script": script, "command": command})  # before the directives are read
        now = time.time()
        given = {k: options.check_field(k, v) for k, v in request.items() if k in options.FIELDS and v is not None}
        header: dict = {}
        if script is not None:
            # qsub reads the header itself and sends directive_prefix "" with what it found.
            found = directives.parse_directives(script, request.get("directive_prefix"), options.Context(now=now))
            header = {k: v for k, v in found.items() if k not in options.CLIENT_KEYS}
        # Request fields (the command line) win over script directives; the queue's defaults under both.
        combined = options.combine(header, given)
        queue = combined.get("queue") or self.config.queues[0].name
        queue_config = self._configured("queue", queue)
        combined["resources"] = resources.with_defaults(combined.get("resources") or {}, queue_config.default_resources)
        fields = options.finish(combined, workdir=request.get("workdir"))
        definition = self._route(queue_config, fields.get("definition"), fields["resources"])

        # The API's models checked the request; the directives merged in are checked by the same rules.
        limits.check_request(fields)
        deps = dependencies.parse_depend(fields.get("depend") or "")
        parents = self._visible_parents(deps, caller, known)
        spec = arrays.parse_array(fields["array"]) if fields.get("array") else None
        env = {**(fields.get("env") or {}), "PBS_O_QUEUE": queue}  # the server adds the queue, as PBS's does

        name = fields.get("name") or default_name or options.default_name(request.get("script_name") if script is not None else None)
        attributes = {k: fields[k] for k in options.ATTRIBUTES if k in fields}
        doc = new_job(
            server=self.server,
            name=name,
            owner=caller.name,
            queue=queue,
            definition=definition,
            pool=pools.pool_field(queue, definition, queue_config.definition),
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
        # The submit itself is not recorded: tracejob renders it from the job's fields (core.history).
        if fields.get("hold"):
            doc["state"], doc["reason"] = JobState.HELD.value, "held at submission"
            doc["history"] = [history.event("h", "")]
        elif verdict == "never":
            doc["history"] = [history.event("n", reason)]
            if spec:
                doc.update((cancel_tasks(doc, reason) or Change()).set)
            doc.update(state=JobState.CANCELLED.value, reason=reason, finished_at=time.time())
        elif verdict == "wait":
            doc["state"], doc["reason"] = JobState.WAITING.value, reason
        return doc, list(parents)

    def _verdict(self, doc: dict, parent_states: dict, now: float) -> tuple[str, str]:
        """("met" | "wait" | "never", reason): dependencies first, then the execution time (-a)."""
        deps = dependencies.parse_depend(doc["depend"] or "")
        verdict, reason = dependencies.evaluate(deps, parent_states, self._pbs_id)
        if verdict == "wait":
            return verdict, self._waiting_for(doc["depend"])
        if verdict == "met" and not deferral.eligible(doc.get("execution_time"), now):
            return "wait", deferral.reason(doc["execution_time"])
        return verdict, reason

    def _pbs_id(self, job_id: str) -> str:
        return ids.format_id(job_id, self.server)

    def _pbs_depend(self, depend: str) -> str:
        return dependencies.format_pbs(dependencies.parse_depend(depend), self._pbs_id)

    def _waiting_for(self, depend: str) -> str:
        return f"waiting for {self._pbs_depend(depend)}"

    def _visible_parents(self, deps, caller: Caller, known: dict[str, dict] | None = None) -> dict[str, dict]:
        known = known or {}
        found = {**self.store.get_many(d.job_id for d in deps if d.job_id not in known),
                 **{d.job_id: known[d.job_id] for d in deps if d.job_id in known}}
        for dep in deps:
            parent = found.get(dep.job_id)
            if parent is None or not _may_see(caller, parent):
                raise SpecError(f"dependency {dep.kind}:{self._pbs_id(dep.job_id)}: no job {self._pbs_id(dep.job_id)} "
                                f"(check the id with qstat -x)", pbs_errno=PBSE_BADDEPEND)
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
            change = history.add(Change(set={"state": JobState.QUEUED, "reason": ""}), "q")
        else:
            change = history.add(Change(set={"state": JobState.CANCELLED, "reason": reason, "finished_at": time.time()}),
                                 "n", reason)
            if is_array(doc):
                change.set.update((cancel_tasks(doc, reason) or Change()).set)
        try:
            new = self.store.update(job_id, Expect.move(change.set["state"], JobState.WAITING), change)
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
        """Jobs newest first: the caller's own, `owner`'s (admins), or with owner '*' every job the
        caller may see (everyone's for an admin, as PBS's qstat lists all jobs)."""
        if owner is None or (owner == "*" and not caller.admin):
            owner = caller.name
        elif owner == "*":
            owner = None
        if owner != caller.name and not caller.admin:
            raise Forbidden("only admins may list other users' jobs")
        if queue is not None:
            self._configured("queue", queue)
        return self.store.query(owner=owner, queue=queue, states=states, limit=limit, next=next)

    def tasks(self, job_id: str, caller: Caller, offset: int, limit: int) -> "tuple[builtins.list[dict], int | None]":
        doc = self.get(job_id, caller)
        if not is_array(doc):
            raise Conflict(f"job {job_id} is not an array job")
        spec = arrays.parse_array(doc["array"])
        end = min(spec.size, offset + limit)
        rows = [self._task_row(doc, spec, pos) for pos in range(offset, end)]
        return rows, (end if end < spec.size else None)

    def task(self, job_id: str, index: int, caller: Caller) -> dict:
        """One array task: its row (as in `tasks`) plus the array's id, name, owner and queue."""
        doc = self.get(job_id, caller)
        if not is_array(doc):
            raise NotFound(f"job {job_id} is not an array job")
        spec = arrays.parse_array(doc["array"])
        pos = spec.position_of(index)
        if pos is None:
            raise NotFound(f"array {job_id} has no task {index}")
        return {
            **self._task_row(doc, spec, pos),
            "array_id": ids.display_id(doc),
            **{k: doc[k] for k in ("name", "owner", "queue", "server", "submitted_at", "started_at", "exec_host")},
        }

    @staticmethod
    def _task_row(doc: dict, spec, pos: int) -> dict:
        row = task_state(doc, spec, pos)
        return {"id": ids.display_id(doc, row["index"]), **row, "job_state": task_letter(row["state"])}

    def read_log(self, job_id, caller, stream, offset, index=None, limit=1 << 20) -> dict:
        """Up to `limit` bytes of output from byte `offset`, as stored ({"data": bytes, "offset": the next
        offset, "final": nothing more will come, "state": the job's or task's state})."""
        doc = self.get(job_id, caller)
        if stream not in ("stdout", "stderr"):
            raise SpecError("stream must be stdout or stderr")
        if is_array(doc):
            spec = arrays.parse_array(doc["array"])
            if index is None:
                raise SpecError(f"job {job_id} is an array: name a task, as in {job_id}[{spec.start}]")
            position = spec.position_of(index)
            if position is None:
                raise NotFound(f"array {job_id} has no task {index}")
            state = task_state(doc, spec, position)["state"]
        else:
            if index is not None:
                raise SpecError(f"job {job_id} is not an array job; drop the [{index}]")
            state = doc["state"]
        data, new_offset = self.logs.read(job_id, index, stream, offset, limit)
        final = state in {s.value for s in FINAL} and len(data) < limit
        return {"data": data, "offset": new_offset, "final": final, "state": state}

    def queues(self, workers: dict[tuple[str, str], int]) -> "builtins.list[dict]":
        out = []
        for q in self.config.queues:
            mine = {p.name for p in self.config.pools if p.queue == q.name}  # its work queues, one a size
            per_region: dict[str, int] = {}
            for (region, queue), n in workers.items():
                if queue in mine:
                    per_region[region] = per_region.get(region, 0) + n
            out.append(
                {
                    "name": q.name,
                    "definition": q.definition,
                    "definitions": [d.name for d in self.config.sizes(q)],
                    "counts": self.store.counts(q.name),
                    "backlog": sum(self.queue.backlog(name) for name in sorted(mine)),
                    "workers": per_region,
                }
            )
        return out

    def nodes(self, workers: builtins.list[dict] | None = None) -> builtins.list[dict]:
        """The workers as PBS nodes (hyperbatch.core.nodes): `workers` where they are known (local mode),
        else only those that run a job now, found from the running jobs; and the live on-premises workers."""
        running: list[dict] = []
        token = None
        while True:
            page = self.store.query(states=[JobState.RUNNING.value], limit=1000, next=token)
            running += page.items
            token = page.next
            if token is None:
                break
        definitions = {d.name: {"vcpus": d.vcpus, "memory_mib": d.memory_mib, "gpus": d.gpus}
                       for d in self.config.definitions}
        registered = onprem.live(self.registry.workers(), time.time()) if self.registry is not None else []
        rows = [{"id": r["name"], "region": onprem.ONPREM, "started_at": r.get("started_at"),
                 **{k: r.get(k) for k in ("queue", "definition", "ncpus", "mem_mib", "ngpus")}} for r in registered]
        return nodes.describe(workers, running, definitions, rows)

    def _route(self, queue: Queue, named: str | None, resource_list: dict) -> str:
        """The definition a job runs on: the one it names (which must be one of its queue's sizes),
        else the smallest size of its queue that fits its request (hyperbatch.core.resources.route);
        refused when it is over the queue's max_resources or larger than every size."""
        sizes = [d.name for d in self.config.sizes(queue)]
        if named:
            self._configured("definition", named)
            if named not in sizes:
                raise SpecError(f"definition {named}: queue {queue.name} runs its jobs on {', '.join(sizes)}")
            sizes = [named]
        return resources.route(resources.request_of(resource_list), queue.name,
                               resources.limits_of(queue.max_resources), [(n, self.offer(n)) for n in sizes])

    def _definition_offer(self, definition: str) -> resources.Amount:
        """What one worker of `definition` gives its jobs on AWS: its container's vCPUs (whole ones),
        memory and GPUs."""
        d = self.config.definition(definition)
        return resources.Amount(max(1, math.ceil(d.vcpus)), d.memory_mib << 20, d.gpus)

    def _configured(self, kind: str, name: str):
        """The configured queue or definition called `name`, or a SpecError that lists the real ones."""
        try:
            return getattr(self.config, kind)(name)
        except KeyError:
            names = ", ".join(item.name for item in getattr(self.config, f"{kind}s"))
            raise SpecError(f"unknown {kind} '{name}': configured {kind}s are {names}",
                            pbs_errno=PBSE_UNKQUE if kind == "queue" else None) from None

    # ---- control ------------------------------------------------------------------------
    def cancel(self, job_id: str, caller: Caller, index: int | None = None) -> dict:
        """Cancel a job, an array, or one array task; JobFinished if it has already finished.

        Queued, held and waiting work is cancelled at once. For a running job
        the cancel is recorded with a conditional write on it RUNNING at its
        attempt; its worker kills it at the next heartbeat. Its run's end is
        conditional on no cancel request (`Dispatcher._end_run`), so whichever
        write lands first is the truth: once this returns, the job ends
        CANCELLED; had the run ended first, this raises JobFinished. Running array
        tasks likewise end CANCELLED whatever they return (`tasks.finish_chunk`).
        """
        doc = self.get(job_id, caller)
        if index is not None:
            return self._cancel_task(doc, index, caller)
        if JobState(doc["state"]) in FINAL:
            raise JobFinished(f"Job has finished {ids.display_id(doc)} ({doc['state']})")
        reason = f"cancelled by {caller.name}"
        deleted = history.who(caller.name, doc)
        if is_array(doc):
            finished: list[dict] = []

            def decide(d: dict) -> Change | None:
                if JobState(d["state"]) in FINAL:
                    finished.append(d)
                change = cancel_tasks(d, reason)
                return history.add(change, "d", deleted) if change is not None else None

            new = update_array(self.store, job_id, decide)
            if finished:
                raise JobFinished(f"Job has finished {ids.display_id(doc)} ({new['state']})")
            return new
        state = JobState(doc["state"])
        if state == JobState.RUNNING:
            if doc["cancel_requested"]:
                return doc  # asked already: the worker is on it
            change = Change(set={"cancel_requested": True, "reason": f"cancel requested by {caller.name}"})
            expect = Expect.state(state, attempt=doc["attempt"])
        else:
            change = Change(set={"state": JobState.CANCELLED, "reason": reason, "finished_at": time.time()})
            expect = Expect.move(JobState.CANCELLED, state, attempt=doc["attempt"])
        history.add(change, "d", deleted)
        try:
            return self.store.update(job_id, expect, change)
        except StaleTransition:
            return self.cancel(job_id, caller)  # it moved on: look again (finished, started or re-queued)

    def _cancel_task(self, doc: dict, index: int, caller: Caller) -> dict:
        if not is_array(doc):
            raise SpecError(f"job {doc['id']} is not an array job; drop the [{index}]")
        spec = arrays.parse_array(doc["array"])
        pos = spec.position_of(index)
        if pos is None:
            raise NotFound(f"Unknown Job Id {ids.display_id(doc, index)}: the array's range is {doc['array']}")
        finished: list[bool] = []

        def decide(d: dict) -> Change | None:
            change = cancel_tasks(d, f"cancelled by {caller.name}", index)
            if change is None:
                finished.append(True)
            return change

        # Recorded as cancelled now; a claimer skips it and a worker running it kills it.
        new = update_array(self.store, doc["id"], decide)
        if finished:
            raise JobFinished(f"Job has finished {ids.display_id(doc, index)}",
                              pbs_errno=PBSE_NOHISTARRAYSUBJOB)
        return new

    def hold(self, job_id: str, caller: Caller) -> dict:
        doc = self.get(job_id, caller)
        state = JobState(doc["state"])
        if state in FINAL:
            raise JobFinished(f"job {ids.display_id(doc)} has finished ({state.value})")
        if state == JobState.HELD:
            return doc  # held already: as PBS, holding again changes nothing and succeeds
        if state not in (JobState.QUEUED, JobState.WAITING) or (is_array(doc) and doc["running"]):
            raise Conflict(f"job {job_id} is {state.value}: only queued or waiting jobs can be held")
        change = history.add(Change(set={"state": JobState.HELD, "reason": f"held by {caller.name}"}),
                             "h", history.who(caller.name, doc))
        try:
            return self.store.update(job_id, Expect.move(JobState.HELD, state, version=doc["version"]), change)
        except StaleTransition:
            return self.hold(job_id, caller)

    def release(self, job_id: str, caller: Caller) -> dict:
        doc = self.get(job_id, caller)
        if doc["state"] in {s.value for s in FINAL}:
            raise JobFinished(f"job {ids.display_id(doc)} has finished ({doc['state']})")
        if doc["state"] != JobState.HELD.value:
            raise Conflict(f"job {job_id} is {doc['state']}, not held")
        change = history.add(Change(set={"state": JobState.WAITING, "reason": self._waiting_for(doc["depend"])}),
                             "u", history.who(caller.name, doc))
        new = self.store.update(job_id, Expect.move(JobState.WAITING, JobState.HELD), change)
        waits = doc["depend"] or not deferral.eligible(doc.get("execution_time"), time.time())
        released = self.reevaluate(job_id) if waits else self._requeue_held(new)
        return released or new

    def _requeue_held(self, doc: dict) -> dict:
        new = self.store.update(
            doc["id"], Expect.move(JobState.QUEUED, JobState.WAITING), Change(set={"state": JobState.QUEUED, "reason": ""})
        )
        self.send_work([new])
        return new


    # ---- qalter, qrerun, qsig, qmove ----------------------------------------------------
    def alter(self, job_id: str, changes: dict, caller: Caller) -> dict:
        """qalter: change a job that has not started. `changes` holds fields of `options.ALTERABLE`
        (the option table's values): resources merge into the job's, depend replaces the job's, hold
        True holds and False releases, an execution time (-a) still to come defers the job (W). A
        running job (or a begun array) cannot be altered (PBS: 167), a finished one 35."""
        doc = self.get(job_id, caller)
        self._not_started(doc, "Cannot modify attribute while job running")
        unknown = sorted(set(changes) - set(options.ALTERABLE))
        if unknown:
            raise SpecError(f"{unknown[0]} cannot be altered", pbs_errno=PBSE_IVALREQ)
        fields: dict = {}
        for key in ("name", "priority", "walltime", *options.ATTRIBUTES):
            if changes.get(key) is not None:
                try:
                    fields[key] = options.check_field(key, changes[key])
                except SpecError as exc:
                    raise SpecError(str(exc), pbs_errno=PBSE_BADATVAL) from None
        if changes.get("resources"):
            given = options.check_resources(changes["resources"])
            # Resource_List is derived again (hyperbatch.core.options.resource_list): a new select
            # replaces the chunk's resources, a new ncpus or mem changes the chunk.
            kept = {k: v for k, v in doc["resources"].items()
                    if k not in ("select", "nodect") and not ("select" in given and k in options.CHUNK_RESOURCES)}
            fields["resources"] = options.resource_list({**kept, **given})
            # The job goes to the smallest size of its queue that fits what it asks for now.
            queue_config = self._configured("queue", doc["queue"])
            fields["definition"] = self._route(queue_config, None, fields["resources"])
            fields["pool"] = pools.pool_field(doc["queue"], fields["definition"], queue_config.definition)
        if is_array(doc) and fields.get("rerunnable") is False:
            raise SpecError("cannot make an array job not rerunable (-r n)", pbs_errno=PBSE_BADATVAL)
        edges: list[tuple[str, str]] = []
        if changes.get("depend") is not None:
            deps = dependencies.parse_depend(changes["depend"])
            parents = self._visible_parents(deps, caller)
            fields["depend"] = dependencies.format_depend(deps)
            edges = [(p, job_id) for p in parents]
        altered = [options.ALTERABLE[key] for key in fields if key in options.ALTERABLE]
        if not altered and changes.get("hold") is None:
            raise SpecError("nothing to alter: give one of " + ", ".join(options.ALTERABLE), pbs_errno=PBSE_IVALREQ)
        waits = "depend" in fields or "execution_time" in fields
        if waits and doc["state"] in (JobState.QUEUED.value, JobState.WAITING.value):
            # Looked at again below: WAITING until its dependencies are met and its time has come.
            depend, at = fields.get("depend", doc["depend"]), fields.get("execution_time", doc.get("execution_time"))
            fields["state"] = JobState.WAITING
            fields["reason"] = self._waiting_for(depend) if depend else deferral.reason(at) if at else ""
        new = doc
        if altered:
            if edges:
                self.store.add_edges(edges)
            change = history.add(Change(set=fields), "a", history.who(caller.name, doc), ", ".join(altered))
            try:
                expect = (Expect.move(fields["state"], doc["state"], version=doc["version"]) if "state" in fields
                          else Expect(version=doc["version"]))
                new = self.store.update(job_id, expect, change)
            except StaleTransition:
                return self.alter(job_id, changes, caller)
            if "priority" in fields and new["state"] == JobState.QUEUED.value:
                self.queue.reprioritise(job_id, new["priority"])
            items = outbox.to_send(doc, new)  # a new size: its work goes to that size's workers
            if items:
                self.queue.send_many(items)
            if waits and new["state"] == JobState.WAITING.value:
                new = self.reevaluate(job_id) or new
        if changes.get("hold") is True and new["state"] != JobState.HELD.value:
            new = self.hold(job_id, caller)
        elif changes.get("hold") is False and new["state"] == JobState.HELD.value:
            new = self.release(job_id, caller)
        return new

    def _not_started(self, doc: dict, running_text: str) -> None:
        state = JobState(doc["state"])
        if state in FINAL:
            raise JobFinished(f"job {ids.display_id(doc)} has finished ({state.value})")
        if state == JobState.RUNNING or (is_array(doc) and doc["started_at"] is not None):
            raise Conflict(f"job {ids.display_id(doc)} has started: {running_text}", pbs_errno=PBSE_MODATRRUN)

    def move(self, job_id: str, queue: str, caller: Caller) -> dict:
        """qmove: a job that has not started goes to another queue (its work is sent there anew; the
        item left in the old queue is stale and dropped by whoever claims it)."""
        doc = self.get(job_id, caller)
        state = JobState(doc["state"])
        if state in FINAL:
            raise JobFinished(f"job {ids.display_id(doc)} has finished ({state.value})")
        if state == JobState.RUNNING or (is_array(doc) and doc["started_at"] is not None):
            raise Conflict(f"job {ids.display_id(doc)} has started: only jobs not yet running can be moved")
        queue_config = self._configured("queue", queue)
        if queue == doc["queue"]:
            return doc
        # A job keeps a definition of its own that the new queue also runs; else it takes the new queue's
        # smallest size that fits it.
        sizes = {d.name for d in self.config.sizes(queue_config)}
        old_default = self._configured("queue", doc["queue"]).definition
        keep = doc["definition"] if doc["definition"] != old_default and doc["definition"] in sizes else None
        definition = self._route(queue_config, keep, doc["resources"])
        pool = pools.pool_field(queue, definition, queue_config.definition)
        change = history.add(Change(set={"queue": queue, "state": state, "definition": definition, "pool": pool}),
                             "m", history.who(caller.name, doc), queue)
        try:
            new = self.store.update(job_id, Expect.move(state, state, version=doc["version"]), change)
        except StaleTransition:
            return self.move(job_id, queue, caller)
        items = outbox.to_send(doc, new)
        if items:
            self.queue.send_many(items)
        return new

    def rerun(self, job_id: str, caller: Caller, index: int | None = None, force: bool = False) -> dict:
        """qrerun: a running job is asked to run again; an array not yet finished re-runs its failed
        and cancelled tasks (or the one task `index` names). A finished job or array stays finished
        (PBS: "Job has finished"). A job submitted with -r n cannot be re-run (PBS: 190) unless
        `force` (qrerun -W force).

        A running job is not re-queued here: that would let another worker start the new attempt
        while the old run goes on until its worker's next look at the store. As a qdel of a running
        job (`cancel`), the request is flagged (`rerun_requested`, on RUNNING at its attempt, with no
        cancel asked) and the job stays RUNNING (PBS: R, substate 60); its worker kills the run and
        its end writes QUEUED at attempt + 1 (`Dispatcher._end_run`), as does the recovery of a
        run whose worker was lost meanwhile. A qdel, before or after, wins. PBS's force, which
        re-queues without waiting for MoM, is not followed there: nothing may start the job again
        before its run is known dead.
        """
        doc = self.get(job_id, caller)
        if doc.get("rerunnable") is False and not force:
            raise Conflict(f"job {ids.display_id(doc)} was submitted as not rerunnable (-r n)", pbs_errno=PBSE_NORERUN)
        who = history.who(caller.name, doc)
        if JobState(doc["state"]) in FINAL:  # final stays final (the transition table); PBS says the same
            raise JobFinished(f"job {ids.display_id(doc)} has finished ({doc['state']})")
        if is_array(doc):
            new = update_array(self.store, job_id, lambda d: _rerun_tasks(d, index, who))
            if new["version"] == doc["version"] and not _rerunnable_tasks(doc, index):
                what = f"task {ids.display_id(doc, index)}" if index is not None else f"array {ids.display_id(doc)}"
                raise Conflict(f"{what} has no failed or cancelled task to re-run")
            self.send_work([new])
            return new
        if index is not None:
            raise SpecError(f"job {ids.display_id(doc)} is not an array job; drop the [{index}]")
        state = JobState(doc["state"])
        if state != JobState.RUNNING:
            raise Conflict(f"job {ids.display_id(doc)} is {state.value}: only running jobs can be re-run")
        if doc["cancel_requested"]:
            raise Conflict(f"job {ids.display_id(doc)} is being deleted: it cannot be re-run")
        if doc.get("rerun_requested"):
            return doc  # asked already: the worker is on it
        change = history.add(Change(set={"rerun_requested": True, "reason": f"rerun requested by {caller.name}"}),
                             "R", who, 0)
        expect = Expect(states=frozenset({JobState.RUNNING}), attempt=doc["attempt"], fields=NO_REQUEST)
        try:
            return self.store.update(job_id, expect, change)
        except StaleTransition:
            return self.rerun(job_id, caller, force=force)  # it moved on: look again (ended, cancelled)

    def signal(self, job_id: str, name: str, caller: Caller, index: int | None = None) -> dict:
        """qsig: ask for `name` (SIGUSR1, USR1, 10 ...) to be sent to the running job's process group
        (or to a running task of an array). The job's worker delivers it at its next heartbeat; in local
        mode the daemon delivers it at once (`deliver`, wired in by hyperbatch.wiring.daemon)."""
        signame = signals.parse(name)
        doc = self.get(job_id, caller)
        running = doc["state"] == JobState.RUNNING.value
        if is_array(doc):
            spec = arrays.parse_array(doc["array"])
            if index is not None:
                pos = spec.position_of(index)
                if pos is None:
                    raise NotFound(f"array {job_id} has no task {index}")
                running = task_state(doc, spec, pos)["state"] == JobState.RUNNING.value
            else:
                running = bool(doc["running"])
        elif index is not None:
            raise SpecError(f"job {ids.display_id(doc)} is not an array job; drop the [{index}]")
        if doc["state"] in {s.value for s in FINAL}:
            raise JobFinished(f"job {ids.display_id(doc)} has finished")
        if not running:
            raise Conflict(f"job {ids.display_id(doc)} is not running: signals go to running jobs only")
        delivered = self.deliver(doc, signame, index) if self.deliver is not None else False
        entry = [round(time.time(), 2), signame, index, delivered]
        target = ids.display_id(doc, index)
        change = history.add(Change(append={"signals": [entry]}), "s", history.who(caller.name, doc), signame,
                             target, int(delivered))
        # Appended whatever else changed meanwhile (a heartbeat): the worker delivers what it has not seen.
        return self.store.update(job_id, Expect(), change)


def _may_see(caller: Caller, doc: dict) -> bool:
    return caller.admin or doc["owner"] == caller.name


def _rerunnable_tasks(doc: dict, index: int | None) -> list[int]:
    """Positions of the array's failed and cancelled tasks (of the task `index` only, if given)."""
    spec = arrays.parse_array(doc["array"])
    only = spec.position_of(index) if index is not None else None
    if index is not None and only is None:
        return []
    found = {pos for name in (tasks.FAILED_MAP, tasks.CANCELLED_MAP)
             for pos, _ in tasks.task_map(doc, name).items(*((only, only + 1) if only is not None else ()))}
    return sorted(found)


def _rerun_tasks(doc: dict, index: int | None, who: str) -> Change | None:
    """An unfinished array's failed and cancelled tasks (or the one task `index`) back to pending: tasks
    that ran are retried at a new attempt, tasks never handed out are sent again as ranges
    (outbox.to_send). A task still running (cancelled, its worker not yet stopped) is left alone: it
    must end before it can run again."""
    if doc["cancel_requested"]:
        raise Conflict(f"array {ids.display_id(doc)} is being cancelled: none of its tasks can be re-run")
    keys = [pos for pos in _rerunnable_tasks(doc, index) if running_chunk(doc, pos) is None]
    change = tasks.rerun_tasks(doc, keys)
    if change is None:
        return None
    change.set.update(finished_at=None, exit_status=None, reason="")
    return history.add(change, "R", who, len(keys))


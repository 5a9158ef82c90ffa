"""The HTTP API: one powertools resolver that the local daemon serves and Lambda runs.

Every route goes through `authorize`, which turns the request into a Caller
(local: bearer token; AWS: the IAM principal API Gateway verified) or refuses it.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import unquote
from typing import Annotated, Any, Callable

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hyperbatch import __version__
from hyperbatch.core.errors import PBSE_IVALREQ, PBSE_UNKJOBID, HyperError, NotFound, SpecError
from hyperbatch.core.ids import JobRef, parse_job_ref
from hyperbatch.core.model import view
from hyperbatch.core.options import NAME_PATTERN
from hyperbatch.services.scheduler import MAX_SCRIPT_BYTES, Caller, Scheduler
from hyperbatch.core.states import JobState

log = logging.getLogger("hyperbatch.api")

MAX_PAGE = 1000


class JobRequest(BaseModel):
    """One job: a script (its #PBS/#HYPER header is read) or a command, and options that win over the header."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, pattern=NAME_PATTERN)
    queue: str | None = Field(None, max_length=64)
    definition: str | None = Field(None, max_length=64)
    script: str | None = Field(None, max_length=MAX_SCRIPT_BYTES)
    script_name: str | None = Field(None, max_length=1024)
    command: list[str] | None = Field(None, min_length=1, max_length=4096)
    array: str | None = Field(None, max_length=64, examples=["1-100", "0-10:2", "1-1000%10"])
    depend: str | None = Field(None, max_length=4096, examples=["afterok:1234.server"])
    priority: int | None = Field(None, ge=-1024, le=1023)
    max_attempts: int | None = Field(None, ge=1, le=100)
    walltime: str | int | None = Field(None, examples=["01:00:00"])
    env: dict[str, str] | None = None
    resources: dict[str, str] | None = None
    hold: bool | None = None
    workdir: str | None = Field(None, max_length=4096)


class AlterRequest(BaseModel):
    """qalter: the attributes of a job that has not started; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, pattern=NAME_PATTERN)
    priority: int | None = Field(None, ge=-1024, le=1023)
    walltime: str | int | None = Field(None, examples=["01:00:00"])
    resources: dict[str, str] | None = None
    depend: str | None = Field(None, max_length=4096, examples=["afterok:1234.server"])
    hold: bool | None = Field(None, description="true holds the job (qalter -h u), false releases it (-h n)")


class SignalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signal: str = Field(max_length=32, examples=["SIGUSR1", "USR1", "10"])


class MoveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queue: str = Field(max_length=64)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jobs: list[JobRequest] = Field(min_length=1, max_length=1000)




def error(status: int, code: str, message: str, pbs_errno: int | None = None, job_id: str | None = None) -> Response:
    body: dict[str, Any] = {"error": code, "message": message}
    if pbs_errno is not None:
        body["pbs_errno"] = pbs_errno  # the PBS commands print PBS's text for it and exit with its low byte
    if job_id is not None:
        body["job_id"] = job_id  # the job named, with .SERVER appended as PBS echoes it
    return Response(status, content_types.APPLICATION_JSON, json.dumps(body))


def describe_validation(errors: list[dict]) -> str:
    """The first problem, as 'field: what is wrong', without pydantic's internals."""
    err = errors[0]
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "JobRequest", "BatchRequest")]
    msg = err.get("msg", "invalid").removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        msg = "unknown field"
    return f"{'.'.join(loc)}: {msg}" if loc else msg


def build_app(
    scheduler: Scheduler,
    authorize: Callable[[dict], Caller | None],
    workers: Callable[[], dict[tuple[str, str], int]],
    unauthenticated_status: int = 401,
    nodes: Callable[[], list[dict]] | None = None,
) -> APIGatewayHttpResolver:
    """`unauthenticated_status`: what a request that `authorize` refuses gets — 401 locally (bad bearer
    token); 403 on AWS, as API Gateway's IAM authorizer answers an unsigned request. `nodes` lists the
    workers (GET /nodes, pbsnodes: rows of id, region, queue, definition, started_at); without it the
    workers are found from the running jobs."""
    app = APIGatewayHttpResolver(enable_validation=True)
    refused = "Unauthorized" if unauthenticated_status == 401 else "Forbidden"

    def caller() -> Caller:
        return app.context["caller"]

    def auth_middleware(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
        who = authorize(app.current_event.raw_event)
        if who is None:
            return error(unauthenticated_status, refused, "missing or invalid credentials")
        app.append_context(caller=who)
        return next_middleware(app)

    app.use(middlewares=[auth_middleware])

    @app.exception_handler(HyperError)
    def _hyper_error(exc: HyperError) -> Response:
        return error(exc.status, exc.code, str(exc), exc.pbs_errno, exc.job_id)

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response:
        return error(422, "ValidationError", describe_validation(exc.errors()))

    @app.not_found
    def _no_route(exc: NotFoundError) -> Response:
        return error(404, "NotFound", f"no route {app.current_event.http_method} {app.current_event.path}")

    @app.exception_handler(Exception)
    def _internal(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error(500, "InternalError", f"{type(exc).__name__}: {exc}")

    @app.post("/jobs", summary="Submit one job, or a batch of up to 1,000 as {'jobs': [...]}")
    def submit():
        try:
            raw = app.current_event.json_body
            # Pick the shape by its key, so errors speak of the body that was meant.
            shape = BatchRequest if isinstance(raw, dict) and "jobs" in raw else JobRequest
            body = shape.model_validate(raw)
        except (ValidationError, json.JSONDecodeError, TypeError) as exc:
            message = describe_validation(exc.errors()) if isinstance(exc, ValidationError) else "body must be JSON"
            return error(422, "ValidationError", message)
        requests = body.jobs if isinstance(body, BatchRequest) else [body]
        docs = scheduler.submit([r.model_dump(exclude_none=True) for r in requests], caller())
        payload: Any = {"jobs": [view(d) for d in docs]} if isinstance(body, BatchRequest) else view(docs[0])
        return Response(201, content_types.APPLICATION_JSON, json.dumps(payload))

    @app.get("/jobs", summary="List jobs newest first; the caller's own unless owner is given")
    def list_jobs(
        owner: Annotated[str | None, Query(max_length=256)] = None,
        queue: Annotated[str | None, Query(max_length=64)] = None,
        state: Annotated[str | None, Query(description="comma-separated states")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        next: Annotated[str | None, Query(max_length=64)] = None,
    ) -> dict:
        states = _states(state)
        page = scheduler.list(caller(), owner=owner, queue=queue, states=states, limit=limit, next=next)
        return {"jobs": [view(d) for d in page.items], "next": page.next}

    def on_job(text: str, act: Callable[[JobRef], Any]) -> Any:
        """Run `act` on the job the path names (`1234`, `1234.server`, `1234[]`, `1234[7]`, ...); an
        unknown job is answered as PBS does, naming the id as given with the server appended.
        The id may arrive percent-encoded (`1234%5B7%5D`): API Gateway decodes paths, the local server not."""
        text = unquote(text)
        try:
            ref = parse_job_ref(text, scheduler.server)
            return act(ref)
        except NotFound as exc:
            if exc.pbs_errno != PBSE_UNKJOBID:
                raise
            unknown = NotFound(f"Unknown Job Id {ids_expanded(text, scheduler.server)}")
            unknown.job_id = ids_expanded(text, scheduler.server)
            raise unknown from None
        except HyperError as exc:
            exc.job_id = ids_expanded(text, scheduler.server)
            raise

    @app.get("/jobs/<job_id>", summary="One job, or one array task (ID[INDEX])")
    def get_job(job_id: str) -> dict:
        def look(ref: JobRef) -> dict:
            if ref.index is not None:
                return scheduler.task(ref.seq, ref.index, caller())
            return view(scheduler.get(ref.seq, caller()))

        return on_job(job_id, look)

    @app.get("/jobs/<job_id>/tasks", summary="An array's tasks with their states")
    def get_tasks(
        job_id: str,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> dict:
        rows, nxt = on_job(job_id, lambda ref: scheduler.tasks(_whole(ref), caller(), offset, limit))
        return {"tasks": rows, "next": nxt}

    @app.delete("/jobs/<job_id>", summary="Cancel a job, an array, or one task (ID[INDEX], or ?index=N)")
    def cancel(job_id: str, index: Annotated[int | None, Query(ge=0)] = None) -> dict:
        return on_job(job_id, lambda ref: view(scheduler.cancel(ref.seq, caller(), _index(ref, index))))

    @app.post("/jobs/<job_id>/hold", summary="Hold a queued or waiting job")
    def hold(job_id: str) -> dict:
        return on_job(job_id, lambda ref: view(scheduler.hold(_whole(ref), caller())))

    @app.post("/jobs/<job_id>/release", summary="Release a held job")
    def release(job_id: str) -> dict:
        return on_job(job_id, lambda ref: view(scheduler.release(_whole(ref), caller())))

    @app.patch("/jobs/<job_id>", summary="Alter a job that has not started (qalter)")
    def alter(job_id: str, body: AlterRequest) -> dict:
        changes = body.model_dump(exclude_none=True)
        return on_job(job_id, lambda ref: view(scheduler.alter(_whole(ref), changes, caller())))

    @app.post("/jobs/<job_id>/rerun", summary="Re-run a running job, or an array's failed and cancelled tasks")
    def rerun(job_id: str) -> dict:
        return on_job(job_id, lambda ref: view(scheduler.rerun(ref.seq, caller(), ref.index)))

    @app.post("/jobs/<job_id>/signal", summary="Send a signal to a running job or array task (qsig)")
    def signal(job_id: str, body: SignalRequest) -> dict:
        return on_job(job_id, lambda ref: view(scheduler.signal(ref.seq, body.signal, caller(), ref.index)))

    @app.post("/jobs/<job_id>/move", summary="Move a job that has not started to another queue (qmove)")
    def move(job_id: str, body: MoveRequest) -> dict:
        return on_job(job_id, lambda ref: view(scheduler.move(_whole(ref), body.queue, caller())))

    @app.get("/jobs/<job_id>/log", summary="stdout or stderr from a byte offset (poll for live output)")
    def read_log(
        job_id: str,
        stream: Annotated[str, Query(pattern="^(stdout|stderr)$")] = "stdout",
        offset: Annotated[int, Query(ge=0)] = 0,
        index: Annotated[int | None, Query(ge=0)] = None,
    ) -> dict:
        return on_job(job_id, lambda ref: scheduler.read_log(ref.seq, caller(), stream, offset, _index(ref, index)))

    @app.get("/queues", summary="Jobs per state, backlog and workers per region, for each queue")
    def queues() -> dict:
        return {"server": scheduler.server, "queues": scheduler.queues(workers())}

    @app.get("/nodes", summary="The workers, as PBS nodes (pbsnodes)")
    def list_nodes() -> dict:
        return {"server": scheduler.server, "nodes": scheduler.nodes(nodes() if nodes is not None else None)}

    @app.get("/health", summary="Liveness")
    def health() -> dict:
        return {"status": "ok", "version": __version__, "server": scheduler.server}

    @app.get("/openapi.json", include_in_schema=False)
    def openapi():
        return Response(200, content_types.APPLICATION_JSON, app.get_openapi_json_schema(title="HyperBatch"))

    app.enable_swagger(path="/swagger", title="HyperBatch", version=__version__)
    return app


def ids_expanded(text: str, server: str) -> str:
    """The operand as PBS echoes it in a message: with `.SERVER` appended when it has none."""
    text = text.strip()
    try:
        return parse_job_ref(text).expanded(server)
    except HyperError:
        return text


def _whole(ref: JobRef) -> str:
    """The id of a request that acts on a whole job or array, never on one task."""
    if ref.index is not None:
        raise SpecError(
            f"{ref.text} is one task: this acts on a whole job or array, as in {ref.seq}[]", pbs_errno=PBSE_IVALREQ
        )
    return ref.seq


def _index(ref: JobRef, query_index: int | None) -> int | None:
    if ref.index is not None and query_index is not None and ref.index != query_index:
        raise SpecError(f"{ref.text} names task {ref.index} but ?index={query_index} another")
    return ref.index if ref.index is not None else query_index


def _states(text: str | None) -> list[str] | None:
    if not text:
        return None
    names = [s.strip().upper() for s in text.split(",") if s.strip()]
    valid = {s.value for s in JobState}
    for name in names:
        if name not in valid:
            raise SpecError(f"unknown state '{name}': use {', '.join(sorted(valid))}")
    return names

"""The HTTP API: one powertools resolver that the local daemon serves and Lambda runs.

Every route goes through `authorize`, which turns the request into a Caller
(local: bearer token; AWS: the IAM principal API Gateway verified) or refuses it.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any, Callable

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, create_model, field_validator

from hyperbatch import __version__
from hyperbatch.core import options
from hyperbatch.core.errors import HyperError
from hyperbatch.core.ids import parse_job_ref
from hyperbatch.core.model import view
from hyperbatch.services.scheduler import MAX_SCRIPT_BYTES, Caller, Scheduler
from hyperbatch.core.states import JobState

log = logging.getLogger("hyperbatch.api")

MAX_PAGE = 1000


def _job_request_model() -> type[BaseModel]:
    """One job: a script (its #PBS/#HYPER header is read) or a command, and the option fields of
    the option table (core/options.FIELDS), which win over the header. Each option field takes
    its canonical JSON value or PBS text, read by the table's own parser."""
    fields: dict[str, Any] = {
        "script": (str | None, Field(None, max_length=MAX_SCRIPT_BYTES)),
        "script_name": (str | None, Field(None, max_length=1024)),
        "command": (list[str] | None, Field(None, min_length=1, max_length=4096)),
        "workdir": (str | None, Field(None, max_length=options.MAX_PATH, description="submit directory: PBS_O_WORKDIR")),
        "directive_prefix": (
            str | None,
            Field(None, max_length=32, description="directive prefix instead of #PBS/#HYPER ('' reads none; qsub -C)"),
        ),
    }
    for name, spec in options.FIELDS.items():
        fields[name] = (spec.kind | None, Field(None, description=spec.help, examples=list(spec.examples) or None))

    def check(cls, value: Any, info: ValidationInfo) -> Any:
        return None if value is None else options.check_field(info.field_name, value)

    return create_model(
        "JobRequest",
        __config__=ConfigDict(extra="forbid"),
        __doc__="One job: a script or a command, and options (the option table's fields) that win over the script's header.",
        __validators__={"check_options": field_validator(*options.FIELDS, mode="before")(check)},
        **fields,
    )


JobRequest = _job_request_model()


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jobs: list[JobRequest] = Field(min_length=1, max_length=1000)




def error(status: int, code: str, message: str) -> Response:
    return Response(status, content_types.APPLICATION_JSON, json.dumps({"error": code, "message": message}))


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
) -> APIGatewayHttpResolver:
    """`unauthenticated_status`: what a request that `authorize` refuses gets — 401 locally (bad bearer
    token); 403 on AWS, as API Gateway's IAM authorizer answers an unsigned request."""
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
        return error(exc.status, exc.code, str(exc))

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

    @app.get("/jobs/<job_id>", summary="One job")
    def get_job(job_id: str) -> dict:
        return view(scheduler.get(_id(job_id), caller()))

    @app.get("/jobs/<job_id>/tasks", summary="An array's tasks with their states")
    def get_tasks(
        job_id: str,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> dict:
        rows, nxt = scheduler.tasks(_id(job_id), caller(), offset, limit)
        return {"tasks": rows, "next": nxt}

    @app.delete("/jobs/<job_id>", summary="Cancel a job, an array, or one task (?index=N)")
    def cancel(job_id: str, index: Annotated[int | None, Query(ge=0)] = None) -> dict:
        return view(scheduler.cancel(_id(job_id), caller(), index))

    @app.post("/jobs/<job_id>/hold", summary="Hold a queued or waiting job")
    def hold(job_id: str) -> dict:
        return view(scheduler.hold(_id(job_id), caller()))

    @app.post("/jobs/<job_id>/release", summary="Release a held job")
    def release(job_id: str) -> dict:
        return view(scheduler.release(_id(job_id), caller()))

    @app.get("/jobs/<job_id>/log", summary="stdout or stderr from a byte offset (poll for live output)")
    def read_log(
        job_id: str,
        stream: Annotated[str, Query(pattern="^(stdout|stderr)$")] = "stdout",
        offset: Annotated[int, Query(ge=0)] = 0,
        index: Annotated[int | None, Query(ge=0)] = None,
    ) -> dict:
        return scheduler.read_log(_id(job_id), caller(), stream, offset, index)

    @app.get("/queues", summary="Jobs per state, backlog and workers per region, for each queue")
    def queues() -> dict:
        return {"queues": scheduler.queues(workers())}

    @app.get("/health", summary="Liveness")
    def health() -> dict:
        return {"status": "ok", "version": __version__}

    @app.get("/openapi.json", include_in_schema=False)
    def openapi():
        return Response(200, content_types.APPLICATION_JSON, app.get_openapi_json_schema(title="HyperBatch"))

    app.enable_swagger(path="/swagger", title="HyperBatch", version=__version__)
    return app


def _id(text: str) -> str:
    job_id, index = parse_job_ref(text)
    if index is not None:
        from hyperbatch.core.errors import SpecError

        raise SpecError(f"name the task with ?index={index}, not in the path")
    return job_id


def _states(text: str | None) -> list[str] | None:
    if not text:
        return None
    names = [s.strip().upper() for s in text.split(",") if s.strip()]
    valid = {s.value for s in JobState}
    for name in names:
        if name not in valid:
            from hyperbatch.core.errors import SpecError

            raise SpecError(f"unknown state '{name}': use {', '.join(sorted(valid))}")
    return names

"""The HTTP API: one powertools resolver that the local daemon serves and Lambda runs.

Every route goes through `authorize`, which turns the request into a Caller
(local: bearer token; AWS: the IAM principal API Gateway verified) or refuses it.

Bad input is refused with one message that says what to fix and changes nothing: 400 for a
request that breaks a rule (the message starts with the field, as in `env: ...`; every bound is
hyperbatch.core.limits'), 413 for a body over 10 MiB, 404/409 for a job that is not there or not
in a state that allows the request; 507 when the store's disk is full. A 500 is a bug.
"""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import unquote
from typing import TYPE_CHECKING, Annotated, Any, Callable, Iterable

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, ValidationInfo,
                      create_model, field_validator)

from hyperbatch import __version__
from hyperbatch.core import limits, options
from hyperbatch.core.errors import PBSE_IVALREQ, PBSE_NOSUP, PBSE_UNKJOBID, HyperError, NotFound, PayloadTooLarge, SpecError
from hyperbatch.core.ids import JobRef, parse_job_ref
from hyperbatch.core.ports import FileBucket
from hyperbatch.core.views import view
from hyperbatch.services.scheduler import Caller, Scheduler
from hyperbatch.core.states import JobState
from hyperbatch.support.sessions import Sessions
from hyperbatch.web import routes as dashboard

log = logging.getLogger("hyperbatch.api")

MAX_PAGE = 1000
MAX_UPLOAD_FILES = 1000  # files one upload may name (a directory's tree counts file by file)
NO_BUCKET = "this host keeps no job files: local mode reads stage-in files where they are and writes outputs to the submit directory"


def _option_model(name: str, doc: str, option_fields: Iterable[str], **fields: Any) -> type[BaseModel]:
    """A request model whose option fields are the option table's (core/options.FIELDS): each takes
    its canonical JSON value or PBS text, read by the table's own parser; `fields` are the others."""
    bounds = {"priority": (limits.PRIORITY_MIN, limits.PRIORITY_MAX), "max_attempts": (1, limits.MAX_ATTEMPTS)}
    names = tuple(option_fields)
    for key in names:
        spec = options.FIELDS[key]
        kind = Annotated[spec.kind, Field(ge=bounds[key][0], le=bounds[key][1])] if key in bounds else spec.kind
        fields[key] = (kind | None, Field(None, description=spec.help, examples=list(spec.examples) or None))

    def check(cls, value: Any, info: ValidationInfo) -> Any:
        return None if value is None else options.check_field(info.field_name or "", value)

    return create_model(
        name,
        __config__=ConfigDict(extra="forbid"),
        __doc__=doc,
        __validators__={"check_options": field_validator(*names, mode="before")(check)},
        **fields,
    )


def _job_request_model() -> type[BaseModel]:
    """One job: a script (its #PBS/#HYPER header is read) or a command, and the option fields of
    the option table, which win over the header. Every bound is hyperbatch.core.limits': what a
    worker could not run (a NUL byte, a variable name with '=', a walltime past a year) is refused
    here, not found out by the worker."""
    return _option_model(
        "JobRequest",
        "One job: a script or a command, and options (the option table's fields) that win over the script's header.",
        options.FIELDS,
        script=(Annotated[str, AfterValidator(limits.check_script)] | None,
                Field(None, json_schema_extra={"minLength": 1, "maxLength": limits.MAX_SCRIPT_BYTES})),
        script_name=(Annotated[str, AfterValidator(limits.no_nul)] | None,
                     Field(None, min_length=1, max_length=limits.MAX_SCRIPT_NAME_CHARS)),
        command=(Annotated[list[str], AfterValidator(limits.check_command)] | None,
                 Field(None, json_schema_extra={"minItems": 1, "maxItems": limits.MAX_ARGS})),
        workdir=(Annotated[str, AfterValidator(limits.check_workdir)] | None,
                 Field(None, min_length=1, max_length=limits.MAX_PATH_BYTES, description="submit directory: PBS_O_WORKDIR")),
        directive_prefix=(str | None, Field(None, max_length=32,
                                            description="directive prefix instead of #PBS/#HYPER ('' reads none; qsub -C)")),
    )


if TYPE_CHECKING:  # what a checker can follow; the models themselves are built from the option table
    JobRequest = BaseModel
    AlterRequest = BaseModel
else:
    JobRequest = _job_request_model()
    # qalter: the attributes of a job that has not started (options.ALTERABLE); absent fields stay as they are.
    AlterRequest = _option_model("AlterRequest", "qalter: the attributes to change of a job that has not started.",
                                 options.ALTERABLE)


class SignalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signal: str = Field(min_length=1, max_length=32, examples=["SIGUSR1", "USR1", "10"])


class MoveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queue: str = Field(min_length=1, max_length=limits.MAX_REF_CHARS)


class UploadRequest(BaseModel):
    """The relative paths of the files `qsub` is about to upload for a job's stage-in."""

    model_config = ConfigDict(extra="forbid")
    files: list[Annotated[str, AfterValidator(limits.no_nul)]] = Field(
        min_length=1, max_length=MAX_UPLOAD_FILES, examples=[["in.txt", "data/a.csv"]])


class BatchRequest(BaseModel):
    """Up to 1,000 jobs; `script` (and `script_name`) is the script of every job that gives neither a
    script nor a command, sent once: 1,000 jobs of one 8 KB script would otherwise be an 8 MB request,
    over Lambda's 6 MB."""

    model_config = ConfigDict(extra="forbid")
    jobs: list[JobRequest] = Field(min_length=1, max_length=limits.MAX_BATCH_JOBS)
    script: Annotated[str, AfterValidator(limits.check_script)] | None = Field(
        None, json_schema_extra={"minLength": 1, "maxLength": limits.MAX_SCRIPT_BYTES})
    script_name: Annotated[str, AfterValidator(limits.no_nul)] | None = Field(
        None, min_length=1, max_length=limits.MAX_SCRIPT_NAME_CHARS)

    def requests(self) -> list[dict]:
        out = [job.model_dump(exclude_none=True) for job in self.jobs]
        if self.script is not None:
            shared = {"script": self.script} | ({"script_name": self.script_name} if self.script_name else {})
            out = [shared | r if "script" not in r and "command" not in r else r for r in out]
        return out


def read_json_body(event: Any) -> Any:
    """The request body as JSON, within the limits of hyperbatch.core.limits (413 for size, 400 for the rest)."""
    try:
        text = event.decoded_body or ""
    except ValueError:  # base64 that is not, or bytes that are not UTF-8
        raise SpecError("the body must be JSON (UTF-8 text)") from None
    if len(text.encode("utf-8", "surrogatepass")) > limits.MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the request body is over {limits.MAX_BODY_BYTES // (1024 * 1024)} MiB")
    deep = SpecError(f"the body nests arrays and objects more than {limits.MAX_JSON_DEPTH} deep")
    try:
        data = json.loads(text)
    except RecursionError:
        raise deep from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"the body must be JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError:  # Python reads integers of at most 4300 digits
        raise SpecError("the body holds a number too long to read") from None
    if limits.nests_deeper(data):
        raise deep
    return data


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
    elif err.get("type") == "string_too_short" and (err.get("ctx") or {}).get("min_length") == 1:
        msg = "must not be empty"
    if not loc or msg.startswith((f"{loc[-1]} ", f"{loc[-1]}:")):  # the rule's message names the field already
        return f"{'.'.join(loc[:-1])}: {msg}" if loc[:-1] else msg
    return f"{'.'.join(loc)}: {msg}"


def build_app(
    scheduler: Scheduler,
    authorize: Callable[[dict], Caller | None],
    workers: Callable[[], dict[tuple[str, str], int]],
    unauthenticated_status: int = 401,
    status: Callable[[], dict] | None = None,
    nodes: Callable[[], list[dict]] | None = None,
    files: FileBucket | None = None,
    sessions: Sessions | None = None,
) -> APIGatewayHttpResolver:
    """`unauthenticated_status`: what a request that `authorize` refuses gets — 401 locally (bad bearer
    token); 403 on AWS, as API Gateway's IAM authorizer answers an unsigned request. `status`: fields
    GET /queues adds (local mode: `parked_events`, the events whose handling failed every try). `nodes`
    lists the workers (GET /nodes, pbsnodes: rows of id, region, queue, definition, started_at); without
    it the workers are found from the running jobs. `files`: the deployment's files bucket (AWS), for
    stage-in uploads and a job's files (POST /uploads, GET /jobs/ID/files). `sessions`: local mode's
    dashboard sign-ins (hyperbatch.web); the dashboard's pages are served either way."""
    app = APIGatewayHttpResolver(enable_validation=True)
    refused = "Unauthorized" if unauthenticated_status == 401 else "Forbidden"

    def caller() -> Caller:
        return app.context["caller"]

    def auth_middleware(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
        path = app.current_event.path
        if dashboard.is_public(path):
            return next_middleware(app)
        who = authorize(app.current_event.raw_event)
        if who is None:
            if dashboard.is_page(path):
                return dashboard.refused_page(sessions, unauthenticated_status)
            return error(unauthenticated_status, refused, "missing or invalid credentials")
        app.append_context(caller=who)
        return next_middleware(app)

    app.use(middlewares=[auth_middleware])

    @app.exception_handler(HyperError)
    def _hyper_error(exc: HyperError) -> Response:
        if dashboard.is_page(app.current_event.path):
            return dashboard.problem_page(str(exc), exc.status)
        return error(exc.status, exc.code, str(exc), exc.pbs_errno, exc.job_id)

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response:
        return error(400, "ValidationError", describe_validation(list(exc.errors())))

    @app.exception_handler(UnicodeDecodeError)
    def _not_text(exc: UnicodeDecodeError) -> Response:
        # A body powertools reads for a route's model (qalter, qsig, qmove) that is not UTF-8.
        return error(400, "ValidationError", "the body must be JSON (UTF-8 text)")

    @app.not_found
    def _no_route(exc: NotFoundError) -> Response:
        return error(404, "NotFound", f"no route {app.current_event.http_method} {app.current_event.path}")

    @app.exception_handler(Exception)
    def _internal(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error(500, "InternalError", f"{type(exc).__name__}: {exc}")

    @app.post("/jobs", summary="Submit one job, or a batch of up to 1,000 as {'jobs': [...]}")
    def submit():
        raw = read_json_body(app.current_event)
        if not isinstance(raw, dict):
            raise SpecError('the body must be a JSON object: one job, or a batch as {"jobs": [...]}')
        # Pick the shape by its key, so errors speak of the body that was meant.
        shape = BatchRequest if "jobs" in raw else JobRequest
        try:
            body = shape.model_validate(raw)
        except ValidationError as exc:
            return error(400, "ValidationError", describe_validation(exc.errors()))
        requests = body.requests() if isinstance(body, BatchRequest) else [body.model_dump(exclude_none=True)]
        docs = scheduler.submit(requests, caller())
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
        offset: Annotated[int, Query(ge=0, le=limits.MAX_OFFSET)] = 0,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> dict:
        rows, nxt = on_job(job_id, lambda ref: scheduler.tasks(_whole(ref), caller(), offset, limit))
        return {"tasks": rows, "next": nxt}

    @app.delete("/jobs/<job_id>", summary="Cancel a job, an array, or one task (ID[INDEX], or ?index=N)")
    def cancel(job_id: str, index: Annotated[int | None, Query(ge=0, le=limits.MAX_OFFSET)] = None) -> dict:
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

    @app.get("/jobs/<job_id>/log", summary="stdout or stderr from a byte offset (poll for live output)",
             description="`data` is base64: the bytes exactly as the job wrote them (output need not be text). "
                         "`offset` is the byte offset to ask for next; `final` says no more output will come; "
                         "`state` is the job's (or task's) state.")
    def read_log(
        job_id: str,
        stream: Annotated[str, Query(pattern="^(stdout|stderr)$")] = "stdout",
        offset: Annotated[int, Query(ge=0, le=limits.MAX_OFFSET)] = 0,
        index: Annotated[int | None, Query(ge=0, le=limits.MAX_OFFSET)] = None,
    ) -> dict:
        chunk = on_job(job_id, lambda ref: scheduler.read_log(ref.seq, caller(), stream, offset, _index(ref, index)))
        return {**chunk, "data": base64.b64encode(chunk["data"]).decode("ascii"), "encoding": "base64"}

    @app.post("/uploads", summary="PUT URLs for files qsub uploads for a job's stage-in (AWS)",
              description="The files go under the caller's own prefix; a job names them by the s3:// URIs "
                          "under `prefix`, and is accepted only once they are there.")
    def upload(body: UploadRequest):
        if files is None:
            raise NotFound(NO_BUCKET, pbs_errno=PBSE_NOSUP)
        answer = files.upload(caller().name, body.files)
        return Response(201, content_types.APPLICATION_JSON, json.dumps(answer))

    @app.get("/jobs/<job_id>/files", summary="The files a job left (stdout, stderr, stage-out) with GET URLs (AWS)")
    def job_files(job_id: str) -> dict:
        if files is None:
            raise NotFound(NO_BUCKET, pbs_errno=PBSE_NOSUP)
        doc = on_job(job_id, lambda ref: scheduler.get(_whole(ref), caller()))  # the owner's (or an admin's) only
        return {"job": view(doc)["id"], "files": files.job_files(doc["id"])}

    @app.get("/queues", summary="Jobs per state, backlog and workers per region, for each queue")
    def queues() -> dict:
        return {"server": scheduler.server, "queues": scheduler.queues(workers()),
                **(status() if status is not None else {})}

    @app.get("/nodes", summary="The workers, as PBS nodes (pbsnodes)")
    def list_nodes() -> dict:
        return {"server": scheduler.server, "nodes": scheduler.nodes(nodes() if nodes is not None else None)}

    @app.get("/health", summary="Liveness")
    def health() -> dict:
        return {"status": "ok", "version": __version__, "server": scheduler.server}

    @app.get("/openapi.json", include_in_schema=False)
    def openapi():
        return Response(200, content_types.APPLICATION_JSON, json.dumps(openapi_document(app)))

    dashboard.register(app, scheduler, caller, workers, nodes, sessions)
    app.enable_swagger(path="/swagger", title="HyperBatch", version=__version__)
    return app


def openapi_document(app: APIGatewayHttpResolver) -> dict:
    """Powertools' description of the routes, plus the body of POST /jobs: `submit` reads that body
    itself (its size and depth first, then the shape its keys name), so powertools cannot see it."""
    doc = json.loads(app.get_openapi_json_schema(title="HyperBatch"))
    schema = TypeAdapter(JobRequest | BatchRequest).json_schema(ref_template="#/components/schemas/{model}")
    doc.setdefault("components", {}).setdefault("schemas", {}).update(schema.pop("$defs", {}))
    doc["paths"]["/jobs"]["post"]["requestBody"] = {
        "required": True, "content": {"application/json": {"schema": schema}},
    }
    return doc



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

"""The HTTP API: one powertools resolver that the local daemon serves and Lambda runs.

Every route goes through `authorize`, which turns the request into a Caller
(local: bearer token; AWS: the IAM principal API Gateway verified) or refuses it.

Bad input is refused with one message that says what to fix and changes nothing: 400 for a
request that breaks a rule (the message starts with the field, as in `env: ...`; every bound is
hyperbatch.core.limits'), 413 for a body over 10 MiB, 404/409 for a job that is not there or not
in a state that allows the request; 507 when the store's disk is full. A 500 is a bug.

GET /openapi.json describes every route (`openapi_document`: the request models here, the answers of
hyperbatch.core.responses, the platform's sign-in) and GET /swagger is Swagger UI over it, served
whole by the API: no CDN.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
from pathlib import Path
from urllib.parse import unquote
from typing import TYPE_CHECKING, Annotated, Any, Callable, Iterable, Literal, Optional

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi import swagger_ui
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError,
                      ValidationInfo, create_model, field_validator)

from hyperbatch import __version__
from hyperbatch.core import bucket, dependencies, limits, options, responses, workflows
from hyperbatch.core.errors import PBSE_IVALREQ, PBSE_NOSUP, PBSE_UNKJOBID, HyperError, NotFound, PayloadTooLarge, SpecError
from hyperbatch.core.ids import JobRef, parse_job_ref
from hyperbatch.core.ports import FileBucket
from hyperbatch.core.views import view
from hyperbatch.services import workflows as workflow_service
from hyperbatch.services.scheduler import Caller, Scheduler
from hyperbatch.core.states import JobState
from hyperbatch.support.sessions import COOKIE as SESSION_COOKIE, Sessions
from hyperbatch.web import routes as dashboard

log = logging.getLogger("hyperbatch.api")

LOCAL, AWS = "local", "aws"  # build_app's platforms: how a caller proves who it is
SECURITY_SCHEMES: dict[str, dict[str, dict[str, Any]]] = {
    LOCAL: {
        "bearerAuth": {"type": "http", "scheme": "bearer",
                       "description": "the token the daemon writes to $HYPERBATCH_HOME/token (mode 0600)"},
        "sessionCookie": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                          "description": "the dashboard's session: set when you sign in there with the token"},
    },
    AWS: {
        "sigv4": {"type": "apiKey", "in": "header", "name": "Authorization",
                  "x-amazon-apigateway-authtype": "awsSigv4",
                  "description": "AWS Signature Version 4 with your IAM credentials (service execute-api); "
                                 "the CLI signs with your AWS profile"},
    },
}
DESCRIPTION = {
    LOCAL: "HyperBatch's job API in local mode: on 127.0.0.1, for the holder of the daemon's token.",
    AWS: "HyperBatch's job API on AWS: API Gateway with IAM authorization on every route.",
}
ERRORS = {  # what each error status means, for the document (the body is always responses.ErrorBody)
    400: "the request breaks a rule: the message names the field and says what to fix",
    401: "missing or invalid credentials (the bearer token, or the dashboard's session cookie)",
    403: "the request is not signed (SigV4), or not allowed to the caller",
    404: "no such job (PBS's Unknown Job Id), task or route",
    409: "the job's state does not allow the request",
    413: "the request body is over 10 MiB",
    500: "a bug: the message names the exception",
    507: "the store's disk is full",
}
SWAGGER_ASSETS = {  # served at /swagger/NAME: (content type, the file powertools bundles)
    "swagger-ui.js": ("text/javascript; charset=utf-8", "swagger-ui-bundle.min.js"),
    "swagger-ui.css": ("text/css; charset=utf-8", "swagger-ui.min.css"),
}
ASSET_MAX_AGE = 86400  # seconds a browser may keep the assets: they change only with powertools' pin

MAX_PAGE = 1000
NO_BUCKET = "this host keeps no job files: local mode reads stage-in files where they are and writes outputs to the submit directory"


def _option_model(name: str, doc: str, option_fields: Iterable[str], example: dict, **fields: Any) -> type[BaseModel]:
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
        __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [example]}),
        __doc__=doc,
        __validators__={"check_options": field_validator(*names, mode="before")(check)},
        **fields,
    )


JOB_EXAMPLE = {"script": "#!/bin/bash\n#PBS -N sweep\necho hello\n", "script_name": "run.sh", "queue": "batch",
               "resources": {"ncpus": 1, "mem": "1gb"}, "walltime": "01:00:00", "workdir": "/home/alice"}


def _job_request_model() -> type[BaseModel]:
    """One job: a script (its #PBS/#HYPER header is read) or a command, and the option fields of
    the option table, which win over the header. Every bound is hyperbatch.core.limits': what a
    worker could not run (a NUL byte, a variable name with '=', a walltime past a year) is refused
    here, not found out by the worker."""
    return _option_model(
        "JobRequest",
        "One job: a script or a command, and options (the option table's fields) that win over the script's header.",
        options.FIELDS,
        JOB_EXAMPLE,
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
                                 options.ALTERABLE, {"walltime": "02:00:00", "priority": 10})


class SignalRequest(BaseModel):
    """qsig: the signal, by name (with or without SIG) or number."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"signal": "SIGUSR1"}]})
    signal: str = Field(min_length=1, max_length=32, examples=["SIGUSR1", "USR1", "10"])


class MoveRequest(BaseModel):
    """qmove: the queue to move the job to."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"queue": "west"}]})
    queue: str = Field(min_length=1, max_length=limits.MAX_REF_CHARS)


UploadPath = Annotated[str, AfterValidator(limits.no_nul), Field(min_length=1, max_length=limits.MAX_PATH_BYTES)]
UploadUri = Annotated[str, AfterValidator(limits.no_nul), Field(min_length=1, max_length=2 * limits.MAX_PATH_BYTES)]
UPLOAD_EXAMPLE: dict[str, Any] = {"uri": "s3://hyperbatch-files/uploads/alice/0f3c/data/big.bin", "upload_id": "2~mY5Lq0r"}
UploadId = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z0-9._~=+/-]+$")]


class UploadFile(BaseModel):
    """A file qsub is about to upload, with its size: one of `bucket.MULTIPART_THRESHOLD` or more goes in parts."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"path": "data/big.bin", "size": 200000000}]})
    path: UploadPath
    size: int = Field(ge=0, le=bucket.MAX_OBJECT)


class UploadRequest(BaseModel):
    """The files (relative paths, or {path, size}) `qsub` is about to upload for a job's stage-in; `upload`:
    more files of one of the caller's uploads (its id), when one request cannot name them all."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"files": ["in.txt", {"path": "data/big.bin", "size": 200_000_000}]}]})
    files: list[UploadPath | UploadFile] = Field(
        min_length=1, max_length=bucket.MAX_UPLOAD_FILES,
        examples=[["in.txt", {"path": "data/big.bin", "size": 200_000_000}]])
    upload: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] | None = None


class PartsRequest(BaseModel):
    """UploadPart URLs for parts `first` .. `first` + `count` - 1 of a multipart upload of the caller's."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{**UPLOAD_EXAMPLE, "first": 1, "count": 100}]})
    uri: UploadUri
    upload_id: UploadId
    first: int = Field(1, ge=1, le=bucket.MAX_PARTS)
    count: int = Field(bucket.PART_PAGE, ge=1, le=bucket.PART_PAGE)


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"number": 1, "etag": '"9b2cf535f27731c974343645a3985328"'}]})
    number: int = Field(ge=1, le=bucket.MAX_PARTS)
    etag: str = Field(min_length=1, max_length=128)


class CompleteRequest(BaseModel):
    """A multipart upload of the caller's made one object of its parts (number and ETag each)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {**UPLOAD_EXAMPLE, "parts": [{"number": 1, "etag": '"9b2cf535f27731c974343645a3985328"'}]}]})
    uri: UploadUri
    upload_id: UploadId
    parts: list[Part] = Field(min_length=1, max_length=bucket.MAX_PARTS)


class AbortRequest(BaseModel):
    """A multipart upload of the caller's dropped with the parts it has."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [UPLOAD_EXAMPLE]})
    uri: UploadUri
    upload_id: UploadId


class BatchRequest(BaseModel):
    """Up to 1,000 jobs; `script` (and `script_name`) is the script of every job that gives neither a
    script nor a command, sent once: 1,000 jobs of one 8 KB script would otherwise be an 8 MB request,
    over Lambda's 6 MB."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "script": "#!/bin/bash\necho $PBS_JOBNAME\n", "jobs": [{"name": "a"}, {"name": "b", "priority": 5}]}]})
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


def _depends_on(value: Any) -> Any:
    """`depends_on`: a list of step names (afterok), or a map of step name to afterok, afterany or
    afternotok. Checked here in words, so a wrong shape is one line rather than a union's two."""
    if value is None:
        return None
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise ValueError("give a list of step names, as in [prepare]")
        return value
    if isinstance(value, dict):
        for step, kind in value.items():
            if kind not in dependencies.KINDS:
                raise ValueError(f"{step}: '{kind}' is not a dependency kind; use afterok, afterany or afternotok")
        return value
    raise ValueError("give a list of steps (afterok), or a map of step to afterok, afterany or afternotok")


def _workflow_models() -> type[BaseModel]:
    """A workflow file (hyperbatch.core.workflows), as `hyper workflow submit` sends it: the CLI has
    replaced each `script` path by the script's text and substituted `-v` variables. Its JSON schema
    is docs/workflow.schema.json."""
    step = _option_model(
        "WorkflowStep",
        "One step: a job request (a script or a command, and any option field) and the steps it depends on.",
        options.FIELDS, {"command": ["sh", "-c", "seq 1 100 > numbers"], "depends_on": ["prepare"]},
        script=(Annotated[str, AfterValidator(limits.check_script)] | None,
                Field(None, description="in the file: the script's path, relative to the file; "
                      "in the request: its text (its #PBS header is read; the step's keys win)")),
        script_name=(Annotated[str, AfterValidator(limits.no_nul)] | None,
                     Field(None, min_length=1, max_length=limits.MAX_SCRIPT_NAME_CHARS)),
        command=(Annotated[list[str], AfterValidator(limits.check_command)] | None,
                 Field(None, json_schema_extra={"minItems": 1, "maxItems": limits.MAX_ARGS})),
        depends_on=(Annotated[list[str] | dict[str, Literal["afterok", "afterany", "afternotok"]] | None,
                              BeforeValidator(_depends_on)],
                    Field(None, description="steps this one waits for: a list (afterok), or step -> afterok, "
                          "afterany or afternotok")),
    )
    defaults = _option_model("WorkflowDefaults", "Option fields every step takes unless it gives its own.",
                             options.FIELDS, {"queue": "batch", "walltime": "00:10:00"})

    def step_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str) or not workflows.STEP_RE.match(key):
                    raise ValueError(f"step name '{key}': use letters, digits, _ and - (at most 64), not starting with -")
        return value

    def name_rule(cls, value: Any) -> Any:
        try:
            return workflows.check_name(value) if isinstance(value, str) else value
        except SpecError as exc:
            raise ValueError(str(exc)) from None

    return create_model(
        "WorkflowRequest",
        __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [{
            "name": "sweep", "defaults": {"queue": "batch", "walltime": "00:10:00"},
            "jobs": {"prepare": {"command": ["sh", "-c", "seq 1 100 > numbers"]},
                     "square": {"script": "#!/bin/sh\necho $PBS_ARRAY_INDEX\n", "array": "1-100%10",
                                "depends_on": ["prepare"]}}}]}),
        __doc__="A workflow: a DAG of jobs, created all at once or not at all.",
        __validators__={"step_names": field_validator("jobs", mode="before")(step_names),
                        "name_rule": field_validator("name", mode="before")(name_rule)},
        name=(str, Field(pattern=workflows.NAME_PATTERN, examples=["sweep"],
                         description="the workflow's name: `hyper workflow status NAME` shows the newest of a name")),
        defaults=(Optional[defaults], None),  # type: ignore[arg-type,valid-type]
        jobs=(dict[Annotated[str, Field(pattern=workflows.STEP_PATTERN)], step],  # type: ignore[valid-type]
              Field(min_length=1, max_length=workflows.MAX_STEPS, description="step name -> step",
                    json_schema_extra={"additionalProperties": False})),  # a name off the pattern is no step
        workdir=(Annotated[str, AfterValidator(limits.check_workdir)] | None,
                 Field(None, min_length=1, max_length=limits.MAX_PATH_BYTES,
                       description="the steps' submit directory, PBS_O_WORKDIR (the CLI sends where it runs)")),
    )


if TYPE_CHECKING:
    WorkflowRequest = BaseModel
else:
    WorkflowRequest = _workflow_models()


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


def describe_field(errors: list[dict]) -> str:
    """As describe_validation, always naming the whole field path (`jobs.square.array: ...`): the CLI
    maps that path to the line of a workflow file."""
    text = describe_validation(errors)
    loc = [str(p) for p in errors[0].get("loc", ()) if p != "body"]
    whole, parent = ".".join(loc), ".".join(loc[:-1])
    if loc[:-1] and text.startswith(parent + ": ") and not text.startswith(whole + ":"):
        return f"{whole}: {text[len(parent) + 2:]}"
    return text


def build_app(
    scheduler: Scheduler,
    authorize: Callable[[dict], Caller | None],
    workers: Callable[[], dict[tuple[str, str], int]],
    platform: str = LOCAL,
    status: Callable[[], dict] | None = None,
    nodes: Callable[[], list[dict]] | None = None,
    files: FileBucket | None = None,
    sessions: Sessions | None = None,
) -> APIGatewayHttpResolver:
    """`platform` (LOCAL or AWS) says how callers prove who they are, for the OpenAPI document's security
    schemes and for what a request that `authorize` refuses gets: 401 locally (bad bearer token or
    session cookie); 403 on AWS, as API Gateway's IAM authorizer answers an unsigned request. `status`: fields
    GET /queues adds (local mode: `parked_events`, the events whose handling failed every try). `nodes`
    lists the workers (GET /nodes, pbsnodes: rows of id, region, queue, definition, started_at); without
    it the workers are found from the running jobs. `files`: the deployment's files bucket (AWS), for
    stage-in uploads and a job's files (POST /uploads, GET /jobs/ID/files). `sessions`: local mode's
    dashboard sign-ins (hyperbatch.web); the dashboard's pages are served either way."""
    app = APIGatewayHttpResolver(enable_validation=True)
    unauthenticated_status = 401 if platform == LOCAL else 403
    refused = "Unauthorized" if unauthenticated_status == 401 else "Forbidden"

    def answers(model: Any, *errors: int, status: int = 200, description: str = "OK") -> dict[int, Any]:
        """A route's `responses`: its 2xx body, the errors it may answer and those every route may."""
        codes = sorted({*errors, 400, unauthenticated_status, 500})
        return {status: {"description": description, "content": {content_types.APPLICATION_JSON: {"model": model}}},
                **{code: {"description": ERRORS[code],
                          "content": {content_types.APPLICATION_JSON: {"model": responses.ErrorBody}}}
                   for code in codes}}

    job_read = (404,)  # a job that is not there (or not the caller's: PBS's Unknown Job Id)
    job_write = (404, 409, 507)  # ... or in a state that does not allow the request; a full disk

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
        if dashboard.is_page(app.current_event.path):
            return dashboard.problem_page(f"no page {app.current_event.path}", 404)
        return error(404, "NotFound", f"no route {app.current_event.http_method} {app.current_event.path}")

    @app.exception_handler(Exception)
    def _internal(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error(500, "InternalError", f"{type(exc).__name__}: {exc}")

    @app.post("/jobs", summary="Submit one job, or a batch of up to 1,000 as {'jobs': [...]}",
              responses=answers(responses.JobView | responses.JobBatch, 404, 409, 413, 507, status=201,
                                description="the job (or the batch's jobs, in order), as submitted"))
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

    @app.get("/jobs", summary="List jobs newest first; the caller's own unless owner is given",
             responses=answers(responses.JobPage))
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

    @app.get("/jobs/<job_id>", summary="One job, or one array task (ID[INDEX])",
             responses=answers(responses.JobView | responses.TaskView, *job_read))
    def get_job(job_id: str) -> dict:
        def look(ref: JobRef) -> dict:
            if ref.index is not None:
                return scheduler.task(ref.seq, ref.index, caller())
            return view(scheduler.get(ref.seq, caller()))

        return on_job(job_id, look)

    @app.get("/jobs/<job_id>/tasks", summary="An array's tasks with their states",
             responses=answers(responses.TaskPage, *job_read, 409))
    def get_tasks(
        job_id: str,
        offset: Annotated[int, Query(ge=0, le=limits.MAX_OFFSET)] = 0,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> dict:
        rows, nxt = on_job(job_id, lambda ref: scheduler.tasks(_whole(ref), caller(), offset, limit))
        return {"tasks": rows, "next": nxt}

    @app.delete("/jobs/<job_id>", summary="Cancel a job, an array, or one task (ID[INDEX], or ?index=N)",
                responses=answers(responses.JobView, *job_write))
    def cancel(job_id: str, index: Annotated[int | None, Query(ge=0, le=limits.MAX_OFFSET)] = None) -> dict:
        return on_job(job_id, lambda ref: view(scheduler.cancel(ref.seq, caller(), _index(ref, index))))

    @app.post("/jobs/<job_id>/hold", summary="Hold a queued or waiting job",
                responses=answers(responses.JobView, *job_write))
    def hold(job_id: str) -> dict:
        return on_job(job_id, lambda ref: view(scheduler.hold(_whole(ref), caller())))

    @app.post("/jobs/<job_id>/release", summary="Release a held job",
                responses=answers(responses.JobView, *job_write))
    def release(job_id: str) -> dict:
        return on_job(job_id, lambda ref: view(scheduler.release(_whole(ref), caller())))

    @app.patch("/jobs/<job_id>", summary="Alter a job that has not started (qalter)",
                responses=answers(responses.JobView, *job_write, 413))
    def alter(job_id: str, body: AlterRequest) -> dict:
        changes = body.model_dump(exclude_none=True)
        return on_job(job_id, lambda ref: view(scheduler.alter(_whole(ref), changes, caller())))

    @app.post("/jobs/<job_id>/rerun", summary="Re-run a running job, or an array's failed and cancelled tasks",
              description="A running job stays RUNNING (substate 60) until its worker has killed the run, then "
                          "goes QUEUED at a new attempt. `force` (qrerun -W force) re-runs a job submitted "
                          "with -r n too.",
              responses=answers(responses.JobView, *job_write))
    def rerun(job_id: str, force: Annotated[bool, Query()] = False) -> dict:
        return on_job(job_id, lambda ref: view(scheduler.rerun(ref.seq, caller(), ref.index, force=force)))

    @app.post("/jobs/<job_id>/signal", summary="Send a signal to a running job or array task (qsig)",
                responses=answers(responses.JobView, *job_write, 413))
    def signal(job_id: str, body: SignalRequest) -> dict:
        return on_job(job_id, lambda ref: view(scheduler.signal(ref.seq, body.signal, caller(), ref.index)))

    @app.post("/jobs/<job_id>/move", summary="Move a job that has not started to another queue (qmove)",
                responses=answers(responses.JobView, *job_write, 413))
    def move(job_id: str, body: MoveRequest) -> dict:
        return on_job(job_id, lambda ref: view(scheduler.move(_whole(ref), body.queue, caller())))

    @app.get("/jobs/<job_id>/log", summary="stdout or stderr from a byte offset (poll for live output)",
             description="`data` is base64: the bytes exactly as the job wrote them (output need not be text). "
                         "`offset` is the byte offset to ask for next; `final` says no more output will come; "
                         "`state` is the job's (or task's) state.",
             responses=answers(responses.LogChunk, *job_read))
    def read_log(
        job_id: str,
        stream: Annotated[str, Query(pattern="^(stdout|stderr)$")] = "stdout",
        offset: Annotated[int, Query(ge=0, le=limits.MAX_OFFSET)] = 0,
        index: Annotated[int | None, Query(ge=0, le=limits.MAX_OFFSET)] = None,
    ) -> dict:
        chunk = on_job(job_id, lambda ref: scheduler.read_log(ref.seq, caller(), stream, offset, _index(ref, index)))
        return {**chunk, "data": base64.b64encode(chunk["data"]).decode("ascii"), "encoding": "base64"}

    def bucket_files() -> FileBucket:
        if files is None:
            raise NotFound(NO_BUCKET, pbs_errno=PBSE_NOSUP)
        return files

    @app.post("/uploads", summary="PUT URLs for files qsub uploads for a job's stage-in (AWS)",
              description="The files go under the caller's own prefix; a job names them by the s3:// URIs "
                          "under `prefix`, and is accepted only once they are there. A file given with a size "
                          "of `multipart threshold` or more gets a multipart upload instead of a URL "
                          "(POST /uploads/parts, /uploads/complete, /uploads/abort).",
              responses=answers(responses.UploadUrls, 404, 413, status=201,
                                description="a PUT URL for each file, or a multipart upload for each large one "
                                            "(404 where the host keeps no job files)"))
    def upload(body: UploadRequest):
        listed: list[tuple[str, int | None]] = [(f, None) if isinstance(f, str) else (f.path, f.size) for f in body.files]
        answer = bucket_files().upload(caller().name, listed, body.upload)
        return Response(201, content_types.APPLICATION_JSON, json.dumps(answer))

    @app.post("/uploads/parts", summary="UploadPart URLs of a multipart upload of the caller's, a page at a time (AWS)",
              responses=answers(responses.PartUrls, 404))
    def upload_parts(body: PartsRequest) -> dict:
        return {"urls": bucket_files().part_urls(caller().name, body.uri, body.upload_id, body.first, body.count)}

    @app.post("/uploads/complete", summary="A multipart upload of the caller's made one object of its parts (AWS)",
              responses=answers(responses.UploadDone, 404))
    def upload_complete(body: CompleteRequest) -> dict:
        bucket_files().complete(caller().name, body.uri, body.upload_id, [(p.number, p.etag) for p in body.parts])
        return {"uri": body.uri}

    @app.post("/uploads/abort", summary="A multipart upload of the caller's dropped with its parts (AWS)",
              responses=answers(responses.UploadDone, 404))
    def upload_abort(body: AbortRequest) -> dict:
        bucket_files().abort(caller().name, body.uri, body.upload_id)
        return {"uri": body.uri}

    @app.get("/jobs/<job_id>/files", summary="The files a job left (stdout, stderr, stage-out) with GET URLs (AWS)",
             responses=answers(responses.JobFiles, *job_read))
    def job_files(job_id: str) -> dict:
        kept = bucket_files()
        doc = on_job(job_id, lambda ref: scheduler.get(_whole(ref), caller()))  # the owner's (or an admin's) only
        return {"job": view(doc)["id"], "files": kept.job_files(doc["id"])}

    @app.post("/workflows", summary="Submit a workflow: a DAG of jobs, all created or none",
              description="The body is a workflow file as `hyper workflow submit` sends it (docs/workflow.schema.json); "
                          "the answer is the workflow as GET /workflows/NAME shows it.",
              responses=answers(responses.WorkflowStatus, 404, status=201, description="the workflow, each step with its job"))
    def submit_workflow():
        raw = read_json_body(app.current_event)
        try:
            body = WorkflowRequest.model_validate(raw)
        except ValidationError as exc:
            return error(400, "ValidationError", describe_field(exc.errors()))
        shown = workflow_service.submit(scheduler, body.model_dump(exclude_none=True), caller())
        return Response(201, content_types.APPLICATION_JSON, json.dumps(shown))

    @app.get("/workflows", summary="The caller's workflows, newest first (the newest of each name)",
             responses=answers(responses.Workflows))
    def workflow_list() -> dict:
        return workflow_service.listing(scheduler, caller())

    @app.get("/workflows/<name>", summary="The caller's newest workflow of that name, each step with its job's state",
             responses=answers(responses.WorkflowStatus, 404))
    def workflow_status(name: str) -> dict:
        return workflow_service.status(scheduler, unquote(name), caller())

    @app.get("/queues", summary="Jobs per state, backlog and workers per region, for each queue",
             responses=answers(responses.Queues))
    def queues() -> dict:
        return {"server": scheduler.server, "queues": scheduler.queues(workers()),
                **(status() if status is not None else {})}

    @app.get("/nodes", summary="The workers, as PBS nodes (pbsnodes)", responses=answers(responses.Nodes))
    def list_nodes() -> dict:
        return {"server": scheduler.server, "nodes": scheduler.nodes(nodes() if nodes is not None else None)}

    @app.get("/health", summary="Liveness", responses=answers(responses.Health))
    def health() -> dict:
        return {"status": "ok", "version": __version__, "server": scheduler.server}

    document = functools.cache(lambda: json.dumps(openapi_document(app, platform)))  # the routes are all in

    @app.get("/openapi.json", include_in_schema=False)
    def openapi():
        return Response(200, content_types.APPLICATION_JSON, document())

    @app.get("/swagger", include_in_schema=False)
    def swagger():
        return Response(200, "text/html; charset=utf-8", swagger_page(document()))

    for asset in SWAGGER_ASSETS:
        _serve_asset(app, asset)

    dashboard.register(app, scheduler, caller, workers, nodes, sessions)
    return app


def openapi_document(app: APIGatewayHttpResolver, platform: str = LOCAL) -> dict:
    """Powertools' description of the routes, with what it cannot know: the body of POST /jobs (`submit`
    reads it itself: its size and depth first, then the shape its keys name), how callers sign in on
    `platform` (every route, /health too, requires it), and 400 where powertools says 422 (the API
    answers a request that breaks its models with 400 and the error body)."""
    doc = json.loads(app.get_openapi_json_schema(
        title="HyperBatch", version=__version__, description=DESCRIPTION[platform]))
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schema = TypeAdapter(JobRequest | BatchRequest).json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    doc["paths"]["/jobs"]["post"]["requestBody"] = {
        "required": True, "content": {"application/json": {"schema": schema, "examples": {
            "one job": {"value": JOB_EXAMPLE},
            "a batch": {"value": BatchRequest.model_config["json_schema_extra"]["examples"][0]},  # type: ignore[index]
        }}},
    }
    flow = WorkflowRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    doc["components"]["schemas"].update(flow.pop("$defs", {}))
    doc["components"]["schemas"]["WorkflowRequest"] = flow
    doc["paths"]["/workflows"]["post"]["requestBody"] = {
        "required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WorkflowRequest"}}},
    }
    for item in doc["paths"].values():
        for operation in item.values():
            operation["responses"].pop("422", None)
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):  # nothing refers to them
        schemas.pop(name, None)
    doc["components"]["securitySchemes"] = SECURITY_SCHEMES[platform]
    doc["security"] = [{name: []} for name in SECURITY_SCHEMES[platform]]  # any one of them
    return doc


def swagger_page(document: str) -> str:
    """Swagger UI over the document, its script and style served by the API itself (no CDN: local
    mode runs on machines without internet). The paths are relative, so the page works under any
    prefix; the browser sends the dashboard's session cookie with every request the page makes."""
    spec = document.replace("</", "<\\/")  # no `</script>` inside the script
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>HyperBatch API</title>
<link rel="stylesheet" type="text/css" href="swagger/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="swagger/swagger-ui.js"></script>
<script>
SwaggerUIBundle({{dom_id: "#swagger-ui", spec: {spec}, deepLinking: true, withCredentials: true,
                 presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"}});
</script>
</body>
</html>
"""


def _serve_asset(app: APIGatewayHttpResolver, asset: str) -> None:
    content_type, source = SWAGGER_ASSETS[asset]

    @app.get(f"/swagger/{asset}", include_in_schema=False)
    def serve():
        return Response(200, content_type, _asset_text(source),
                        headers={"Cache-Control": f"public, max-age={ASSET_MAX_AGE}"})


@functools.cache
def _asset_text(source: str) -> str:
    """Swagger UI's bundled file, as aws-lambda-powertools (pinned) ships it: read once per process."""
    return (Path(swagger_ui.__file__).parent / source).read_text(encoding="utf-8")



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

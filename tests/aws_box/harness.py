"""AWS in a box: the Lambda entry points and the worker agent, end to end, on moto in this process.

`Box` stands up what the control-plane stack deploys (bootstrap: table with
stream, queues with DLQs, job log groups; Batch job queues and job
definitions per compute region), sets the environment the stack gives its
functions (stacks/contract.py, with the account and URL suffix resolved),
and then plays the parts AWS would play around our code:

- API Gateway: `api(method, path, principal=...)` builds an HTTP API
  payload-2.0 event (IAM authorizer context when there is a principal) and
  calls `lambdas.api.handler`.
- The stream's event source mapping: a thread reads the table's stream
  shards and calls `lambdas.release.handler` with batches of up to 100
  records, re-delivering from the first failed record
  (report_batch_item_failures), as Lambda does; a batch still failing after
  the mapping's retries is parked on the release-failures queue as the
  mapping's on-failure destination message (`DDBStreamBatchInfo`). Work is
  sent by the release function from the stream, so a test that expects work
  to run must have the stream delivered (`start_stream`, or `deliver`).
- EventBridge: `scale()` and `reconcile()` call the scheduled handlers (`scale()`
  settles a running stream first, as a minute's wait would). The default bus
  has the stack's notifier rule (`NOTICE_RULE`, no target: tests that want a
  notice delivered invoke the notifier with it) and no rule of a user's, so
  job state changes are not put until a test adds one (and the release
  function looks again: hyperbatch.adapters.aws.notices.RuleWatch).
- The files bucket: created as the stack names it; the API puts scripts
  over a few KB there and workers get them (moto S3).
- AWS Batch: moto records the scaler's SubmitJob calls but runs nothing;
  `start_submitted_workers()` starts one agent thread per submitted worker,
  `start_worker()` one more. A worker's Batch job (moto's, when its name is
  one) says RUNNING while its agent serves and SUCCEEDED (FAILED after a
  crash) once it returns, as Batch would; `set_batch_status` changes it (a
  container that stopped). moto's own status progression is off. Agents are the real `hyperbatch.services.agent.Agent`
  from `worker_from_environment` with a worker's environment, serving in
  threads (short idle timeout, short long poll).

moto is not thread-safe, and real DynamoDB and SQS apply each request
atomically: every moto request is served under one lock (a long poll
releases it between its tries). `Meter` counts every AWS call made through
botocore by service, operation and actor (api, release, scaler, reconciler,
worker, harness), with its parameters and response, for bench/aws_cost.py.

Importable without pytest (bench/aws_cost.py uses it).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.core.botocore_stubber import BotocoreStubber  # noqa: E402

from hyperbatch import config as config_models  # noqa: E402
from hyperbatch.core import names as physical_names  # noqa: E402
from tests import aws_bootstrap as bootstrap
from hyperbatch.adapters.aws import clients  # noqa: E402
from hyperbatch.adapters.aws.stream import lambda_record  # noqa: E402
from tests import polling  # noqa: E402
from tests.streams import STREAMS_ENDPOINT, StreamReader  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "configurations"
ACCOUNT = "123456789012"  # moto's account
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
ADMIN = f"arn:aws:sts::{ACCOUNT}:assumed-role/HyperBatchAdmin/ops"
FUNCTIONS = ("api", "release", "scaler", "reconciler")
NOTICE_RULE = "HyperBatch-notices"  # the stack's rule on the default bus that hands notices to the notifier
STREAM_BATCH = 100  # the release mapping's batch_size (stacks/control_plane.py)
STREAM_RETRIES = 5  # its retry_attempts
ECHO = os.environ.get("HYPER_BOX_ECHO") == "1"  # show what the functions print (logs, EMF)

_actor = threading.local()


def current_actor() -> str:
    """Who is calling AWS on this thread: a function's name, "worker", or "harness"."""
    found = getattr(_actor, "name", None)
    if found:
        return found
    return "harness" if threading.current_thread() is threading.main_thread() else "worker"


@contextlib.contextmanager
def acting_as(name: str):
    before = getattr(_actor, "name", None)
    _actor.name = name
    try:
        yield
    finally:
        _actor.name = before


# ---- moto, served one request at a time ---------------------------------------------------------

_moto_lock = threading.RLock()
_original_process = BotocoreStubber.process_request


def _serialized_process(self, request):
    target = (request.headers.get("X-Amz-Target") or b"")
    target = target.decode() if isinstance(target, bytes) else target
    if target == "AmazonSQS.ReceiveMessage" and request.body:
        body = json.loads(request.body)
        wait = int(body.get("WaitTimeSeconds") or 0)
        if wait > 0:
            # A long poll: try without waiting, under the lock, until a message comes or time is up.
            body["WaitTimeSeconds"] = 0
            request.body = json.dumps(body).encode()
            deadline = time.monotonic() + wait
            while True:
                with _moto_lock:
                    response = _original_process(self, request)
                if response is None or time.monotonic() >= deadline or _has_messages(response):
                    return response
                time.sleep(0.05)
    with _moto_lock:
        return _original_process(self, request)


def _has_messages(response) -> bool:
    status, _, body = response
    if status != 200:
        return True
    try:
        return bool(json.loads(body).get("Messages"))
    except ValueError:
        return True


class _SerializedApp:
    """moto's HTTP server application under the same lock as in-process requests, so that a process
    outside the test (an on-premises worker) reaches the box's AWS one request at a time. A long poll
    is tried without waiting, under the lock, until a message comes or time is up, as above."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        wait = 0
        if environ.get("HTTP_X_AMZ_TARGET") == "AmazonSQS.ReceiveMessage" and body:
            request = json.loads(body)
            wait = int(request.get("WaitTimeSeconds") or 0)
            request["WaitTimeSeconds"] = 0
            body = json.dumps(request).encode()
        deadline = time.monotonic() + wait
        while True:
            answer: dict = {}

            def started(status, headers, exc_info=None):
                answer.update(status=status, headers=headers)
                return lambda data: None

            with _moto_lock:
                chunks = b"".join(self.app({**environ, "wsgi.input": io.BytesIO(body),
                                            "CONTENT_LENGTH": str(len(body))}, started))
            if (not wait or time.monotonic() >= deadline or b'"Messages"' in chunks
                    or not answer["status"].startswith("200")):
                start_response(answer["status"], answer["headers"])
                return [chunks]
            time.sleep(0.05)


@contextlib.contextmanager
def moto_server():
    """moto's server on a free local port (its URL), serving the in-process mock's state: what moto's
    ThreadedMotoServer does, with every request taken under the box's lock."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, _SerializedApp(DomainDispatcherApplication(create_backend_app)),
                         threaded=True, request_handler=MotoRequestHandler)
    with _serving(server, "moto-server") as url:
        yield url


@contextlib.contextmanager
def http_api(box: "Box", principals: dict[str, str]):
    """The box's API over HTTP on a free local port (its URL), as API Gateway fronts the function: the
    PBS commands and `hyper` reach it as an AWS host. API Gateway verifies each request's SigV4
    signature and hands the function the signer's ARN; here the signer is the access key id the
    request names, looked up in `principals` (an unknown one gets no principal: 403)."""
    import re
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qsl, urlsplit

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else None
            key = re.search(r"Credential=([^/]+)/", self.headers.get("Authorization") or "")
            principal = principals.get(key.group(1)) if key else None
            event = api_event(self.command, parts.path, principal, body, dict(parse_qsl(parts.query)))
            response = box.invoke("api", event, request_bytes=length)
            data = (response.get("body") or "").encode()
            self.send_response(response["statusCode"])
            answered = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
            self.send_header("Content-Type", answered.get("content-type", "application/json"))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass

    with _serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler), "box-http-api") as url:
        yield url


@contextlib.contextmanager
def _serving(server: Any, name: str):
    """Serve `server` (bound to a free local port) on a thread of its own: its URL, until the block ends."""
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(10)


def s3_opener(moto_url: str) -> Callable[[Any], Any]:
    """What `hyperbatch.cli.files._open` becomes in the box: a request to a presigned S3 URL goes to
    moto's server (`moto_server`), with the URL's host in the Host header, by which moto finds the
    service and the bucket, as S3 itself would."""
    import urllib.request
    from urllib.parse import urlsplit

    base = urlsplit(moto_url)

    def open_(request):
        parts = urlsplit(request.full_url)
        local = urllib.request.Request(
            f"{base.scheme}://{base.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else ""),
            data=request.data, method=request.get_method(),
            headers={**dict(request.header_items()), "Host": parts.netloc},
        )
        return urllib.request.urlopen(local, timeout=60)

    return open_


# ---- metering -----------------------------------------------------------------------------------

@dataclass
class Call:
    actor: str
    service: str
    operation: str
    region: str
    params: dict
    response: dict | None = None
    error: str | None = None


class Meter:
    """Every AWS call through the clients it is attached to (botocore event hooks)."""

    def __init__(self):
        self.calls: list[Call] = []
        self._attached: set[int] = set()
        self._lock = threading.Lock()

    def attach(self, client) -> Any:
        if id(client) in self._attached:
            return client
        self._attached.add(id(client))
        region = client.meta.region_name

        def before(model, params, context, **_):
            call = Call(current_actor(), model.service_model.service_name, model.name, region, params)
            context["hb_call"] = call
            with self._lock:
                self.calls.append(call)

        def after(parsed, context, **_):
            call = context.get("hb_call")
            if call is not None:
                call.response = parsed
                call.error = (parsed or {}).get("Error", {}).get("Code")

        client.meta.events.register("before-parameter-build.*.*", before)
        client.meta.events.register("after-call.*.*", after)
        return client

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    def by_operation(self, actor: str | None = None) -> Counter:
        return Counter(f"{c.service}:{c.operation}" for c in self.calls if actor in (None, c.actor))


# ---- Lambda context -----------------------------------------------------------------------------

class FakeContext:
    def __init__(self, name: str, memory_mb: int = 512, timeout_s: int = 60):
        self.function_name = f"HyperBatch-{name}"
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{self.function_name}"
        self.aws_request_id = uuid.uuid4().hex
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "box"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class Invocation:
    function: str
    seconds: float
    cpu_seconds: float
    request_bytes: int = 0


# ---- configuration ------------------------------------------------------------------------------

def box_configuration(settings: dict | None = None, definitions: dict | None = None,
                      queues: dict | None = None, more_definitions: list | None = None) -> config_models.Configuration:
    """The repository's configurations/, with fields of settings, of every definition, of every queue
    replaced, and `more_definitions` added (each with `definitions`' fields too)."""
    raw = {kind: config_models.read_raw(CONFIG_DIR, kind) for kind in config_models.FILES}
    raw["settings"] = {**raw["settings"], **(settings or {})}
    raw["definitions"] = [{**d, **(definitions or {})} for d in raw["definitions"] + list(more_definitions or [])]
    raw["queues"] = [{**q, **(queues or {})} for q in raw["queues"]]
    return config_models.validate(raw)


def _resolve_tokens(env: dict[str, str]) -> dict[str, str]:
    """CloudFormation pseudo parameters in the stack's environment, as a deployment in moto's account renders them."""
    from aws_cdk import Aws

    tokens = {str(Aws.ACCOUNT_ID): ACCOUNT, str(Aws.URL_SUFFIX): "amazonaws.com", str(Aws.PARTITION): "aws",
              str(Aws.REGION): "us-east-1"}
    out = {}
    for key, value in env.items():
        for token, real in tokens.items():
            value = value.replace(token, real)
        out[key] = value
    return out


# ---- the box ------------------------------------------------------------------------------------

@dataclass
class Worker:
    name: str
    region: str
    queue: str
    agent: Any
    thread: threading.Thread
    exit_code: int | None = None
    error: BaseException | None = None


@dataclass
class Box:
    # Short leases: a run registers after 1 s, looks at the store at most 2 s apart, renews every 3 s.
    settings: dict = field(default_factory=lambda: {"lease_seconds": 3, "heartbeat_seconds": 1,
                                                    "heartbeat_max_seconds": 2, "run_lease_seconds": 6})
    definitions: dict = field(default_factory=lambda: {"idle_timeout_seconds": 2})
    queues: dict = field(default_factory=dict)
    more_definitions: list = field(default_factory=list)
    admins: tuple[str, ...] = (ADMIN,)
    claim_wait: int = 1  # workers' long poll, seconds
    stream_interval: float = 0.1  # the mapping's batching window
    work_root: Path | None = None
    memory_mb: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FUNCTIONS, 512))
    keep_output: bool = True  # keep what functions print (logs, EMF) in `printed`

    def __post_init__(self):
        self.config = box_configuration({**self.settings, "admins": list(self.admins)}, self.definitions, self.queues,
                                        self.more_definitions)
        self.meter = Meter()
        self.invocations: list[Invocation] = []
        self.output_bytes: Counter = Counter()  # function -> bytes its invocations printed (logs, EMF)
        self.printed: dict[str, list[str]] = {}
        self.workers: list[Worker] = []
        self._started_submits: set[str] = set()
        self._stack = contextlib.ExitStack()
        self._stream_stop = threading.Event()
        self._stream_thread: threading.Thread | None = None
        self._stream_lock = threading.Lock()
        self._tmp = None

    # ---- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> "Box":
        from stacks import compute_plan, contract
        import hyperbatch.wiring.lambdas as runtime

        stack = self._stack
        if self.work_root is None:
            import tempfile

            self._tmp = tempfile.TemporaryDirectory(prefix="hyperbatch-box-")
            self.work_root = Path(self._tmp.name)
        env_before = dict(os.environ)
        stack.callback(lambda: (os.environ.clear(), os.environ.update(env_before)))
        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_SESSION_TOKEN="testing",
                          AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
                          # botocore sends stream calls to <account>.streams-ddb..., which moto 5.2.5
                          # does not route; the regional endpoint reaches the same backend.
                          AWS_ENDPOINT_URL_DYNAMODB_STREAMS=STREAMS_ENDPOINT.format(region="us-east-1"))
        stack.enter_context(mock_aws(config={"batch": {"use_docker": False}}))
        from moto.moto_api import state_manager

        # Batch jobs keep the status they are given (`set_batch_status`), not moto's progression.
        state_manager.set_transition("batch::job", {"progression": "manual", "times": 10**9})
        stack.callback(lambda: state_manager.unset_transition("batch::job"))
        BotocoreStubber.process_request = _serialized_process
        stack.callback(lambda: setattr(BotocoreStubber, "process_request", _original_process))
        clients.reset()
        runtime.reset()
        stack.callback(runtime.reset)
        stack.callback(clients.reset)
        # Every client the code under test takes from hyperbatch.adapters.aws.clients is metered.
        original_client = clients.client
        clients.client = lambda service, region=None: self.meter.attach(original_client(service, region))
        stack.callback(lambda: setattr(clients, "client", original_client))
        stack.enter_context(_stdout_counted())

        main = self.config.settings.main_region
        self.region = main
        self.dynamodb = self.client("dynamodb")
        self.sqs = self.client("sqs")
        self.logs = self.client("logs")
        names = [q.name for q in self.config.queues]
        self.plane = bootstrap.create_control_plane(
            self.dynamodb, self.sqs, self.logs, self.config.settings.stack_name, names,
            lease_seconds=self.config.settings.lease_seconds, pools=[p.name for p in self.config.pools],
        )
        # The mapping's on-failure destination (stacks/control_plane.py; bootstrap does not make it).
        self.failures_url = self.sqs.create_queue(
            QueueName=physical_names.stream_failures_queue(self.config.settings.stack_name))["QueueUrl"]
        self.targets = compute_plan.compute_targets(self.config)
        self._create_batch()
        self.client("events").put_rule(Name=NOTICE_RULE, EventPattern=json.dumps(
            {"source": [physical_names.EVENT_SOURCE], "detail-type": [physical_names.NOTICE_DETAIL_TYPE]}))

        # One process plays every function: it gets the union of their environments.
        env = _resolve_tokens({**contract.lambda_environment(self.config, self.targets, account=ACCOUNT),
                               **contract.reconciler_environment(self.config, self.targets, account=ACCOUNT)})
        self._check_contract(env)
        self.lambda_env = env
        os.environ.update(env)
        self._contract = contract
        # The files bucket (stacks/storage.py), where the API stages scripts over a few KB.
        self.s3 = self.client("s3")
        self.files_bucket = env["HYPER_FILES_BUCKET"]
        self.s3.create_bucket(Bucket=self.files_bucket)
        from hyperbatch.adapters.aws.scripts import S3Scripts

        self.backend = bootstrap.open_backend(self.plane, self.dynamodb, self.sqs, self.logs,
                                              scripts=S3Scripts(self.s3, self.files_bucket))
        self.store = self.backend.store
        from hyperbatch.adapters.aws.runs import TableRunRegister

        self.runs = TableRunRegister(self.dynamodb, self.plane.table)  # the registered runs (the reconciler's)
        self.meter.clear()
        stack.callback(self._shutdown)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def _shutdown(self) -> None:
        self.stop_stream()
        for worker in self.workers:
            worker.agent.stop()
        for worker in self.workers:
            worker.thread.join(15)

    def client(self, service: str, region: str | None = None):
        """A harness client (metered as "harness" unless called inside `acting_as`)."""
        return self.meter.attach(boto3.client(service, region_name=region or self.region))

    def _check_contract(self, env: dict[str, str]) -> None:
        """The environment the stack hands its functions names exactly what bootstrap created."""
        found = {
            "HYPER_TABLE": env["HYPER_TABLE"] == self.plane.table,
            "HYPER_QUEUE_URLS": json.loads(env["HYPER_QUEUE_URLS"]) == self.plane.queue_urls,
            "HYPER_DLQ_URLS": json.loads(env["HYPER_DLQ_URLS"]) == self.plane.dead_letter_urls,
            "HYPER_LOG_GROUP_PREFIX": env["HYPER_LOG_GROUP_PREFIX"] == self.plane.log_group_prefix,
            "HYPER_STREAM_FAILURES_URL": env["HYPER_STREAM_FAILURES_URL"] == self.failures_url,
        }
        wrong = [name for name, ok in found.items() if not ok]
        if wrong:
            raise AssertionError(f"stacks/contract.py and tests/aws_bootstrap.py disagree on {wrong}")

    def _create_batch(self) -> None:
        iam = self.client("iam")
        role = iam.create_role(RoleName="batch-service", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        for region, clusters in self.targets.items():
            batch = self.client("batch", region)
            definitions = set()
            for cluster, target in clusters.items():
                if "job_queue" not in target:
                    continue
                environment = batch.create_compute_environment(
                    computeEnvironmentName=f"{cluster}-workers", type="UNMANAGED", state="ENABLED", serviceRole=role,
                )["computeEnvironmentArn"]
                batch.create_job_queue(jobQueueName=target["job_queue"], state="ENABLED", priority=1,
                                       computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}])
                definitions |= set(target["job_definitions"].values())
            for name in sorted(definitions):
                batch.register_job_definition(jobDefinitionName=name, type="container",
                                              containerProperties={"image": "worker", "vcpus": 1, "memory": 512})

    # ---- functions --------------------------------------------------------------------------
    def _printed(self, function: str, text: str) -> None:
        self.output_bytes[function] += len(text.encode())
        if self.keep_output:
            self.printed.setdefault(function, []).append(text)

    def emf(self, function: str) -> list[dict]:
        """The EMF documents a function printed (needs keep_output)."""
        docs = []
        for line in "".join(self.printed.get(function, [])).splitlines():
            if line.startswith("{") and '"_aws"' in line:
                docs.append(json.loads(line))
        return docs

    def invoke(self, function: str, event: dict, request_bytes: int = 0) -> Any:
        """Call `lambdas.<function>.handler` as Lambda would, timing it and metering its calls."""
        import importlib

        handler = importlib.import_module(f"lambdas.{function}").handler
        context = FakeContext(function, self.memory_mb.get(function, 512))
        with acting_as(function), _counting_stdout(lambda text: self._printed(function, text)):
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return handler(event, context)
            finally:
                self.invocations.append(Invocation(function, time.perf_counter() - started,
                                                   time.thread_time() - cpu, request_bytes))

    def api(self, method: str, path: str, *, principal: str | None = ALICE, body: Any = None,
            query: dict | None = None) -> tuple[int, Any]:
        """One HTTP API request, as API Gateway hands it to the function; (status, parsed JSON body)."""
        text = None if body is None else json.dumps(body)
        event = api_event(method, path, principal, text, query)
        response = self.invoke("api", event, request_bytes=len((text or "").encode()))
        payload = response.get("body") or "null"
        try:
            parsed = json.loads(payload)
        except ValueError:
            parsed = payload
        return response["statusCode"], parsed

    def scale(self) -> dict:
        """A scaler run. While the stream is delivered in the background it is settled first: the scaler
        runs minutes apart and sizes on what the release function counted and sent, which the mapping
        delivers within a second of the change."""
        if self._stream_thread is not None:
            self.settle()
        return self.invoke("scaler", schedule_event("ScalerSchedule"))

    def reconcile(self) -> dict:
        return self.invoke("reconciler", schedule_event("ReconcilerSchedule"))

    # ---- the stream -------------------------------------------------------------------------
    @cached_property
    def _stream(self) -> StreamReader:
        client = self.meter.attach(boto3.client(
            "dynamodbstreams", region_name=self.region, endpoint_url=STREAMS_ENDPOINT.format(region=self.region)))
        return StreamReader(self.dynamodb, self.plane.table, client)

    @property
    def stream_arn(self) -> str:
        return self._stream.arn

    def deliver(self) -> int:
        """Hand every new stream record to the release function (batches of up to 100); returns how many."""
        with self._stream_lock, acting_as("harness"):  # the mapping's reads (free); `invoke` is "release"
            delivered = 0
            for shard, records in self._stream.read().items():
                for start in range(0, len(records), STREAM_BATCH):
                    self._release(shard, records[start:start + STREAM_BATCH])
                delivered += len(records)
            return delivered

    def _release(self, shard: str, records: list[dict]) -> None:
        batch = [lambda_record(r, self.stream_arn) for r in records]
        error = None
        for _ in range(STREAM_RETRIES + 1):
            try:
                response = self.invoke("release", {"Records": batch})
            except Exception as exc:  # the invocation failed as a whole: the mapping retries the batch
                print(f"box: release invocation failed: {exc!r}")
                error = "Unhandled"
                continue
            failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
            if not failed:
                return
            error = None
            first = min(i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] in failed)
            batch = batch[first:]
        self._park(shard, batch, error)

    def _park(self, shard: str, batch: list[dict], error: str | None) -> None:
        """What the mapping's on-failure destination receives for a batch it gave up on: its place in the stream."""
        def when(record):
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record["dynamodb"].get("ApproximateCreationDateTime")
                                                                    or time.time()))

        response = {"statusCode": 200, "executedVersion": "$LATEST"}
        if error:
            response["functionError"] = error
        message = {
            "requestContext": {
                "requestId": uuid.uuid4().hex,
                "functionArn": f"arn:aws:lambda:{self.region}:{ACCOUNT}:function:HyperBatch-release",
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": STREAM_RETRIES + 1,
            },
            "responseContext": response,
            "version": "1.0",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "DDBStreamBatchInfo": {
                "shardId": shard,
                "startSequenceNumber": batch[0]["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": batch[-1]["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": when(batch[0]),
                "approximateArrivalOfLastRecord": when(batch[-1]),
                "batchSize": len(batch),
                "streamArn": self.stream_arn,
            },
        }
        self.sqs.send_message(QueueUrl=self.failures_url, MessageBody=json.dumps(message))

    def parked(self) -> int:
        """Batches parked on the release-failures queue (visible or being re-driven)."""
        found = self.sqs.get_queue_attributes(
            QueueUrl=self.failures_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in found.values())

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every change so far has been handed to the release function (sent, counted, released)."""
        self.wait_for("the stream to settle", lambda: self.deliver() == 0, timeout)

    def start_stream(self, interval: float | None = None) -> None:
        """Deliver the stream in the background every `interval` seconds, as the event source mapping would."""
        every = self.stream_interval if interval is None else interval
        self._stream_stop.clear()

        def pump():
            while not self._stream_stop.is_set():
                try:
                    self.deliver()
                except Exception as exc:  # keep delivering; a test sees the job states
                    print(f"box: stream delivery failed: {exc!r}")
                self._stream_stop.wait(every)

        self._stream_thread = threading.Thread(target=pump, name="box-stream", daemon=True)
        self._stream_thread.start()

    def stop_stream(self) -> None:
        if self._stream_thread is not None:
            self._stream_stop.set()
            self._stream_thread.join(30)
            self._stream_thread = None

    # ---- workers ----------------------------------------------------------------------------
    def worker_env(self, queue: str, region: str, worker_id: str) -> dict[str, str]:
        """What a Batch worker container sees: the job definition's environment and the submit's overrides."""
        definition = self.config.pool(queue).definition  # `queue`: the work queue of the worker's pool
        env = _resolve_tokens(self._contract.worker_environment(self.config, region, definition))
        if "HYPER_CONFIG" not in env:
            # stacks/contract.worker_environment does not carry it (yet); the agent needs lease,
            # heartbeat, idle timeout and chunk size from it.
            env["HYPER_CONFIG"] = self._contract.config_json(self.config)
        env.update(
            HYPER_QUEUE=queue, HYPER_BACKEND="aws", AWS_BATCH_JOB_ID=worker_id,
            HYPER_CLAIM_WAIT_SECONDS=str(self.claim_wait),
            HYPER_WORK_ROOT=str(self.work_root / worker_id.replace(":", "_")),
            AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        )
        return env

    def start_worker(self, queue: str = "batch", region: str | None = None, worker_id: str | None = None,
                     env: dict | None = None) -> Worker:
        from hyperbatch.wiring.worker import worker_from_environment

        region = region or self.region
        worker_id = worker_id or f"box-{len(self.workers) + 1}"
        agent = worker_from_environment({**self.worker_env(queue, region, worker_id), **(env or {})})
        worker = Worker(worker_id, region, queue, agent, None)  # type: ignore[arg-type]

        def serve():
            self.set_batch_status(worker_id, "RUNNING", region)
            with acting_as("worker"):
                try:
                    worker.exit_code = agent.serve()
                except BaseException as exc:  # reported by the test that waits for it
                    worker.error = exc
                    raise
                finally:
                    self.set_batch_status(worker_id, "SUCCEEDED" if worker.exit_code == 0 else "FAILED", region)

        worker.thread = threading.Thread(target=serve, name=f"agent-{worker_id}", daemon=True)
        self.workers.append(worker)
        worker.thread.start()
        return worker

    def set_batch_status(self, job_id: str, status: str, region: str | None = None) -> bool:
        """Give moto's Batch job `job_id` this status (RUNNING, or SUCCEEDED/FAILED: its container
        stopped); False if moto has no such job (a worker named otherwise: `box-1`)."""
        from moto.batch.models import batch_backends

        job = batch_backends[ACCOUNT][region or self.region]._jobs.get(job_id)
        if job is None:
            return False
        job.status = status
        job.job_stopped = status in ("SUCCEEDED", "FAILED")
        return True

    def submit(self, **request) -> dict:
        """POST /jobs as Alice; the job as the API answers it (asserts it was accepted)."""
        status, job = self.api("POST", "/jobs", body=request)
        assert status == 201, job
        return job

    def submits(self) -> list[tuple[str, dict, str]]:
        """(region, SubmitJob parameters, Batch job id) of every worker the scaler submitted."""
        return [(c.region, c.params, (c.response or {}).get("jobId", ""))
                for c in self.meter.calls if c.service == "batch" and c.operation == "SubmitJob" and not c.error]

    def start_submitted_workers(self, most: int | None = None) -> list[Worker]:
        """An agent thread per worker the scaler submitted to Batch (and not started yet)."""
        started = []
        for region, params, job_id in self.submits():
            if job_id in self._started_submits:
                continue
            self._started_submits.add(job_id)
            overrides = {e["name"]: e["value"] for e in params["containerOverrides"]["environment"]}
            size = (params.get("arrayProperties") or {}).get("size", 1)
            for index in range(size):
                if most is not None and len(started) >= most:
                    return started
                name = f"{job_id}:{index}" if size > 1 else job_id
                started.append(self.start_worker(overrides["HYPER_QUEUE"], region, name, env=overrides))
        return started

    def join_workers(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            worker.thread.join(max(0.0, deadline - time.monotonic()))
        alive = [w.name for w in self.workers if w.thread.is_alive()]
        if alive:
            raise AssertionError(f"workers still running after {timeout}s: {alive}")

    # ---- looking ----------------------------------------------------------------------------
    def job(self, job_id: str) -> dict:
        """The job's document; `job_id` as the API shows it (`12.Stack`, `12[].Stack`) or the internal `12`."""
        return self.store.get(internal_id(job_id))

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float = 30.0, every: float = 0.1) -> Any:
        return polling.wait_for(predicate, timeout, every, what)

    def wait_state(self, job_id: str, *states: str, timeout: float = 30.0) -> dict:
        return self.wait_for(f"job {job_id} to be {'/'.join(states)}",
                             lambda: (d := self.job(job_id)) and d["state"] in states and d, timeout)


def internal_id(job_id: str) -> str:
    """The store's id of a job named as the API shows it (`12.Stack`, `12[].Stack` -> `12`)."""
    from hyperbatch.core.ids import parse_job_ref

    return parse_job_ref(job_id).seq


# ---- events -------------------------------------------------------------------------------------

def api_event(method: str, path: str, principal: str | None, body: str | None, query: dict | None) -> dict:
    """An HTTP API (payload format 2.0) event with an IAM authorizer context when `principal` is given."""
    now = time.time()
    query = {k: str(v) for k, v in (query or {}).items()}
    context: dict = {
        "accountId": ACCOUNT,
        "apiId": "box",
        "domainName": "box.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "box",
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1",
                 "userAgent": "hyper-cli"},
        "requestId": uuid.uuid4().hex,
        "routeKey": f"{method} {path}",
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if principal:
        context["authorizer"] = {"iam": {
            "accessKey": "AKIABOX", "accountId": ACCOUNT, "callerId": "AIDABOX", "cognitoIdentity": None,
            "principalOrgId": None, "userArn": principal, "userId": "AIDABOX",
        }}
    headers = {"content-type": "application/json", "host": context["domainName"]}
    return {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": urlencode(query),
        "headers": headers,
        "queryStringParameters": query or None,
        "requestContext": context,
        "body": body,
        "isBase64Encoded": False,
    }


def schedule_event(rule: str) -> dict:
    return {
        "version": "0", "id": uuid.uuid4().hex, "detail-type": "Scheduled Event", "source": "aws.events",
        "account": ACCOUNT, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:{ACCOUNT}:rule/{rule}"], "detail": {},
    }


# ---- stdout per function ------------------------------------------------------------------------

class _CountingStdout:
    """Passes writes through, counting the bytes written inside a function's invocation (per thread)."""

    def __init__(self, inner):
        self.inner = inner
        self.local = threading.local()

    def write(self, text: str) -> int:
        sink = getattr(self.local, "sink", None)
        if sink is not None:
            sink(text)
            if not ECHO:
                return len(text)  # Lambda's stdout goes to CloudWatch Logs, not to the test's
        return self.inner.write(text)

    def flush(self) -> None:
        self.inner.flush()

    def __getattr__(self, name):
        return getattr(self.inner, name)


@contextlib.contextmanager
def _stdout_counted():
    """While the box is open, what functions print is counted (and echoed only with HYPER_BOX_ECHO=1)."""
    import sys

    inner = sys.stdout
    sys.stdout = _CountingStdout(inner)
    try:
        yield
    finally:
        if isinstance(sys.stdout, _CountingStdout):
            sys.stdout = inner


@contextlib.contextmanager
def _counting_stdout(sink: Callable[[str], None]):
    import sys

    wrapper = sys.stdout
    if not isinstance(wrapper, _CountingStdout):  # a test runner swapped stdout since: wrap the new one
        wrapper = sys.stdout = _CountingStdout(wrapper)
    before = getattr(wrapper.local, "sink", None)
    wrapper.local.sink = sink
    try:
        yield
    finally:
        wrapper.local.sink = before


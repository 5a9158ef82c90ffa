"""What a million jobs cost on AWS: every AWS call of the scheduler, counted in AWS-in-a-box, priced.

    .venv/bin/python bench/aws_cost.py [--jobs N] [--array N] [--beats N] [--entries N] [--jobs-per-day R]
                                       [--event-rule | --no-event-bus]

Four runs, each in a fresh box (tests/aws_box/harness.py: the Lambda handlers
and worker agents on moto): N single jobs submitted one per POST; N jobs
submitted in POSTs of up to 1,000; one array of --array tasks (20,000 by
default); and what one running job does while it runs (`measure_run`). Each job and task echoes
one line.

- The array figure is what an array pays per task at the configured chunk size
  (the workers' cost of a chunk, measured, over the chunk size), whatever the
  machine's load; the chunks' ramp-up (each worker starts at one task a chunk
  and doubles while tasks are quick, up to about a second of work: how far
  depends on the load) and what an array pays once are reported apart.
- A long job: a job's figure plus what it does while it runs
  (hyperbatch.core.cadence says how many of each; each priced from --beats
  of them made in the box, the release function's handling of the records
  they write included): its looks (reads), its registrations (the first
  also hides its message) and its share of the reconciler's Query of the
  registered runs (measured with --entries of them):
  `cost_per_million_jobs_1min_usd` and `cost_per_million_jobs_1h_usd`.
Every AWS call made through botocore is counted by service, operation and
actor; the price model (bench/prices.py) turns calls into money:

- API Gateway: one request per HTTP call into the API function (per 512 KB of body).
- Lambda: one request per invocation; GB-seconds = the handler's wall time in
  the box (rounded up to 1 ms) x the function's memory, read from
  stacks/control_plane.py. Wall time in moto stands in for service latency: an
  estimate either way.
- DynamoDB: request units worked out per call from item sizes (DynamoDB's size
  rules: attribute names + values), since moto's ConsumedCapacity is not
  DynamoDB's. Writes: 1 WRU per KB (x2 in a transaction), a failed conditional
  write too; plus GSI write amplification, by each index's projection
  (hyperbatch/names.INDEX_PROJECTIONS, as deployed): an index entry (keys and
  projected attributes) is written when the item enters the index, when an
  update sets a projected attribute (any attribute for ALL), and twice when its
  index key changes (a delete and a put: a job moves in by_queue_state when it
  finishes). Reads: per 4 KB, strongly consistent 1, eventually consistent
  (queries) 0.5, queries by the total size of the index entries they read.
- SQS: one request per call and 64 KB chunk of payload.
- EventBridge: one event per PutEvents entry and 64 KB chunk (job state changes and notices).
  The deployment as shipped: the default bus has the stack's notifier rule and
  no rule of a user's, so the release function puts no state changes (it looks
  with ListRules, not billed); `--event-rule` adds a user's rule for source
  hyperbatch, and every state change is put (three events a plain job);
  `--no-event-bus` prices settings.notifications.event_bus false (never put).
- CloudWatch Logs: the functions' own lines (Powertools logs, EMF metrics, and
  an assumed 600 bytes of Lambda platform lines per invocation unless the stack
  sets the system log level to WARN) and one API
  access-log line per request are in the per-job figures; job output is not:
  it is reported per KB of output.
- Scheduled functions (scaler, reconciler: one run a minute each, EventBridge):
  one measured run of each with the whole backlog queued (their worst case),
  priced with its EventBridge invocation and Lambda time, and spread over the
  jobs of a minute at --jobs-per-day (default 1,000,000 a day, ~694 a minute).
  At lower rates this fixed cost per job grows in proportion.

Streams reads by Lambda, Batch calls and CloudWatch Logs API calls cost nothing.
Left out: storage (DynamoDB, logs), custom-metric and alarm charges, workers'
compute, data transfer.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import prices  # noqa: E402
from hyperbatch.config import Settings  # noqa: E402
from hyperbatch.core.names import EVENT_SOURCE, INDEX_PROJECTIONS, INDEXES, STATE_CHANGE_DETAIL_TYPE  # noqa: E402
from tests.aws_box.harness import Box, Call  # noqa: E402

MEASURED = ("api", "release", "worker")  # actors whose calls are per job
SCHEDULED = ("scaler", "reconciler")
PLATFORM_LOG_BYTES = 600  # Lambda's JSON platform records (start, report) per invocation, estimated


def _platform_log_bytes() -> int:
    """0 when stacks/functions.py sets the system log level to WARN (no start/report records)."""
    source = (REPO / "stacks" / "functions.py").read_text()
    return 0 if "SystemLogLevel.WARN" in source else PLATFORM_LOG_BYTES


PLATFORM_LOG_BYTES = _platform_log_bytes()
EDGE_ITEM_BYTES = 90  # a dependency edge item: pk, sk, gsi3pk, gsi3sk
KB, READ_UNIT = 1024, 4096
INDEX_KEYS = {"by_owner": "gsi1pk", "by_queue_state": "gsi2pk", "by_parent": "gsi3pk"}
JOB = ["echo", "done"]  # each job and task prints one short line: its output is priced per KB, apart
TASK = ["sh", "-c", "echo task $HYPER_ARRAY_INDEX"]


# ---- the stack's function sizes, read from its source (no synth) ---------------------------------

def function_memory() -> dict[str, int]:
    """Function name (lambdas.<name>.handler) -> memory MiB, as stacks/control_plane.py builds them."""
    default = _default_memory()
    out = {}
    tree = ast.parse((REPO / "stacks" / "control_plane.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add" and len(node.args) >= 2:
            handler = node.args[1]
            if isinstance(handler, ast.Constant) and str(handler.value).startswith("lambdas."):
                memory = next((k.value.value for k in node.keywords if k.arg == "memory_mib"), default)
                out[handler.value.split(".")[1]] = int(memory)
    return out


def _default_memory() -> int:
    tree = ast.parse((REPO / "stacks" / "functions.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "add":
            for arg, value in zip(node.args.kwonlyargs, node.args.kw_defaults):
                if arg.arg == "memory_mib":
                    return int(value.value)
    return 128


def access_log_bytes() -> int:
    """One API access-log line (stacks/api.py's fields, with typical values)."""
    sample = {"requestId": "Xk2abcdefghiJKA=", "time": "21/Nov/2026:06:00:00 +0000",
              "caller": "arn:aws:iam::123456789012:user/alice", "ip": "192.0.2.1", "route": "POST /jobs",
              "status": "201", "latencyMs": "45", "responseLength": "900", "integrationError": "-"}
    return len(json.dumps(sample, separators=(",", ":"))) + 1


# ---- DynamoDB request units -------------------------------------------------------------------

def attribute_size(value: dict) -> int:
    (kind, data), = value.items()
    if kind == "S":
        return len(data.encode())
    if kind == "N":
        digits = data.lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in data)
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in data.items())
    if kind in ("SS", "NS", "BS"):
        return sum(len(v) for v in data)
    return 0


def item_size(item: dict) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / KB))


def read_units(size: int, consistent: bool) -> float:
    return max(1, math.ceil(size / READ_UNIT)) * (1.0 if consistent else 0.5)


class DynamoModel:
    """Request units per call, remembering each item's size and index keys (an update's cost depends on
    the item before it: DynamoDB bills the larger of the old and new item, and an index entry is
    written only when the update puts, deletes, moves or changes it).

    """

    def __init__(self, platform_log_bytes: int = PLATFORM_LOG_BYTES, projections: dict | None = None):
        self.sizes: dict[str, int] = {}
        self.projections = INDEX_PROJECTIONS if projections is None else projections
        self.index_keys: dict[str, dict[str, str]] = {}  # item key -> index -> its key value, as last written
        self.entries: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # index -> [bytes, entries] written
        self.platform_log_bytes = platform_log_bytes

    @staticmethod
    def _key(item_or_key: dict) -> str:
        return f"{item_or_key['pk']['S']}|{item_or_key.get('sk', {}).get('S', '')}"

    def _entry_size(self, item: dict | None, index: str) -> int:
        """Bytes of the item's entry in `index`: the whole item (ALL) or its keys and projected attributes."""
        if item is None:
            return self._mean_entry(index)
        projected = self.projections.get(index)
        keep = None if projected is None else {"pk", "sk", *INDEXES[index], *projected}
        size = item_size(item if keep is None else {k: v for k, v in item.items() if k in keep})
        self.entries[index][0] += size
        self.entries[index][1] += 1
        return size

    def _mean_entry(self, index: str) -> int:
        total, n = self.entries[index]
        return int(total / n) if n else 100

    @staticmethod
    def _index_keys(item: dict) -> dict[str, str]:
        return {index: item[key]["S"] for index, key in INDEX_KEYS.items() if key in item}

    def _put(self, item: dict) -> int:
        """WRU of writing a whole new item (no old one): the item, and an entry in each index it is in."""
        size = item_size(item)
        key = self._key(item)
        old_keys = self.index_keys.get(key, {})
        self.sizes[key] = size
        new_keys = self.index_keys[key] = self._index_keys(item)
        wru = write_units(size)
        for index in set(old_keys) | set(new_keys):
            if index not in new_keys:
                wru += 1  # a put that drops an index key deletes the old entry
            else:
                entry = write_units(self._entry_size(item, index))
                wru += entry * (2 if index in old_keys and old_keys[index] != new_keys[index] else 1)
        return wru

    def _seen(self, item: dict) -> int:
        """An item read whole: remember its size (its next update is billed on it)."""
        size = item_size(item)
        if "pk" in item:
            self.sizes[self._key(item)] = size
        return size

    def mean_job(self) -> int:
        sizes = [s for k, s in self.sizes.items() if k.endswith("|job")]
        return int(sum(sizes) / len(sizes)) if sizes else 1024

    def _update(self, call: Call) -> float:
        params, response = call.params, call.response or {}
        key = self._key(params["Key"])
        before = self.sizes.get(key)
        if call.error == "ConditionalCheckFailedException":
            old = response.get("Item")
            return write_units(item_size(old) if old else before or self.mean_job())
        after_item = response.get("Attributes") if params.get("ReturnValues") == "ALL_NEW" else None
        after = item_size(after_item) if after_item else (before or self.mean_job())
        if after_item:
            self.sizes[key] = after
        wru = write_units(max(after, before or after))
        names = params.get("ExpressionAttributeNames") or {}
        values = params.get("ExpressionAttributeValues") or {}
        expression = params.get("UpdateExpression", "")
        updated = {names.get(t, t) for t in re.findall(r"#\w+", expression)}
        old_keys = self.index_keys.get(key, {})
        if after_item is not None:
            new_keys = self._index_keys(after_item)
        else:  # no new image asked for: follow the expression's SETs and REMOVEs of index keys
            new_keys = dict(old_keys)
            for name, value in re.findall(r"(#\w+)\s*=\s*(:\w+)", expression):
                for index, attribute in INDEX_KEYS.items():
                    if names.get(name) == attribute and "S" in values.get(value, {}):
                        new_keys[index] = values[value]["S"]
            removed = expression.split("REMOVE", 1)[1] if "REMOVE" in expression else ""
            for index, attribute in INDEX_KEYS.items():
                if any(names.get(t) == attribute for t in re.findall(r"#\w+", removed.split(" ADD ")[0])):
                    new_keys.pop(index, None)
        for index in set(old_keys) | set(new_keys):
            projected = self.projections.get(index)
            if index not in new_keys:
                wru += 1  # the entry is deleted
            elif index not in old_keys:
                wru += write_units(self._entry_size(after_item, index))  # the item enters the index
            elif old_keys[index] != new_keys[index]:
                wru += 2 * write_units(self._entry_size(after_item, index))  # moved: delete + put
            elif projected is None or updated & set(projected):
                wru += write_units(self._entry_size(after_item, index))  # a projected attribute changed
        self.index_keys[key] = new_keys
        return wru

    def units(self, call: Call) -> tuple[float, float]:
        """(read units, write units) of one DynamoDB call."""
        op, params, response = call.operation, call.params, call.response or {}
        if op == "TransactWriteItems":
            wru = 0.0
            for action in params.get("TransactItems", []):
                if "Put" in action:
                    wru += self._put(action["Put"]["Item"]) + write_units(item_size(action["Put"]["Item"]))
                else:
                    wru += 2  # condition checks, updates (the counters), deletes: small items, x2
            return 0.0, wru
        if op == "PutItem":
            if call.error == "ConditionalCheckFailedException":
                return 0.0, write_units(item_size(params["Item"]))
            return 0.0, self._put(params["Item"])
        if op == "UpdateItem":
            return 0.0, self._update(call)
        if op == "DeleteItem":
            key = self._key(params["Key"])
            return 0.0, write_units(self.sizes.pop(key, 100)) + len(self.index_keys.pop(key, {}))
        if op == "BatchWriteItem":
            wru = 0.0
            for requests in params.get("RequestItems", {}).values():
                for request in requests:
                    if "PutRequest" in request:
                        wru += self._put(request["PutRequest"]["Item"])
                    else:
                        key = self._key(request["DeleteRequest"]["Key"])
                        wru += write_units(self.sizes.pop(key, 100)) + len(self.index_keys.pop(key, {}))
            return 0.0, wru
        if op == "GetItem":
            item = response.get("Item")
            consistent = bool(params.get("ConsistentRead"))
            if item and "ProjectionExpression" not in params:
                size = self._seen(item)
            else:
                size = self.sizes.get(self._key(params["Key"]), self.mean_job())
            return read_units(size, consistent), 0.0
        if op == "BatchGetItem":
            rru = 0.0
            for table, request in params.get("RequestItems", {}).items():
                consistent = bool(request.get("ConsistentRead"))
                for item in response.get("Responses", {}).get(table, []):
                    rru += read_units(self._seen(item), consistent)
            return rru, 0.0
        if op == "Query":
            index = params.get("IndexName")
            scanned = response.get("ScannedCount", response.get("Count", 0))
            items = response.get("Items", [])
            if index == "by_parent":
                total = scanned * EDGE_ITEM_BYTES
            elif index and self.projections.get(index) is not None:  # index entries, not whole items
                if params.get("Select") == "COUNT" or "ProjectionExpression" in params:
                    total = scanned * self._mean_entry(index)
                else:
                    total = sum(item_size(i) for i in items) + (scanned - len(items)) * self._mean_entry(index)
            elif items and "ProjectionExpression" not in params and params.get("Select") != "COUNT":
                total = sum(self._seen(i) for i in items) + (scanned - len(items)) * self.mean_job()
            else:
                total = scanned * self.mean_job()
            consistent = bool(params.get("ConsistentRead")) and not index
            return max(1, math.ceil(total / READ_UNIT)) * (1.0 if consistent else 0.5), 0.0
        return 0.0, 0.0  # DescribeTable and other control-plane calls: no request units


# ---- pricing ----------------------------------------------------------------------------------

@dataclass
class Bill:
    usd: Counter = field(default_factory=Counter)  # line ("dynamodb:UpdateItem", "lambda:api GB-s", ...) -> USD
    units: Counter = field(default_factory=Counter)  # (line, unit) -> amount

    def add(self, line: str, usd: float, unit: str = "", amount: float = 0.0) -> None:
        self.usd[line] += usd
        if unit:
            self.units[(line, unit)] += amount

    def total(self) -> float:
        return sum(self.usd.values())

    def by_service(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for line, usd in self.usd.items():
            out[line.split(":")[0]] += usd
        return dict(out)


def price_calls(calls: list[Call], model: DynamoModel, bill: Bill) -> None:
    for call in calls:
        line = f"{call.service}:{call.operation}"
        if call.service == "dynamodb":
            rru, wru = model.units(call)
            bill.add(line, rru * prices.DYNAMODB_PER_READ_UNIT + wru * prices.DYNAMODB_PER_WRITE_UNIT, "RRU", rru)
            bill.units[(line, "WRU")] += wru
        elif call.service == "sqs":
            payload = _sqs_payload(call)
            requests = max(1, math.ceil(payload / prices.SQS_CHUNK_BYTES))
            bill.add(line, requests * prices.SQS_PER_REQUEST, "requests", requests)
        elif call.service == "events" and call.operation == "PutEvents":
            events = sum(max(1, math.ceil(len(json.dumps(e).encode()) / prices.EVENTBRIDGE_CHUNK_BYTES))
                         for e in call.params.get("Entries", []))
            bill.add(line, events * prices.EVENTBRIDGE_PER_EVENT, "events", events)
        elif call.service == "logs" and call.operation == "PutLogEvents":
            bill.add("logs:job output (not per job)", 0.0)
        else:
            bill.add(line, 0.0)


def _sqs_payload(call: Call) -> int:
    if call.operation == "SendMessage":
        return len(call.params.get("MessageBody", "").encode())
    if call.operation == "SendMessageBatch":
        return sum(len(e["MessageBody"].encode()) for e in call.params.get("Entries", []))
    if call.operation == "ReceiveMessage":
        return sum(len(m.get("Body", "").encode()) for m in (call.response or {}).get("Messages", []))
    return 0


def price_invocations(invocations, output_bytes: Counter, functions: tuple[str, ...], memory: dict[str, int],
                      bill: Bill, platform_log_bytes: int = PLATFORM_LOG_BYTES) -> None:
    for inv in invocations:
        if inv.function not in functions:
            continue
        gb_s = math.ceil(inv.seconds * 1000) / 1000 * memory.get(inv.function, 512) / 1024
        bill.add(f"lambda:{inv.function} requests", prices.LAMBDA_PER_REQUEST, "invocations", 1)
        bill.add(f"lambda:{inv.function} GB-s", gb_s * prices.LAMBDA_PER_GB_SECOND_ARM64, "GB-s", gb_s)
        if inv.function == "api":
            requests = max(1, math.ceil(inv.request_bytes / prices.API_GATEWAY_HTTP_METERING_BYTES))
            bill.add("apigateway:HTTP requests", requests * prices.API_GATEWAY_HTTP_PER_REQUEST, "requests", requests)
            bill.add("logs:API access logs", access_log_bytes() / 1e9 * prices.CLOUDWATCH_LOGS_INGEST_PER_GB)
        if inv.function in SCHEDULED:
            bill.add("events:schedule invocations", prices.EVENTBRIDGE_SCHEDULER_PER_INVOCATION, "invocations", 1)
        bill.add("logs:function logs and EMF", platform_log_bytes / 1e9 * prices.CLOUDWATCH_LOGS_INGEST_PER_GB)
    for function in functions:
        printed = output_bytes.get(function, 0)
        bill.add("logs:function logs and EMF", printed / 1e9 * prices.CLOUDWATCH_LOGS_INGEST_PER_GB)


def job_output(calls: list[Call]) -> tuple[int, int]:
    """(bytes of job output, bytes ingested) over PutLogEvents calls."""
    output = ingested = 0
    for call in calls:
        if call.service == "logs" and call.operation == "PutLogEvents":
            for event in call.params.get("logEvents", []):
                n = len(event["message"].encode())
                output += n
                ingested += n + prices.CLOUDWATCH_LOGS_EVENT_OVERHEAD_BYTES
    return output, ingested


# ---- the runs ---------------------------------------------------------------------------------

@dataclass
class Phase:
    name: str
    units: int  # jobs or tasks
    calls: list[Call]
    invocations: list
    output_bytes: Counter
    seconds: float
    chunk_size: int

    def count(self, actors: tuple[str, ...]) -> Counter:
        return Counter(f"{c.service}:{c.operation}" for c in self.calls if c.actor in actors)

    def price(self, memory: dict[str, int], model: DynamoModel | None = None) -> tuple[Bill, Bill]:
        """(per-job bill, bill of one scaler run and one reconciler run)."""
        model = model or DynamoModel()
        bill, scheduled = Bill(), Bill()
        for call in self.calls:  # in call order, so every update knows the size of the item before it
            if call.actor in MEASURED:
                price_calls([call], model, bill)
            elif call.actor in SCHEDULED:
                price_calls([call], model, scheduled)
        price_invocations(self.invocations, self.output_bytes, MEASURED, memory, bill, model.platform_log_bytes)
        price_invocations(self.invocations, self.output_bytes, SCHEDULED, memory, scheduled, model.platform_log_bytes)
        return bill, scheduled


# configurations/settings.json's; the looks' cap and the run lease at their defaults (hyperbatch.config)
PRODUCTION_SETTINGS = {"lease_seconds": 60, "heartbeat_seconds": 15}
# --event-rule: a user's rule on the default bus that the job state changes match (main sets it)
EVENT_RULE: dict | None = None


def listen(box: Box) -> None:
    """Give the box's default bus the user's rule of --event-rule, before any stream record is handled."""
    if EVENT_RULE is not None:
        box.client("events").put_rule(Name="job-state-changes", EventPattern=json.dumps(EVENT_RULE))


def run_phase(name: str, n: int, batch: int, memory: dict[str, int], chunk_size: int | None) -> Phase:
    definitions = {"idle_timeout_seconds": 1.5, **({"chunk_size": chunk_size} if chunk_size else {})}
    box = Box(settings=PRODUCTION_SETTINGS, definitions=definitions,
              claim_wait=1, stream_interval=1.0, memory_mb=memory, keep_output=False)
    started = time.perf_counter()
    with box:
        listen(box)
        box.start_stream()  # the mapping: a batch at most once per second (max_batching_window)
        ids = []
        if name == "single":
            for _ in range(n):
                status, job = box.api("POST", "/jobs", body={"command": JOB})
                assert status == 201, job
                ids.append(job["id"])
        elif name == "batched":
            for start in range(0, n, batch):
                size = min(batch, n - start)
                status, body = box.api("POST", "/jobs", body={"jobs": [{"command": JOB}] * size})
                assert status == 201, body
                ids += [j["id"] for j in body["jobs"]]
        else:
            status, job = box.api("POST", "/jobs", body={"command": TASK, "array": f"1-{n}"})
            assert status == 201, job
            ids.append(job["id"])
        box.scale()  # with the whole backlog queued: the scheduled functions' worst case
        box.reconcile()
        box.start_submitted_workers()

        def finished():
            counts = box.store.counts("batch")
            return sum(counts.get(s, 0) for s in ("SUCCEEDED", "FAILED", "CANCELLED")) == len(ids)

        box.wait_for(f"{name}: all finished", finished, timeout=max(120, n * 0.5), every=0.5)
        box.join_workers(60)  # they idle out: their last empty receives count too
        box.stop_stream()
        while box.deliver():
            pass
        assert box.backend.queue.backlog("batch") == 0
        failed = [d for d in box.store.get_many(ids).values() if d["state"] != "SUCCEEDED"]
        assert not failed, failed[:1]
        return Phase(name, n, list(box.meter.calls), list(box.invocations), Counter(box.output_bytes),
                     time.perf_counter() - started, box.config.definition("standard").chunk_size)


@dataclass
class RunCosts:
    """What a running job pays while it runs (hyperbatch.core.cadence), each priced from calls made in a box."""

    check: float  # one look at the store (an eventually consistent read), with the flush that follows it
    first_registration: float  # the registration half way through the claim's lease, hiding the message
    renewal: float  # each later registration
    entry_minute: float  # the reconciler's run a minute, per registered run it lists
    calls: dict  # what each was measured from, for the report


def measure_run(memory: dict[str, int], looks: int, entries: int) -> RunCosts:
    """A running job's looks and registrations, made as its worker's heartbeat thread makes them (the
    dispatcher's `check`, `register`, then the queue's ack flush), with the release function handling
    the records they write; and the reconciler's run with `entries` registered runs of live Batch
    workers against one with none: the calls of a run's whole life, from the code itself, without
    waiting out the intervals."""
    from hyperbatch.wiring.worker import worker_from_environment
    from tests.aws_box.harness import acting_as

    box = Box(settings=PRODUCTION_SETTINGS, definitions={"idle_timeout_seconds": 1.5}, claim_wait=1,
              stream_interval=1.0, memory_mb=memory, keep_output=False)
    with box:
        listen(box)
        box.start_stream()
        status, job = box.api("POST", "/jobs", body={"command": JOB})
        assert status == 201, job
        box.wait_for("the job's work sent", lambda: box.backend.queue.backlog("batch") > 0, timeout=30)
        target = box.targets[box.region]["default"]
        batch = box.client("batch")

        def batch_worker() -> str:
            job_id = batch.submit_job(jobName="hb-5-batch-1", jobQueue=target["job_queue"],
                                      jobDefinition=next(iter(target["job_definitions"].values())))["jobId"]
            box.set_batch_status(job_id, "RUNNING")
            return job_id

        worker = batch_worker()
        agent = worker_from_environment(box.worker_env("batch", box.region, worker))
        box.stop_stream()  # delivered by hand from here on: each measurement gets the records it wrote

        def measured(what, n: int) -> Phase:
            while box.deliver():  # what came before, handled before the calls are counted
                pass
            calls, invocations = len(box.meter.calls), len(box.invocations)
            started = time.perf_counter()
            for _ in range(n):
                what()
            while box.deliver():
                pass
            return Phase("run", n, list(box.meter.calls[calls:]), list(box.invocations[invocations:]), Counter(),
                         time.perf_counter() - started, 1)

        with acting_as("worker"):
            item = agent.queue.claim("batch", agent.dispatcher.worker, 1, PRODUCTION_SETTINGS["lease_seconds"])
            run = agent.dispatcher.start(item)
            assert run is not None

            def look():
                assert not agent.dispatcher.check(run).lease_lost
                agent.flush()

            def register(first: bool):
                agent.dispatcher.register(run, first=first)
                agent.flush()

            checks = measured(look, looks)
            first = measured(lambda: register(True), 1)
            renewals = measured(lambda: register(False), looks)
        empty = measured(box.reconcile, 1)
        now = time.time()
        for _ in range(entries):  # live workers' registered runs (their jobs' ids are never read: they live)
            box.runs.hold({"host": f"{box.region}/{batch_worker()}", "job_id": run.job["id"], "attempt": 1,
                           "chunk": "", "queue": "batch", "item": "m", "receipt": "r", "at": now, "lease": 3600})
        full = measured(box.reconcile, 1)
    # The Query's bytes per entry, and the Lambda time they add (noisy: never taken as negative).
    calls, no_calls = Bill(), Bill()
    price_calls([c for c in full.calls if c.actor in SCHEDULED], DynamoModel(), calls)
    price_calls([c for c in empty.calls if c.actor in SCHEDULED], DynamoModel(), no_calls)
    lambda_time = (full.price(memory)[1].total() - calls.total()) - (empty.price(memory)[1].total() - no_calls.total())
    reconciler = (calls.total() - no_calls.total() + max(0.0, lambda_time)) / entries
    return RunCosts(
        check=checks.price(memory)[0].total() / looks,
        first_registration=first.price(memory)[0].total(),
        renewal=renewals.price(memory)[0].total() / looks,
        entry_minute=max(0.0, reconciler),
        calls={"look": dict(checks.count(MEASURED)), "first registration": dict(first.count(MEASURED)),
               "registration": dict(renewals.count(MEASURED)),
               "reconciler, per registered run": {k: round(v / entries, 3) for k, v in
                                                  (full.count(SCHEDULED) - empty.count(SCHEDULED)).items()}},
    )


def while_running(costs: RunCosts, cadence, seconds: float) -> tuple[float, str]:
    """USD a job running `seconds` pays for its looks, registrations and the reconciler's watch, and how."""
    looks, writes = cadence.checks_within(seconds), cadence.renewals_within(seconds)
    watched_minutes = max(0.0, seconds - cadence.register_at) / 60 if writes else 0.0
    usd = (looks * costs.check + (costs.first_registration if writes else 0.0)
           + max(0, writes - 1) * costs.renewal + watched_minutes * costs.entry_minute)
    return usd, f"{looks} looks, {writes} registrations, {watched_minutes:.1f} minutes watched by the reconciler"


# ---- report -----------------------------------------------------------------------------------

def per_million(usd: float, units: int) -> float:
    return usd / units * 1e6


def report(phase: Phase, memory: dict[str, int], jobs_per_minute: float, label: str) -> float:
    n = phase.units
    bill, scheduled = phase.price(memory)
    calls, scheduled_calls = phase.count(MEASURED), phase.count(SCHEDULED)
    scheduled_per_unit = scheduled.total() / jobs_per_minute
    total = per_million(bill.total(), n) + scheduled_per_unit * 1e6
    invocations = Counter(i.function for i in phase.invocations)
    print(f"\n== {label}: {n} {'tasks' if phase.name == 'array' else 'jobs'} "
          f"({phase.seconds:.1f} s in the box; invocations {dict(invocations)})")
    print(f"   {'AWS calls (api, release, worker)':<44} {'per unit':>10}   {'USD per million':>15}")
    for op, count in sorted(calls.items(), key=lambda kv: (-bill.usd.get(kv[0], 0), kv[0])):
        usd = per_million(bill.usd.get(op, 0.0), n)
        extra = ""
        if op.startswith("dynamodb:") and (bill.units.get((op, "WRU")) or bill.units.get((op, "RRU"))):
            extra = (f"  ({bill.units.get((op, 'WRU'), 0) / n:.3g} WRU, "
                     f"{bill.units.get((op, 'RRU'), 0) / n:.3g} RRU per unit)")
        print(f"   {op:<44} {count / n:>10.4f}   {usd:>15.4f}{extra}")
    for line, usd in sorted(bill.usd.items(), key=lambda kv: -kv[1]):
        if line not in calls and usd:
            amount = ", ".join(f"{v / n:.4g} {u}" for (name, u), v in bill.units.items() if name == line)
            print(f"   {line:<44} {'':>10}   {per_million(usd, n):>15.4f}  {amount and '(' + amount + ' per unit)'}")
    print(f"   {'scaler + reconciler runs, amortised':<44} {'':>10}   {scheduled_per_unit * 1e6:>15.4f}"
          f"  (a run of each: {scheduled.total() * 1e6:.1f} µUSD, {sum(scheduled_calls.values())} calls: "
          + ", ".join(f"{op} {k}" for op, k in sorted(scheduled_calls.items())) + ")")
    by_service = {k: per_million(v, n) for k, v in bill.by_service().items() if v}
    print("   by service (USD per million): " + ", ".join(
        f"{k} {v:.3f}" for k, v in sorted(by_service.items(), key=lambda kv: -kv[1])))
    output, ingested = job_output([c for c in phase.calls if c.actor in MEASURED])
    if output:
        usd_per_mkb = ingested / output * KB / 1e9 * prices.CLOUDWATCH_LOGS_INGEST_PER_GB * 1e6
        here = per_million(ingested / 1e9 * prices.CLOUDWATCH_LOGS_INGEST_PER_GB, n)
        print(f"   job output: {output} bytes, {ingested} ingested (26 bytes an event): CloudWatch Logs "
              f"${usd_per_mkb:.3f} per million KB of output; ${here:.4f} per million units here "
              f"(not in the figures above)")
    if phase.name == "array":
        workers = [c for c in phase.calls if c.actor == "worker"]
        chunks = sum(len(c.params.get("Entries", [])) if c.operation == "DeleteMessageBatch" else 1
                     for c in workers if c.service == "sqs" and c.operation.startswith("DeleteMessage"))
        worker_bill = Bill()
        model = DynamoModel()
        for call in phase.calls:
            if call.actor in MEASURED:
                price_calls([call], model, worker_bill if call.actor == "worker" else Bill())
        per_chunk = worker_bill.total() / max(1, chunks)
        fixed = bill.total() - worker_bill.total()
        steady = (per_chunk / phase.chunk_size + scheduled_per_unit) * 1e6
        full = math.ceil(n / phase.chunk_size)  # the chunks this array takes at the configured size
        ramp = max(0, chunks - full) * per_chunk
        print(f"   workers' calls: {chunks} chunks, {per_chunk * 1e6:.2f} µUSD a chunk; at the configured "
              f"chunk size ({phase.chunk_size}) an array costs ${steady:.3f} per million tasks, whatever the "
              f"load (the figure below); measured here: ${total:.3f}")
        print(f"   apart from it, once per array: {fixed * 1e6:.1f} µUSD (submit, release, metrics) and the "
              f"chunks' ramp-up, {chunks - full} chunks more than {full} (workers start at one task a chunk and "
              f"double while tasks are quick: how far depends on the machine's load): {ramp * 1e6:.1f} µUSD")
        return steady
    return total


SUGGESTIONS = """
Targets missed. Per job the floor is three item writes (submit, start, finish: 1 WRU each under 1 KB),
one by_owner entry for a lone job, and three SQS requests (send, receive, delete) less what batching
saves. Look above for the line that exceeds that, in this order: index writes (UpdateItem WRU above
1 per call), reads on the claim path, SQS requests per job, Lambda GB-s.
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200, help="single jobs, and batched jobs, to run")
    parser.add_argument("--array", type=int, default=20_000,
                        help="tasks of the array job (big enough that the workers' chunk ramp-up is amortised)")
    parser.add_argument("--batch", type=int, default=1000, help="jobs per POST in the batched run (max 1000)")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="array tasks a worker claims at most (default: the configured definition's)")
    parser.add_argument("--beats", type=int, default=10, help="looks and registrations of one running job to measure")
    parser.add_argument("--entries", type=int, default=50, help="registered runs the reconciler lists, to price one")
    parser.add_argument("--jobs-per-day", type=float, default=1_000_000,
                        help="throughput the scheduled functions' cost is spread over")
    feed = parser.add_mutually_exclusive_group()
    feed.add_argument("--event-rule", action="store_true",
                      help="price it with a user's rule on the default bus for source hyperbatch: every job "
                           "state change put on EventBridge (three events, $3, per million plain jobs)")
    feed.add_argument("--no-event-bus", action="store_true",
                      help="price a deployment with settings.notifications.event_bus false (state changes "
                           "never put, and no ListRules)")
    args = parser.parse_args(argv)
    global EVENT_RULE
    if args.no_event_bus:  # what the scheduler itself costs, without the optional feed of state changes
        PRODUCTION_SETTINGS["notifications"] = {"event_bus": False}
        deployment = "settings.notifications.event_bus false: job state changes never put"
    elif args.event_rule:
        EVENT_RULE = {"source": [EVENT_SOURCE], "detail-type": [STATE_CHANGE_DETAIL_TYPE]}
        deployment = "a user's rule on the default bus reads the job state changes: every one is put"
    else:
        deployment = ("as shipped, no user's rule on the default bus: job state changes not put "
                      "(--event-rule prices them put)")
    memory = function_memory()
    jobs_per_minute = args.jobs_per_day / 1440
    print(f"deployment: {deployment}")
    print(f"prices: {prices.PRICES_AS_OF}; function memory (MiB, stacks/control_plane.py): {memory}")
    print(f"scheduled functions: a scaler and a reconciler run a minute, spread over {jobs_per_minute:.0f} "
          f"jobs a minute ({args.jobs_per_day:,.0f} a day)")
    phases = [run_phase("single", args.jobs, args.batch, memory, args.chunk_size),
              run_phase("batched", args.jobs, args.batch, memory, args.chunk_size),
              run_phase("array", args.array, args.batch, memory, args.chunk_size)]
    costs = measure_run(memory, args.beats, args.entries)
    x = report(phases[0], memory, jobs_per_minute, "single jobs, one POST each")
    y = report(phases[1], memory, jobs_per_minute, f"jobs in POSTs of up to {args.batch}")
    z = report(phases[2], memory, jobs_per_minute, "one array")
    cadence = Settings(main_region=prices.REGION, **PRODUCTION_SETTINGS).cadence()
    print(f"\n== a running job (heartbeat {cadence.first_check:g} s, looks at most {cadence.most_between_checks:g} s "
          f"apart, registered at {cadence.register_at:g} s with a {cadence.run_lease:g} s lease, renewed every "
          f"{cadence.renew_every:g} s)")
    print(f"   a look {costs.check * 1e6:.3f} µUSD, the first registration {costs.first_registration * 1e6:.3f} µUSD, "
          f"a later one {costs.renewal * 1e6:.3f} µUSD, a registered run watched by the reconciler "
          f"{costs.entry_minute * 1e6:.4f} µUSD a minute")
    for what, calls in costs.calls.items():
        print(f"   {what}: {calls}")
    long_jobs = {}
    for label, seconds in (("1min", 60), ("1h", 3600)):
        usd, how = while_running(costs, cadence, seconds)
        long_jobs[label] = x + per_million(usd, 1)
        print(f"   a {label} job: {how}: {usd * 1e6:.2f} µUSD while it runs, ${long_jobs[label]:.2f} per million such jobs")
    print(f"   a qdel reaches a running job within {cadence.first_check:g} s in its first "
          f"{2 * cadence.first_check:g} s, within half its age later, within {cadence.longest_silence():g} s at most; "
          f"a worker whose Batch job ended loses its registered run within a reconciler minute")
    print()
    print(f"cost_per_million_jobs_usd: {x:.2f}")
    print(f"cost_per_million_batched_jobs_usd: {y:.2f}")
    print(f"cost_per_million_array_tasks_usd: {z:.3f}")
    print(f"cost_per_million_jobs_1min_usd: {long_jobs['1min']:.2f}")
    print(f"cost_per_million_jobs_1h_usd: {long_jobs['1h']:.2f}")
    targets = [("one per request", x, 6.0), ("batched", y, 3.0), ("array tasks", z, 0.10),
               ("a 1-hour job", long_jobs["1h"], 10.0)]
    for what, got, want in targets:
        print(f"target {what}: under ${want:g} per million -> {'met' if got <= want else 'MISSED'} (${got:.3f})")
    if any(got > want for _, got, want in targets):
        print(SUGGESTIONS)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a million jobs cost on AWS: every AWS call of the scheduler, counted in AWS-in-a-box, priced.

    .venv/bin/python bench/aws_cost.py [--jobs N] [--array N] [--jobs-per-day R]

Three runs, each in a fresh box (tests/aws_box/harness.py: the Lambda handlers
and worker agents on moto): N single jobs submitted one per POST; N jobs
submitted in POSTs of up to 1,000; one array of N tasks. Each job and task
echoes one line.
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
from hyperbatch.names import INDEX_PROJECTIONS, INDEXES  # noqa: E402
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
FINAL_SUFFIXES = ("#SUCCEEDED", "#FAILED", "#CANCELLED")
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
    """Request units per call, remembering item sizes by key (an update's cost depends on the old item).

    `keys_only`: price the indexes as if they projected KEYS_ONLY (a what-if): an index entry is
    then under 1 KB, and written only when the item enters or leaves the index or its key changes.
    `plain_submit`: price a one-item TransactWriteItems as a conditional PutItem (a what-if).
    `sparse_final`: by_queue_state holds only jobs not yet final (a what-if): a final transition
    deletes the job's entry instead of moving it.
    """

    def __init__(self, keys_only: bool = False, plain_submit: bool = False, sparse_final: bool = False,
                 sqs_batch: int = 1, platform_log_bytes: int = PLATFORM_LOG_BYTES, queue_key: bool = False,
                 projections: dict | None = None):
        self.sizes: dict[str, int] = {}
        self.projections = INDEX_PROJECTIONS if projections is None else projections
        self.index_keys: dict[str, dict[str, str]] = {}  # job id -> index -> its key value, as last written
        self.entries: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # index -> [bytes, entries] written
        self.platform_log_bytes = platform_log_bytes  # what-if: Lambda's system log level WARN drops them
        # what-if: by_queue_state keyed by queue alone while a job is not final (its state filtered after
        # a BatchGetItem of the page): moves between QUEUED, RUNNING, HELD, WAITING write no index.
        self.queue_key = queue_key
        self.keys_only, self.plain_submit, self.sparse_final = keys_only, plain_submit, sparse_final
        self.sqs_batch = sqs_batch  # a what-if for SqsWorkQueue: workers receive and delete 10 at a time

    def _index_put(self, size: int) -> int:
        return 1 if self.keys_only else write_units(size)

    def _entry_size(self, item: dict, index: str) -> int:
        """Bytes of the item's entry in `index`: the whole item (ALL) or its keys and projected attributes."""
        projected = self.projections.get(index)
        if projected is None:
            return item_size(item)
        keep = {"pk", "sk", *INDEXES[index], *projected}
        size = item_size({k: v for k, v in item.items() if k in keep})
        self.entries[index][0] += size
        self.entries[index][1] += 1
        return size

    def _mean_entry(self, index: str) -> int:
        total, n = self.entries[index]
        return int(total / n) if n else 100

    def _put_indexes(self, item: dict) -> int:
        """WRU of a new item's index entries (remembering its index keys for later updates)."""
        if "pk" in item and item.get("sk", {}).get("S") == "job":
            self.index_keys[item["pk"]["S"]] = {i: item[INDEX_KEYS[i]]["S"] for i in self._indexes(item)}
        if self.keys_only:
            return len(self._indexes(item))
        return sum(write_units(self._entry_size(item, index)) for index in self._indexes(item))

    def mean_job(self) -> int:
        sizes = [s for k, s in self.sizes.items() if not k.startswith("edge:")]
        return int(sum(sizes) / len(sizes)) if sizes else 1024

    def _learn(self, item: dict) -> int:
        size = item_size(item)
        if "pk" in item and "sk" in item:
            key = item["pk"]["S"] if item["sk"]["S"] == "job" else f"edge:{item['pk']['S']}:{item['sk']['S']}"
            self.sizes[key] = size
        return size

    @staticmethod
    def _indexes(item: dict) -> list[str]:
        return [index for index, key in INDEX_KEYS.items() if key in item]

    def units(self, call: Call) -> tuple[float, float]:
        """(read units, write units) of one DynamoDB call."""
        op, params, response = call.operation, call.params, call.response or {}
        if op == "TransactWriteItems":
            wru = 0.0
            actions = params.get("TransactItems", [])
            factor = 1 if self.plain_submit and len(actions) == 1 else 2
            for action in actions:
                put = action.get("Put")
                if put:
                    size = self._learn(put["Item"])
                    wru += factor * write_units(size) + self._put_indexes(put["Item"])
                else:
                    wru += 2  # condition checks, updates, deletes: none used today
            return 0.0, wru
        if op in ("PutItem",):
            size = self._learn(params["Item"])
            return 0.0, write_units(size) + self._put_indexes(params["Item"])
        if op == "UpdateItem":
            key = params["Key"]["pk"]["S"]
            before = self.sizes.get(key)
            if call.error == "ConditionalCheckFailedException":
                old = response.get("Item")
                return 0.0, write_units(item_size(old) if old else before or self.mean_job())
            after_item = response.get("Attributes")
            after = self._learn(after_item) if after_item else (before or self.mean_job())
            size = max(after, before or after)
            wru = write_units(size)
            names = set((params.get("ExpressionAttributeNames") or {}).values())
            placeholders = params.get("ExpressionAttributeNames") or {}
            updated = {placeholders.get(t, t) for t in re.findall(r"#\w+", params.get("UpdateExpression", ""))}
            known = self.index_keys.get(key, {})
            indexed = self._indexes(after_item) if after_item else ["by_owner", "by_queue_state"]
            counters = "pending" in names and after_item is not None and "NULL" not in after_item.get("array", {})
            final = after_item is not None and after_item.get("gsi2pk", {}).get("S", "").endswith(FINAL_SUFFIXES)
            for index in indexed:
                moved = INDEX_KEYS[index] in names
                if moved and index == "by_queue_state" and final and self.sparse_final:
                    wru += 1  # the entry is only deleted
                elif moved and index == "by_queue_state" and self.queue_key:
                    wru += 0
                elif self.keys_only:
                    # by_queue_state would INCLUDE array and pending (DynamoJobStore.pending_tasks reads them).
                    wru += 2 if moved else (1 if index == "by_queue_state" and counters else 0)
                elif after_item is None or self.projections.get(index) is None:
                    wru += write_units(after) + (write_units(before or after) if moved else 0)
                else:
                    new_key = after_item[INDEX_KEYS[index]]["S"]
                    old_key = known.get(index)
                    moved = (old_key != new_key) if old_key is not None else moved
                    entry = write_units(self._entry_size(after_item, index))
                    if moved:
                        wru += 2 * entry if old_key is not None else entry  # delete + put, or only a put
                    elif updated & set(self.projections[index]):
                        wru += entry
            if after_item is not None:
                self.index_keys[key] = {i: after_item[INDEX_KEYS[i]]["S"] for i in self._indexes(after_item)}
            return 0.0, wru
        if op == "BatchWriteItem":
            wru = 0.0
            for requests in params.get("RequestItems", {}).values():
                for request in requests:
                    if "PutRequest" in request:
                        item = request["PutRequest"]["Item"]
                        size = self._learn(item)
                        wru += write_units(size) + self._put_indexes(item)
                    else:
                        wru += write_units(self.mean_job()) + 2 * self._index_put(self.mean_job())
            return 0.0, wru
        if op == "GetItem":
            item = response.get("Item")
            consistent = bool(params.get("ConsistentRead"))
            if item and "ProjectionExpression" not in params:
                size = self._learn(item)
            else:
                size = self.sizes.get(params["Key"]["pk"]["S"], self.mean_job())
            return read_units(size, consistent), 0.0
        if op == "BatchGetItem":
            rru = 0.0
            for table, request in params.get("RequestItems", {}).items():
                consistent = bool(request.get("ConsistentRead"))
                for item in response.get("Responses", {}).get(table, []):
                    rru += read_units(self._learn(item), consistent)
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
                total = sum(self._learn(i) for i in items) + (scanned - len(items)) * self.mean_job()
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
            batched = call.operation == "DeleteMessage" or (
                call.operation == "ReceiveMessage" and (call.response or {}).get("Messages"))
            if call.actor == "worker" and batched:
                requests /= model.sqs_batch
            bill.add(line, requests * prices.SQS_PER_REQUEST, "requests", requests)
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


def run_phase(name: str, n: int, batch: int, memory: dict[str, int], chunk_size: int | None) -> Phase:
    definitions = {"idle_timeout_seconds": 1.5, **({"chunk_size": chunk_size} if chunk_size else {})}
    box = Box(settings={"lease_seconds": 60, "heartbeat_seconds": 15}, definitions=definitions,
              claim_wait=1, stream_interval=1.0, memory_mb=memory, keep_output=False)
    started = time.perf_counter()
    with box:
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


# ---- report -----------------------------------------------------------------------------------

def per_million(usd: float, units: int) -> float:
    return usd / units * 1e6


def total_per_million(phase: Phase, memory: dict[str, int], jobs_per_minute: float,
                      model: DynamoModel | None = None) -> float:
    bill, scheduled = phase.price(memory, model)
    return per_million(bill.total(), phase.units) + scheduled.total() / jobs_per_minute * 1e6


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
        chunks = sum(1 for c in workers if c.service == "sqs" and c.operation == "DeleteMessage")
        worker_bill = Bill()
        model = DynamoModel()
        for call in phase.calls:
            if call.actor in MEASURED:
                price_calls([call], model, worker_bill if call.actor == "worker" else Bill())
        per_chunk = worker_bill.total() / max(1, chunks)
        fixed = bill.total() - worker_bill.total()
        steady = (per_chunk / phase.chunk_size + scheduled_per_unit) * 1e6
        print(f"   workers' calls: {chunks} chunks, {per_chunk * 1e6:.2f} µUSD a chunk (ramp-up included); at full "
              f"chunks of {phase.chunk_size} a big array costs about ${steady:.3f} per million tasks "
              f"(plus {fixed * 1e6:.1f} µUSD once per array: submit, release, metrics)")
    return total


def what_if(phases: list[Phase], memory: dict[str, int], jobs_per_minute: float) -> None:
    better = dict(keys_only=True, plain_submit=True, sparse_final=True)
    variants = [
        ("as measured (job indexes as names.INDEX_PROJECTIONS)", DynamoModel, memory),
        ("1. indexes KEYS_ONLY (by_queue_state INCLUDE array, pending)", lambda: DynamoModel(keys_only=True), memory),
        ("2. + a lone job submitted with PutItem, not a transaction",
         lambda: DynamoModel(keys_only=True, plain_submit=True), memory),
        ("3. + by_queue_state without final jobs (finish = 1 delete)", lambda: DynamoModel(**better), memory),
        ("4. + workers receive and delete SQS messages 10 at a time",
         lambda: DynamoModel(**better, sqs_batch=10), memory),
        ("5. + API function at 512 MiB (same duration)",
         lambda: DynamoModel(**better, sqs_batch=10), {**memory, "api": 512}),
        ("6. + functions' system log level WARN (no platform lines)",
         lambda: DynamoModel(**better, sqs_batch=10, platform_log_bytes=0), {**memory, "api": 512}),
        ("7. + by_queue_state keyed by queue alone while not final",
         lambda: DynamoModel(**better, sqs_batch=10, platform_log_bytes=0, queue_key=True), {**memory, "api": 512}),
    ]
    print("\nwhat-if, re-pricing the same calls (USD per million; estimates):")
    print(f"   {'':<62} {'single':>9} {'batched':>9} {'array':>9}")
    for label, model, mem in variants:
        figures = [total_per_million(p, mem, jobs_per_minute, model()) for p in phases]
        print(f"   {label:<62} " + " ".join(f"{f:>9.3f}" for f in figures))


SUGGESTIONS = """
Targets missed. What dominates, and what would cut it (the what-if rows above price some steps on the
same calls; all are core or adapter changes, for the owners of those files):
 - DynamoDB writes are most of a job: 3 writes (submit, start, finish), each ~1-2 WRU for the item plus
   1 WRU per job index entry whose projected attributes change (both job indexes project `state`, so
   every state change writes both), and the finish moves the job in by_queue_state (delete + put).
   (a) drop `state` from by_owner's projection (names.INDEX_PROJECTIONS): start and finish then write
       no by_owner entry (2 WRU a job); owner queries filtered by state then filter after the fetch.
   (b) dynamo.update_request: REMOVE gsi2pk when the state becomes final (finished jobs are listed
       through by_owner): the finish deletes one index entry instead of moving it (what-if 3).
 - SQS, 3 requests a job: (4) SqsWorkQueue.claim with MaxNumberOfMessages=10 (the agent holds the
   extra messages, extending them with ChangeMessageVisibilityBatch) and a DeleteMessageBatch of acks.
 - Batched submits: under $3 needs BatchWriteItem (1x) for batches, which needs ids that cannot collide
   across processes (hyperbatch/ids.py: a random sequence start per millisecond lets two 1,000-job
   batches in the same ms overlap), or fewer writes per job (e.g. no RUNNING write for jobs shorter
   than a heartbeat).
 - Arrays: per chunk a worker pays ReceiveMessage, SendMessage (the tail), DeleteMessage and two
   read+write rounds on the array item (1-2 KB: chunks, beats, dispatched); `pending` is projected in
   by_queue_state, so each claim also writes that entry. The chunk size divides all of it; the agent
   starts each worker at 1 task a chunk and doubles (hyperbatch/agent.py), so small arrays pay the ramp.
 - Heartbeats are not in these figures (an `echo` ends before its first beat): each beat is an UpdateItem
   of the item alone (no projected attribute changes) and a ChangeMessageVisibility, every
   heartbeat_seconds (15 s).
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200, help="single jobs, and batched jobs, to run")
    parser.add_argument("--array", type=int, default=2000, help="tasks of the array job")
    parser.add_argument("--batch", type=int, default=1000, help="jobs per POST in the batched run (max 1000)")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="array tasks a worker claims at most (default: the configured definition's)")
    parser.add_argument("--jobs-per-day", type=float, default=1_000_000,
                        help="throughput the scheduled functions' cost is spread over")
    args = parser.parse_args(argv)
    memory = function_memory()
    jobs_per_minute = args.jobs_per_day / 1440
    print(f"prices: {prices.PRICES_AS_OF}; function memory (MiB, stacks/control_plane.py): {memory}")
    print(f"scheduled functions: a scaler and a reconciler run a minute, spread over {jobs_per_minute:.0f} "
          f"jobs a minute ({args.jobs_per_day:,.0f} a day)")
    phases = [run_phase("single", args.jobs, args.batch, memory, args.chunk_size),
              run_phase("batched", args.jobs, args.batch, memory, args.chunk_size),
              run_phase("array", args.array, args.batch, memory, args.chunk_size)]
    x = report(phases[0], memory, jobs_per_minute, "single jobs, one POST each")
    y = report(phases[1], memory, jobs_per_minute, f"jobs in POSTs of up to {args.batch}")
    z = report(phases[2], memory, jobs_per_minute, "one array")
    what_if(phases, memory, jobs_per_minute)
    print()
    print(f"cost_per_million_jobs_usd: {x:.2f}")
    print(f"cost_per_million_batched_jobs_usd: {y:.2f}")
    print(f"cost_per_million_array_tasks_usd: {z:.3f}")
    targets = [("one per request", x, 6.0), ("batched", y, 3.0), ("array tasks", z, 0.10)]
    for what, got, want in targets:
        print(f"target {what}: under ${want:g} per million -> {'met' if got <= want else 'MISSED'} (${got:.3f})")
    if any(got > want for _, got, want in targets):
        print(SUGGESTIONS)
    return 0


if __name__ == "__main__":
    sys.exit(main())

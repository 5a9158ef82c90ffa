"""JobStore on one DynamoDB table (the CDK stack's `<stack>-jobs`, see stacks/storage.py).

Items
-----
A job is one item; its document's fields are top-level attributes, so one
UpdateItem can check and change single fields, counters and map entries:

    pk = <job id>   sk = "job"
    gsi1pk = owner          gsi1sk = job id   (index by_owner: a user's jobs, newest first)
    gsi2pk = "queue#active" while the job is not final (WAITING, HELD, QUEUED, RUNNING),
             "queue#<state>" once it is (SUCCEEDED, FAILED, CANCELLED)
                            gsi2sk = job id   (index by_queue_state: a queue's jobs by state)
    expires_at = finished_at + job_retention_days   (TTL, set when the job reaches a final state)

A job moves in by_queue_state at most once in its life, when it finishes
(final states have no way out); moves between active states only rewrite the
small index entry. Both job indexes project only what queries filter or sum
on (names.INDEX_PROJECTIONS: state, queue; state, array, pending); a query
reads ids from the index and fetches the page's items with one strongly
consistent BatchGetItem (per 100). A specific active state is a filter on the
projected `state` within "queue#active".

Job ids begin with a millisecond timestamp, so sorting by id is sorting by
submit time; DynamoDB hashes `pk`, so a burst of submits (consecutive ids)
still spreads over every partition. A dependency edge is an item of its own
in the child's item collection:

    pk = <child id>   sk = "parent#<parent id>"   gsi3pk = parent id   gsi3sk = child id   (index by_parent)

Edge items carry no gsi1/gsi2 attributes, so they never show in job queries,
and `hyperbatch.aws.events` skips them in the stream.

Consistency: `get` and `get_many` read strongly consistent (dependency
release reads a parent right after the stream said it finished). Queries and
counts go through global secondary indexes, which are eventually consistent
(typically well under a second behind).

Numbers: DynamoDB has one number type. Floats go in as Decimal (via their
shortest repr, so they round-trip exactly) and come back as int when integral,
else float — `encode`/`decode` are the one place this happens.
"""

from __future__ import annotations

import heapq
import math
import sys
import threading
import time
import uuid
from collections import OrderedDict
from decimal import Decimal
from enum import Enum
from typing import Any, Callable, Iterable, Iterator

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from ..errors import Conflict, NotFound, StaleTransition
from ..model import Change, Expect
from ..names import INDEXES
from ..ports import Page
from ..states import FINAL, JobState

JOB_SK = "job"
EDGE_SK_PREFIX = "parent#"
TTL_ATTRIBUTE = "expires_at"
PUT_TOKEN = "put_token"  # a lone job's create call, so that a retried PutItem can recognise its own write
# Attributes that are keys or bookkeeping, not fields of the job document.
KEY_ATTRIBUTES = frozenset(
    {"pk", "sk", TTL_ATTRIBUTE, PUT_TOKEN, *(k for pair in INDEXES.values() for k in pair)}
)

ALL_STATES = tuple(s.value for s in JobState)
FINAL_STATES = frozenset(s.value for s in FINAL)
ACTIVE_STATES = tuple(s for s in ALL_STATES if s not in FINAL_STATES)
ACTIVE = "active"  # the by_queue_state partition of a queue's jobs that are not final

# TransactWriteItems: at most 100 actions and 4 MB per call.
TRANSACTION_ITEMS = 100
TRANSACTION_BYTES = 4 * 1024 * 1024 - 64 * 1024  # headroom: our size estimate is not DynamoDB's exact one
TRANSACTION_RETRIES = 5
BATCH_GET_KEYS = 100  # BatchGetItem limit
UNPROCESSED_RETRIES = 8
QUEUE_CACHE_SIZE = 100_000


# ---- numbers and types: the one place Python values meet DynamoDB attribute values ----------

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"DynamoDB cannot store the number {value}")
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {str(k): _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    return value


def encode(value: Any) -> dict:
    """A Python value as a DynamoDB attribute value ({"S": ...}, {"N": ...}, {"M": ...}, ...)."""
    return _serializer.serialize(_to_dynamo(value))


def decode(attribute: dict) -> Any:
    return _from_dynamo(_deserializer.deserialize(attribute))


def doc_from_item(item: dict) -> dict:
    """The job document of a job item (key and TTL attributes dropped)."""
    return {k: decode(v) for k, v in item.items() if k not in KEY_ATTRIBUTES}


def _state(value: Any) -> str:
    return value.value if isinstance(value, JobState) else value


def queue_state_key(queue: str, state: str) -> str:
    """by_queue_state partition of a job in `state`: one for all active states, one per final state."""
    state = _state(state)
    return f"{queue}#{state if state in FINAL_STATES else ACTIVE}"


def moves_index(expect: Expect, change: Change) -> bool:
    """Whether `change` may move the job in by_queue_state (and so needs the job's queue).

    Only a change of queue, a move into a final state, or one that might leave a
    final state (not ruled out by `expect.states`) can change gsi2pk.
    """
    if "queue" in change.set:
        return True
    if "state" not in change.set:
        return False
    if _state(change.set["state"]) in FINAL_STATES:
        return True
    return expect.states is None or any(_state(s) in FINAL_STATES for s in expect.states)


def expiry(finished_at: float | None, retention_seconds: float, now: float) -> int:
    """TTL epoch seconds for a job that finished at `finished_at` (now if unknown)."""
    return int((finished_at if finished_at is not None else now) + retention_seconds)


def job_item(doc: dict, retention_seconds: float, now: float) -> dict:
    item = {k: encode(v) for k, v in doc.items()}
    item["pk"] = {"S": doc["id"]}
    item["sk"] = {"S": JOB_SK}
    if doc.get("owner"):  # an index key may not be empty
        item["gsi1pk"] = {"S": doc["owner"]}
        item["gsi1sk"] = {"S": doc["id"]}
    item["gsi2pk"] = {"S": queue_state_key(doc["queue"], doc["state"])}
    item["gsi2sk"] = {"S": doc["id"]}
    if doc["state"] in FINAL_STATES:
        item[TTL_ATTRIBUTE] = {"N": str(expiry(doc.get("finished_at"), retention_seconds, now))}
    return item


def edge_item(parent: str, child: str) -> dict:
    return {
        "pk": {"S": child},
        "sk": {"S": EDGE_SK_PREFIX + parent},
        "gsi3pk": {"S": parent},
        "gsi3sk": {"S": child},
    }


def _item_bytes(item: dict) -> int:
    """An over-estimate of an item's size as DynamoDB counts it (names plus values)."""
    return len(repr(item).encode())


# ---- expressions ----------------------------------------------------------------------------

class _Expression:
    """Placeholders for names (#n0, #n1, ...) and values (:v0, ...): no reserved-word surprises."""

    def __init__(self):
        self.names: dict[str, str] = {}
        self.values: dict[str, dict] = {}
        self._by_name: dict[str, str] = {}

    def name(self, attribute: str) -> str:
        if attribute not in self._by_name:
            placeholder = f"#n{len(self._by_name)}"
            self._by_name[attribute] = placeholder
            self.names[placeholder] = attribute
        return self._by_name[attribute]

    def value(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = encode(value)
        return placeholder


def _normalise(change: Change) -> tuple[dict, dict, dict, dict]:
    """Fold a Change into parts that name disjoint document paths, with `model.apply`'s order.

    `apply` sets, then adds, then sets map entries, then deletes map entries.
    DynamoDB refuses two actions on overlapping paths in one expression, so
    anything that touches a field also being set is computed here instead.
    """
    sets = {k: (v.value if isinstance(v, JobState) else v) for k, v in change.set.items() if k != "version"}
    adds: dict[str, int] = {}
    for key, delta in change.add.items():
        if key == "version":
            continue  # `apply` overwrites version with old + 1 whatever the change says
        if key in sets:
            sets[key] = (sets[key] or 0) + delta
        else:
            adds[key] = adds.get(key, 0) + delta
    map_set: dict[str, dict] = {}
    for key, entries in change.map_set.items():
        if key in sets:
            sets[key] = {**(sets[key] or {}), **entries}
        elif entries:
            map_set[key] = {str(k): v for k, v in entries.items()}
    map_del: dict[str, list[str]] = {}
    for key, keys in change.map_del.items():
        gone = {str(k) for k in keys}
        if key in sets:
            sets[key] = {k: v for k, v in (sets[key] or {}).items() if k not in gone}
            continue
        if key in map_set:
            map_set[key] = {k: v for k, v in map_set[key].items() if k not in gone}
            if not map_set[key]:
                del map_set[key]
        if gone:
            map_del[key] = sorted(gone)
    return sets, adds, map_set, map_del


def update_request(
    expect: Expect, change: Change, *, queue: str | None, retention_seconds: float, now: float
) -> dict:
    """UpdateItem parameters (without table and key) that check `expect` and apply `change`.

    `queue` is the job's queue, needed to keep gsi2pk in step when the change
    may move the job in by_queue_state (`moves_index`: into a final state, or
    from one); it is then also checked in the condition, so a wrong guess can
    only fail the write, never index the job under another queue. Moves between
    active states leave gsi2pk alone: its value cannot change.
    """
    sets, adds, map_set, map_del = _normalise(change)
    moving = moves_index(expect, change)
    ex = _Expression()
    set_parts = [f"{ex.name(k)} = {ex.value(v)}" for k, v in sets.items()]
    for key, entries in map_set.items():
        set_parts += [f"{ex.name(key)}.{ex.name(k)} = {ex.value(v)}" for k, v in entries.items()]
    version = ex.name("version")
    set_parts.append(f"{version} = {version} + {ex.value(1)}")
    conditions = [f"attribute_exists({ex.name('pk')})"]
    if "state" in sets:
        if moving:
            target_queue = sets.get("queue", queue)
            if target_queue is None:
                raise ValueError("a state change needs the job's queue to keep the by_queue_state index in step")
            if "queue" not in sets:
                conditions.append(f"{ex.name('queue')} = {ex.value(queue)}")
            set_parts.append(f"{ex.name('gsi2pk')} = {ex.value(queue_state_key(target_queue, sets['state']))}")
        if sets["state"] in FINAL_STATES:
            at = expiry(sets.get("finished_at"), retention_seconds, now)
            set_parts.append(f"{ex.name(TTL_ATTRIBUTE)} = {ex.value(at)}")
    elif "queue" in sets:
        raise ValueError("moving a job to another queue needs its state in the same change")
    remove_parts = []
    if "owner" in sets:
        if sets["owner"]:
            set_parts.append(f"{ex.name('gsi1pk')} = {ex.value(sets['owner'])}")
        else:
            remove_parts.append(ex.name("gsi1pk"))
    for key, keys in map_del.items():
        remove_parts += [f"{ex.name(key)}.{ex.name(k)}" for k in keys]
    add_parts = [f"{ex.name(k)} {ex.value(d)}" for k, d in adds.items()]

    if expect.states is not None:
        states = sorted(s.value if isinstance(s, JobState) else s for s in expect.states)
        if not states:
            conditions.append(f"attribute_not_exists({ex.name('pk')})")  # no state matches: always stale
        else:
            conditions.append(f"{ex.name('state')} IN ({', '.join(ex.value(s) for s in states)})")
    if expect.attempt is not None:
        conditions.append(f"{ex.name('attempt')} = {ex.value(expect.attempt)}")
    if expect.version is not None:
        conditions.append(f"{version} = {ex.value(expect.version)}")
    for key, value in expect.fields:
        if value is None:  # `holds` treats a missing field as None
            conditions.append(
                f"(attribute_not_exists({ex.name(key)}) OR attribute_type({ex.name(key)}, {ex.value('NULL')}))"
            )
        else:
            conditions.append(f"{ex.name(key)} = {ex.value(value)}")

    expression = "SET " + ", ".join(set_parts)
    if remove_parts:
        expression += " REMOVE " + ", ".join(remove_parts)
    if add_parts:
        expression += " ADD " + ", ".join(add_parts)
    return {
        "UpdateExpression": expression,
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeNames": ex.names,
        "ExpressionAttributeValues": ex.values,
    }


# ---- the store ------------------------------------------------------------------------------

class DynamoJobStore:
    """JobStore on DynamoDB; see the module docstring for the item layout.

    `queues` (the configured queue names) lets `query` list jobs by state
    without an owner or queue (the reconciler and `qstat` for admins), as one
    indexed Query per (queue, state): never a Scan.
    """

    def __init__(
        self, table: str, client, *, queues: Iterable[str] = (), retention_days: float = 30,
        clock: Callable[[], float] = time.time,
    ):
        self.table, self.client = table, client
        self.queues = list(queues)
        self.retention_seconds = retention_days * 86400
        self.clock = clock
        # job id -> queue. A job never changes queue, and nearly every update
        # follows a read of the same job in the same process, so this makes a
        # state change's index key known without another read.
        self._queues: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    # ---- queue cache --------------------------------------------------------------------
    def _remember(self, doc: dict) -> dict:
        with self._lock:
            self._queues[doc["id"]] = doc["queue"]
            self._queues.move_to_end(doc["id"])
            while len(self._queues) > QUEUE_CACHE_SIZE:
                self._queues.popitem(last=False)
        return doc

    def queue_of(self, job_id: str) -> str:
        """The job's queue (cached; one small GetItem when not seen before). NotFound if no such job."""
        with self._lock:
            found = self._queues.get(job_id)
        if found is not None:
            return found
        response = self.client.get_item(
            TableName=self.table, Key=self._key(job_id), ProjectionExpression="#q",
            ExpressionAttributeNames={"#q": "queue"},
        )
        if "Item" not in response:
            raise NotFound(f"Unknown Job Id {job_id}")
        queue = decode(response["Item"]["queue"])
        self._remember({"id": job_id, "queue": queue})
        return queue

    @staticmethod
    def _key(job_id: str) -> dict:
        return {"pk": {"S": job_id}, "sk": {"S": JOB_SK}}

    # ---- create -------------------------------------------------------------------------
    def create(self, docs: list[dict], edges: list[tuple[str, str]]) -> None:
        """Write new jobs and their edges, each job conditional on its id being new.

        BatchWriteItem cannot be conditional (it would silently overwrite a job
        whose id exists), so this uses TransactWriteItems: all-or-nothing per
        call of at most 100 actions and 4 MB — 1,000 jobs are 10 calls. Each
        transactional write costs twice the WCUs of a plain one; a submit
        pays that once. A transaction in the stream is one INSERT record per item.

        Across calls, all-or-nothing is kept by compensation: when a later chunk
        fails, the jobs of the chunks already written are deleted again (their
        stream INSERT and REMOVE records pair up; nothing acts on them, since
        no message was sent for these jobs yet). Each call carries a client
        request token, so botocore's retry of a call whose response was lost is
        idempotent instead of failing on our own first write as a Conflict.

        A lone job without edges is one conditional PutItem instead (half the
        write units of a one-item transaction; a single item is all-or-nothing
        anyway). Its retry-safety, as the transaction's request token: the item
        carries a token of this call (`put_token`, not part of the document);
        when the condition fails, the item that is there comes back (ALL_OLD),
        and if it bears our token, botocore retried a call whose response was
        lost and the create succeeded. Any other existing item is a Conflict.
        """
        ids = [d["id"] for d in docs]
        if len(set(ids)) != len(ids):
            raise Conflict("the same job id appears twice in one submission")
        now = self.clock()
        if len(docs) == 1 and not edges:
            item = job_item(docs[0], self.retention_seconds, now)
            item[PUT_TOKEN] = {"S": uuid.uuid4().hex[:16]}
            self._put_new(item)
            self._remember(docs[0])
            return
        actions = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": job_item(doc, self.retention_seconds, now),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for doc in docs
        ]
        actions += [{"Put": {"TableName": self.table, "Item": edge_item(p, c)}} for p, c in dict.fromkeys(edges)]
        written: list[list[dict]] = []
        try:
            for chunk in _chunks(actions):
                self._transact(chunk)
                written.append(chunk)
        except BaseException:
            self._undo(written)
            raise
        for doc in docs:
            self._remember(doc)

    def _put_new(self, item: dict) -> None:
        try:
            self.client.put_item(
                TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item")
            if old is not None and old.get(PUT_TOKEN) == item[PUT_TOKEN]:
                return  # our own write, retried by botocore after its response was lost
            raise Conflict(f"a job with id {item['pk']['S']} exists already") from None

    def _transact(self, chunk: list[dict]) -> None:
        for attempt in range(TRANSACTION_RETRIES):
            # One token per call of ours, so botocore's retries of it are idempotent.
            try:
                self.client.transact_write_items(TransactItems=chunk, ClientRequestToken=uuid.uuid4().hex)
                return
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                codes = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if "ConditionalCheckFailed" in codes:
                    taken = [
                        chunk[i]["Put"]["Item"]["pk"]["S"] for i, code in enumerate(codes) if code == "ConditionalCheckFailed"
                    ]
                    raise Conflict(f"a job with id {', '.join(taken)} exists already") from None
                if not set(codes) <= {"TransactionConflict", "None", None, "ThrottlingError"} or (
                    attempt == TRANSACTION_RETRIES - 1
                ):
                    raise
                time.sleep(0.05 * 2**attempt)

    def _undo(self, written: list[list[dict]]) -> None:
        keys = [
            {"pk": a["Put"]["Item"]["pk"], "sk": a["Put"]["Item"]["sk"]} for chunk in written for a in chunk
        ]
        for start in range(0, len(keys), 25):
            requests = [{"DeleteRequest": {"Key": k}} for k in keys[start : start + 25]]
            try:
                self._batch_write(requests)
            except Exception as exc:  # best effort: the caller sees the original error
                print(f"hyperbatch: could not undo a partial create: {exc}", file=sys.stderr)

    def _batch_write(self, requests: list[dict]) -> None:
        for attempt in range(UNPROCESSED_RETRIES):
            response = self.client.batch_write_item(RequestItems={self.table: requests})
            requests = response.get("UnprocessedItems", {}).get(self.table, [])
            if not requests:
                return
            time.sleep(0.05 * 2**attempt)
        raise RuntimeError(f"{len(requests)} writes stayed unprocessed")

    # ---- read ---------------------------------------------------------------------------
    def get(self, job_id: str) -> dict:
        response = self.client.get_item(TableName=self.table, Key=self._key(job_id), ConsistentRead=True)
        if "Item" not in response:
            raise NotFound(f"Unknown Job Id {job_id}")
        return self._remember(doc_from_item(response["Item"]))

    def get_many(self, job_ids: Iterable[str]) -> dict[str, dict]:
        ids = list(dict.fromkeys(job_ids))
        out: dict[str, dict] = {}
        for start in range(0, len(ids), BATCH_GET_KEYS):
            keys = [self._key(i) for i in ids[start : start + BATCH_GET_KEYS]]
            for attempt in range(UNPROCESSED_RETRIES):
                response = self.client.batch_get_item(
                    RequestItems={self.table: {"Keys": keys, "ConsistentRead": True}}
                )
                for item in response.get("Responses", {}).get(self.table, []):
                    doc = self._remember(doc_from_item(item))
                    out[doc["id"]] = doc
                keys = response.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
                if not keys:
                    break
                time.sleep(0.05 * 2**attempt)
            else:
                raise RuntimeError(f"{len(keys)} reads stayed unprocessed")
        return out

    # ---- update -------------------------------------------------------------------------
    def update(self, job_id: str, expect: Expect, change: Change) -> dict:
        """One conditional UpdateItem (see `update_request`), returning the new document.

        When the condition fails, DynamoDB hands back the old item
        (ReturnValuesOnConditionCheckFailure=ALL_OLD): none means NotFound, one
        means StaleTransition — no second read either way.
        """
        state_changes = moves_index(expect, change) and "queue" not in change.set
        queue = self.queue_of(job_id) if state_changes else None
        for _ in range(2):
            request = update_request(
                expect, change, queue=queue, retention_seconds=self.retention_seconds, now=self.clock()
            )
            try:
                response = self.client.update_item(
                    TableName=self.table, Key=self._key(job_id), ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD", **request,
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                item = exc.response.get("Item")
                if item is None:
                    raise NotFound(f"Unknown Job Id {job_id}") from None
                old = doc_from_item(item)
                if state_changes and old["queue"] != queue:  # a stale cache entry: learn and try again
                    queue = self._remember(old)["queue"]
                    continue
                raise StaleTransition(f"job {job_id} is {old['state']} attempt {old['attempt']}") from None
            return self._remember(doc_from_item(response["Attributes"]))
        raise StaleTransition(f"job {job_id}: its queue changed under us")

    # ---- queries ------------------------------------------------------------------------
    def query(self, *, owner=None, queue=None, states=None, limit=100, next=None) -> Page:
        """Jobs newest first: by owner (index by_owner, queue and state filtered), else by queue and state.

        The indexes give the page's ids (filtered on their projected attributes);
        one strongly consistent BatchGetItem per 100 fetches the jobs, and a job
        whose fresh item no longer matches (the index lags a write) is left out.
        The `next` token is the last job id of the previous page; every Query
        continues below it with a key condition (`sk < next`), which is what an
        ExclusiveStartKey would do but also works across the merged queries.
        Never a Scan.
        """
        states = [_state(s) for s in states] if states is not None else None
        if limit <= 0:
            return Page([], None)
        if owner is not None:
            ids = self._by_owner(owner, queue, states, limit + 1, next)
        else:
            queues = [queue] if queue is not None else self.queues
            if not queues:
                raise ValueError("listing jobs without an owner or a queue needs the configured queue names")
            ids = self._merged(queues, states or list(ALL_STATES), limit + 1, next)
        more = len(ids) > limit
        ids = ids[:limit]
        found = self.get_many(ids)
        page = [
            found[i] for i in ids
            if i in found
            and (owner is None or found[i].get("owner") == owner)
            and (queue is None or found[i]["queue"] == queue)
            and (not states or found[i]["state"] in states)
        ]
        return Page(page, ids[-1] if more else None)

    def _by_owner(self, owner: str, queue: str | None, states: list[str] | None, want: int, after: str | None):
        if not owner:
            return []
        ex = _Expression()
        key = f"{ex.name('gsi1pk')} = {ex.value(owner)}"
        if after:
            key += f" AND {ex.name('gsi1sk')} < {ex.value(after)}"
        filters = []
        if queue is not None:
            filters.append(f"{ex.name('queue')} = {ex.value(queue)}")
        if states:  # as the local store reads it, no states means any state
            filters.append(f"{ex.name('state')} IN ({', '.join(ex.value(s) for s in states)})")
        params = {
            "TableName": self.table, "IndexName": "by_owner", "KeyConditionExpression": key,
            "ExpressionAttributeNames": ex.names, "ExpressionAttributeValues": ex.values,
            "ScanIndexForward": False,
        }
        if filters:
            params["FilterExpression"] = " AND ".join(filters)
        out: list[str] = []
        for items in self._pages(params, page_size=min(1000, want * 4) if filters else want, want=want):
            out += [i["gsi1sk"]["S"] for i in items]
        return out[:want]

    def _merged(self, queues: list[str], states: list[str], want: int, after: str | None) -> list[str]:
        """Up to `want` job ids, newest first, over the by_queue_state partitions these states live in."""
        active = [s for s in ACTIVE_STATES if s in states]
        finals = [s for s in states if s in FINAL_STATES]
        streams = []
        for q in queues:
            if active:
                only = active if len(active) < len(ACTIVE_STATES) else None  # all active states: no filter
                streams.append(self._queue_state(q, ACTIVE, want, after, only))
            streams += [self._queue_state(q, s, want, after) for s in dict.fromkeys(finals)]
        out, seen = [], set()
        for job_id in heapq.merge(*streams, reverse=True):
            if job_id in seen:  # the index lags a finish: a job may show under two partitions
                continue
            seen.add(job_id)
            out.append(job_id)
            if len(out) == want:
                break
        return out

    def _queue_state(self, queue: str, state: str, want: int, after: str | None,
                     only: list[str] | None = None) -> Iterator[str]:
        """Lazily, newest first, ids in one partition (`only`: these states of it): heapq.merge asks
        for more only from the partitions that win."""
        params = self._queue_state_params(queue, state, after, only)
        params["ScanIndexForward"] = False
        for items in self._pages(params, page_size=min(1000, want * 4) if only else want, want=None):
            for item in items:
                yield item["gsi2sk"]["S"]

    def _queue_state_params(self, queue: str, state: str, after: str | None = None,
                            only: list[str] | None = None) -> dict:
        ex = _Expression()
        partition = f"{queue}#{ACTIVE}" if state == ACTIVE else queue_state_key(queue, state)
        key = f"{ex.name('gsi2pk')} = {ex.value(partition)}"
        if after:
            key += f" AND {ex.name('gsi2sk')} < {ex.value(after)}"
        params = {
            "TableName": self.table, "IndexName": "by_queue_state", "KeyConditionExpression": key,
            "ExpressionAttributeNames": ex.names, "ExpressionAttributeValues": ex.values,
        }
        if only:
            params["FilterExpression"] = f"{ex.name('state')} IN ({', '.join(ex.value(s) for s in only)})"
        return params

    def _pages(self, params: dict, page_size: int | None, want: int | None) -> Iterator[list[dict]]:
        """Query pages until exhausted, or until `want` items came back."""
        got = 0
        start = None
        while True:
            call = dict(params)
            if page_size:
                call["Limit"] = page_size
            if start:
                call["ExclusiveStartKey"] = start
            response = self.client.query(**call)
            items = response.get("Items", [])
            got += len(items)
            yield items
            start = response.get("LastEvaluatedKey")
            if not start or (want is not None and got >= want):
                return

    def _active(self, queue: str, *attributes: str) -> Iterator[dict]:
        """The index entries of a queue's active jobs, with `state` and `attributes` (projected)."""
        params = self._queue_state_params(queue, ACTIVE)
        names = {f"#a{i}": a for i, a in enumerate(("state", *attributes))}
        params["ProjectionExpression"] = ", ".join(names)
        params["ExpressionAttributeNames"] = {**params["ExpressionAttributeNames"], **names}
        for items in self._pages(params, page_size=None, want=None):
            yield from items

    def counts(self, queue: str) -> dict[str, int]:
        """Jobs per state: the active partition read once (small entries: state only), and one
        Query with Select=COUNT per final state.

        A COUNT still reads, and is billed for, every index entry it counts (the
        entries are small: keys, state, queue or array and pending), so a queue
        holding a million finished jobs costs tens of thousands of RCUs per call
        until TTL removes them. Fine for an occasional `qstat -Q`; nothing should
        poll it (the scaler uses `pending_tasks`, which reads only active jobs).
        """
        out: dict[str, int] = {}
        for item in self._active(queue):
            state = decode(item["state"])
            out[state] = out.get(state, 0) + 1
        for state in ALL_STATES:
            if state not in FINAL_STATES:
                continue
            params = self._queue_state_params(queue, state)
            params["Select"] = "COUNT"
            total = 0
            start = None
            while True:
                call = dict(params, **({"ExclusiveStartKey": start} if start else {}))
                response = self.client.query(**call)
                total += response.get("Count", 0)
                start = response.get("LastEvaluatedKey")
                if not start:
                    break
            if total:
                out[state] = total
        return {s: out[s] for s in ALL_STATES if out.get(s)}

    def pending_tasks(self, queue: str) -> int:
        """Jobs and array tasks waiting to run in `queue` (what the scaler should size on, on AWS).

        SQS counts messages, and one message can carry thousands of array
        positions; the store knows the real figure: each QUEUED job is 1, each
        QUEUED or RUNNING array adds its `pending` counter. Reads only the
        active partition of by_queue_state, whose entries carry state, array and pending.
        """
        total = 0
        for item in self._active(queue, "array", "pending"):
            state = decode(item["state"])
            if state not in (JobState.QUEUED.value, JobState.RUNNING.value):
                continue
            if decode(item.get("array", {"NULL": True})) is not None:
                total += max(0, decode(item.get("pending", {"N": "0"})))
            elif state == JobState.QUEUED.value:
                total += 1
        return total

    def dependents(self, parent_id: str) -> list[str]:
        params = {
            "TableName": self.table, "IndexName": "by_parent",
            "KeyConditionExpression": "gsi3pk = :p", "ExpressionAttributeValues": {":p": {"S": parent_id}},
            "ProjectionExpression": "gsi3sk",
        }
        return [item["gsi3sk"]["S"] for items in self._pages(params, None, None) for item in items]


def _chunks(actions: list[dict]) -> Iterator[list[dict]]:
    """Transaction-sized chunks: at most 100 actions and about 4 MB each."""
    chunk: list[dict] = []
    size = 0
    for action in actions:
        n = _item_bytes(action["Put"]["Item"])
        if chunk and (len(chunk) == TRANSACTION_ITEMS or size + n > TRANSACTION_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(action)
        size += n
    if chunk:
        yield chunk

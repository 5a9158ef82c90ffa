"""The job table's items: how job documents, submissions, edges and changes become DynamoDB
attribute values and UpdateItem parameters (the layout is described in hyperbatch.adapters.aws.dynamo).

Numbers: DynamoDB has one number type. Floats go in as Decimal (via their
shortest repr, so they round-trip exactly) and come back as int when integral,
else float — `encode`/`decode` are the one place this happens.
"""

from __future__ import annotations

import json
import math
import uuid
from decimal import Decimal
from enum import Enum
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from hyperbatch.core.ids import MAX_SEQUENCE, sort_key
from hyperbatch.core.model import Change, Expect, check_write
from hyperbatch.core.names import INDEXES
from hyperbatch.core.states import FINAL, JobState
from hyperbatch.core.tasks import CANCELLED_MAP, FAILED_MAP, LOST_MAP

JOB_SK = "job"
EDGE_SK_PREFIX = "parent#"
SUBMISSION_PREFIX = "submission#"
SUBMISSION_SK = "submission"
MEMBERS = "members"
OWNERS_PK = "owners"
SEQUENCE_PK = "sequence"  # the counter item job ids are reserved from (hyperbatch.core.ids)
TTL_ATTRIBUTE = "expires_at"
PUT_TOKEN = "put_token"  # a conditional PutItem's call, so that a retried PutItem can recognise its own write
# Attributes that are keys or bookkeeping, not fields of the job document.
KEY_ATTRIBUTES = frozenset(
    {"pk", "sk", TTL_ATTRIBUTE, PUT_TOKEN, *(k for pair in INDEXES.values() for k in pair)}
)

ALL_STATES = tuple(s.value for s in JobState)
FINAL_STATES = frozenset(s.value for s in FINAL)
# Jobs no message stands for: the only ones by_queue_state holds, one partition per queue.
WAITING_STATES = frozenset({JobState.WAITING.value, JobState.HELD.value})
WAITING = "waiting"
# A submission outlives its members: they may wait (SQS keeps a work message 10 days, a dead letter 14) and then run
# for a while before the retention after their finish starts.
SUBMISSION_EXTRA_SECONDS = 14 * 86400


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


def state_value(value: Any) -> str:
    return value.value if isinstance(value, JobState) else value


def waiting_key(queue: str) -> str:
    """by_queue_state partition of a queue's WAITING and HELD jobs."""
    return f"{queue}#{WAITING}"


def needs_queue(change: Change) -> bool:
    """Whether `change` needs the job's queue: only entering WAITING or HELD writes a by_queue_state
    key with it (every other state change REMOVEs gsi2pk, which needs nothing)."""
    return "state" in change.set and state_value(change.set["state"]) in WAITING_STATES and "queue" not in change.set


def expiry(finished_at: float | None, retention_seconds: float, now: float) -> int:
    """TTL epoch seconds for a job that finished at `finished_at` (now if unknown)."""
    return int((finished_at if finished_at is not None else now) + retention_seconds)


def job_item(doc: dict, retention_seconds: float, now: float, *, by_owner: bool = True) -> dict:
    """A job's item; `by_owner=False` for a submission's member (its submission is its by_owner entry).

    Index sort keys hold the id padded to 12 digits (`ids.sort_key`), so they sort by number."""
    item = {k: encode(v) for k, v in doc.items()}
    item["pk"] = {"S": doc["id"]}
    item["sk"] = {"S": JOB_SK}
    if by_owner and doc.get("owner"):  # an index key may not be empty
        item["gsi1pk"] = {"S": doc["owner"]}
        item["gsi1sk"] = {"S": sort_key(doc["id"])}
    if state_value(doc["state"]) in WAITING_STATES:
        item["gsi2pk"] = {"S": waiting_key(doc["queue"])}
    item["gsi2sk"] = {"S": sort_key(doc["id"])}  # inert without gsi2pk: kept so entering WAITING/HELD sets one key
    if state_value(doc["state"]) in FINAL_STATES:
        item[TTL_ATTRIBUTE] = {"N": str(expiry(doc.get("finished_at"), retention_seconds, now))}
    return item


def submission_item(docs: list[dict], owner: str | None, expires_at: int) -> dict:
    """The submission of jobs with consecutive ids (see hyperbatch.adapters.aws.dynamo), keyed by its
    first id; its by_owner entry sorts by that first id. Without an owner it is in no index and only
    claims its ids against a second submission of them."""
    ids = [d["id"] for d in docs]
    item = {
        "pk": {"S": SUBMISSION_PREFIX + ids[0]},
        "sk": {"S": SUBMISSION_SK},
        MEMBERS: encode(ids),
        TTL_ATTRIBUTE: {"N": str(expires_at)},
    }
    if owner:
        item["gsi1pk"] = {"S": owner}
        item["gsi1sk"] = {"S": sort_key(ids[0])}
    queues = {d["queue"] for d in docs}
    if len(queues) == 1:  # lets a query by queue skip the whole submission in the index
        item["queue"] = {"S": queues.pop()}
    return item


def sequence_request(table: str, n: int) -> dict:
    """UpdateItem parameters reserving n job sequence numbers: one conditional ADD on the counter item,
    which answers with the counter's new value (the last number of the block)."""
    return {
        "TableName": table,
        "Key": {"pk": {"S": SEQUENCE_PK}, "sk": {"S": SEQUENCE_PK}},
        "UpdateExpression": "ADD #last :n",
        "ConditionExpression": "attribute_not_exists(#last) OR #last <= :most",
        "ExpressionAttributeNames": {"#last": "last"},
        "ExpressionAttributeValues": {":n": {"N": str(n)}, ":most": {"N": str(MAX_SEQUENCE - n)}},
        "ReturnValues": "UPDATED_NEW",
    }


WORKFLOW_PREFIX = "workflow#"


def workflow_item(record: dict, expires_at: int) -> dict:
    """A workflow's record (hyperbatch.core.workflows): pk = "workflow#<owner>", sk = its name, the record
    as JSON text (a map of step -> job id; at most 1,000 steps of short names, far under 400 KB). In no
    index: `status NAME` knows both keys. It expires as a submission does."""
    return {
        "pk": {"S": WORKFLOW_PREFIX + record["owner"]},
        "sk": {"S": record["name"]},
        "doc": {"S": json.dumps(record)},
        TTL_ATTRIBUTE: {"N": str(expires_at)},
    }


def owner_item(owner: str) -> dict:
    return {"pk": {"S": OWNERS_PK}, "sk": {"S": owner}}


def edge_item(parent: str, child: str) -> dict:
    return {
        "pk": {"S": child},
        "sk": {"S": EDGE_SK_PREFIX + parent},
        "gsi3pk": {"S": parent},
        "gsi3sk": {"S": child},
    }


def item_bytes(item: dict) -> int:
    """An over-estimate of an item's size as DynamoDB counts it (names plus values)."""
    return len(repr(item).encode())


# ---- expressions ----------------------------------------------------------------------------

class Expression:
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


def _normalise(change: Change) -> tuple[dict, dict, dict, dict, dict]:
    """Fold a Change into parts that name disjoint document paths, with `model.apply`'s order.

    `apply` sets, then adds, then sets map entries, then deletes map entries, then appends to lists.
    DynamoDB refuses two actions on overlapping paths in one expression, so
    anything that touches a field also being set is computed here instead.
    """
    sets: dict[str, Any] = {k: (v.value if isinstance(v, JobState) else v) for k, v in change.set.items() if k != "version"}
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
    appends: dict[str, list] = {}
    for key, items in change.append.items():
        if key in sets:
            sets[key] = [*(sets[key] or []), *items]
        elif items:
            appends[key] = list(items)
    return sets, adds, map_set, map_del, appends


def update_request(
    expect: Expect, change: Change, *, queue: str | None, retention_seconds: float, now: float
) -> dict:
    """UpdateItem parameters (without table and key) that check `expect` and apply `change`.

    Every state change keeps by_queue_state in step: entering WAITING or HELD
    SETs gsi2pk from `queue` (the job's queue, `needs_queue`), which is then
    also checked in the condition, so a wrong guess can only fail the write,
    never index the job under another queue; any other state REMOVEs gsi2pk
    (removing an absent attribute writes no index entry).
    """
    check_write(expect, change)  # the transition table's rule, as the local store applies it
    sets, adds, map_set, map_del, appends = _normalise(change)
    ex = Expression()
    set_parts = [f"{ex.name(k)} = {ex.value(v)}" for k, v in sets.items()]
    for key, entries in map_set.items():
        set_parts += [f"{ex.name(key)}.{ex.name(k)} = {ex.value(v)}" for k, v in entries.items()]
    for key, items in appends.items():
        name = ex.name(key)
        set_parts.append(f"{name} = list_append(if_not_exists({name}, {ex.value([])}), {ex.value(items)})")
    version = ex.name("version")
    set_parts.append(f"{version} = {version} + {ex.value(1)}")
    conditions = [f"attribute_exists({ex.name('pk')})"]
    remove_parts = []
    if "state" in sets:
        if sets["state"] in WAITING_STATES:
            target_queue = sets.get("queue", queue)
            if target_queue is None:
                raise ValueError("entering WAITING or HELD needs the job's queue to index it in by_queue_state")
            if "queue" not in sets:
                conditions.append(f"{ex.name('queue')} = {ex.value(queue)}")
            set_parts.append(f"{ex.name('gsi2pk')} = {ex.value(waiting_key(target_queue))}")
        else:
            remove_parts.append(ex.name("gsi2pk"))
        if sets["state"] in FINAL_STATES:
            at = expiry(sets.get("finished_at"), retention_seconds, now)
            set_parts.append(f"{ex.name(TTL_ATTRIBUTE)} = {ex.value(at)}")
        else:
            remove_parts.append(ex.name(TTL_ATTRIBUTE))  # re-run (qrerun): no longer due to expire
    elif "queue" in sets:
        raise ValueError("moving a job to another queue needs its state in the same change")
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
    for field, key in expect.keys:
        conditions.append(f"attribute_exists({ex.name(field)}.{ex.name(key)})")

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


# ---- an array's task pages: large ones in items of their own -----------------------------------

PAGE_SK_PREFIX = "page#"  # pk = <job id>   sk = "page#<token>"   text = a task map page (never changed)
BEAT_SK_PREFIX = "beat#"  # pk = <job id>   sk = "beat#<run>"     at = its last beat (JobStore.beat)
STUB = "@"  # a page kept apart is "@<token>" in the job item
# Task maps whose large pages are kept apart. The retry map stays in the item: the stream's consumer
# reads it from the item's images (hyperbatch.core.outbox), and a task leaves it when it is claimed again.
SPILLED_MAPS = (FAILED_MAP, CANCELLED_MAP, LOST_MAP)
INLINE_PAGE_BYTES = 256  # a page's text longer than this is kept in a page item


def is_stub(text: Any) -> bool:
    return isinstance(text, str) and text.startswith(STUB)


def page_item(job_id: str, token: str, text: str) -> dict:
    return {"pk": {"S": job_id}, "sk": {"S": PAGE_SK_PREFIX + token}, "text": {"S": text}}


def spill(change: Change) -> tuple[Change, dict[str, str]]:
    """`change` with every large task page it writes replaced by a stub, and the pages to put first
    (token -> text). Each page item is written once under a new token and never changed, so a reader
    that found a stub finds its page for as long as the stub stands."""
    pages: dict[str, str] = {}

    def kept_apart(entries: dict) -> dict:
        out = {}
        for page, text in entries.items():
            if isinstance(text, str) and len(text) > INLINE_PAGE_BYTES and not is_stub(text):
                token = uuid.uuid4().hex
                pages[token] = text
                text = STUB + token
            out[page] = text
        return out

    sets = {k: (kept_apart(v) if k in SPILLED_MAPS and isinstance(v, dict) else v) for k, v in change.set.items()}
    map_set = {k: (kept_apart(v) if k in SPILLED_MAPS else v) for k, v in change.map_set.items()}
    if not pages:
        return change, {}
    return Change(set=sets, add=change.add, map_set=map_set, map_del=change.map_del, append=change.append), pages


def stubs(doc: dict) -> dict[tuple[str, str], str]:
    """(task map, page) -> token of each page of the document kept apart."""
    return {(name, page): text[len(STUB):] for name in SPILLED_MAPS
            for page, text in (doc.get(name) or {}).items() if is_stub(text)}


def array_layout(doc: dict) -> list[dict]:
    """The items a job document is kept in: its job item, then its page items (what `DynamoJobStore.update`
    writes for a change that sets every task map whole; the item limits hold of each)."""
    change, pages = spill(Change(set={name: doc.get(name) or {} for name in SPILLED_MAPS}))
    item = job_item({**doc, **change.set}, 0, 0)
    return [item, *(page_item(doc["id"], token, text) for token, text in pages.items())]

"""Per-queue job counts kept from the job table's stream (no index to count over).

Each queue has one item in the job table:

    pk = "counts#<queue>"   sk = "counts"
    <state> = jobs in that state (an array counts once, by its derived state)
    tasks_pending = jobs and array positions waiting to run (what the scaler sizes on), of the
                    queue's default pool; another pool's (hyperbatch.core.pools) are on an item
                    of its own, "counts#QUEUE--DEFINITION", which holds only them
    tally = the token of the last tally written (retry-safety, see `add_request`)

`deltas` turns stream records into the changes of these numbers: every record
of a job item takes its old image out (-1 at its state, -pending_of) and puts
its new image in (+1, +pending_of), so INSERTs, MODIFYs (including a move
between queues) and REMOVEs (TTL expiry, the undo of a failed create) all
balance. It is pure; `DynamoJobStore.tally` writes the result. Each record
must be tallied exactly once, which is the caller's part (the release
function tallies each batch of records it handled).
"""

from __future__ import annotations

from typing import Any, Iterable

from hyperbatch.adapters.aws.items import JOB_SK, decode
from hyperbatch.core.pools import work_queue

COUNTS_SK = "counts"
COUNTS_PREFIX = "counts#"
TASKS_PENDING = "tasks_pending"
TALLY_TOKEN = "tally"

_QUEUED, _RUNNING = "QUEUED", "RUNNING"


def counts_key(queue: str) -> dict:
    return {"pk": {"S": COUNTS_PREFIX + queue}, "sk": {"S": COUNTS_SK}}


def pending_of(doc: dict) -> int:
    """What a job adds to its queue's pending tasks: 1 for a QUEUED job, an array's `pending` while it
    is QUEUED or RUNNING (its positions not yet started), else 0."""
    state = doc.get("state")
    if doc.get("array") is not None:
        return max(0, int(doc.get("pending") or 0)) if state in (_QUEUED, _RUNNING) else 0
    return 1 if state == _QUEUED else 0


def _value(image: dict, name: str) -> Any:
    attribute = image.get(name)
    return None if attribute is None else decode(attribute)


def _counted(image: dict | None) -> dict | None:
    """The fields of a job image that counts depend on, or None if the image is not a job's."""
    if not image or "state" not in image or "queue" not in image:
        return None
    return {k: _value(image, k) for k in ("state", "queue", "pool", "array", "pending")}


def deltas(records: Iterable[dict]) -> dict[str, dict[str, int]]:
    """queue -> {state or "tasks_pending": change} over stream records in Lambda's shape
    ({"eventName", "dynamodb": {"Keys", "NewImage", "OldImage"}}, typed values). Zero changes are left out."""
    out: dict[str, dict[str, int]] = {}

    def add(doc: dict | None, sign: int) -> None:
        if doc is None:
            return
        per = out.setdefault(doc["queue"], {})
        per[doc["state"]] = per.get(doc["state"], 0) + sign
        pending = pending_of(doc)
        if pending:
            pool = out.setdefault(work_queue(doc), {})
            pool[TASKS_PENDING] = pool.get(TASKS_PENDING, 0) + sign * pending

    for record in records:
        data = record.get("dynamodb") or {}
        if (data.get("Keys") or {}).get("sk", {}).get("S") != JOB_SK:
            continue  # edges, submissions, the owners registry, the counts themselves
        kind = record.get("eventName")
        if kind in ("MODIFY", "REMOVE"):
            add(_counted(data.get("OldImage")), -1)
        if kind in ("INSERT", "MODIFY"):
            add(_counted(data.get("NewImage")), +1)
    return {q: {k: n for k, n in per.items() if n} for q, per in out.items() if any(per.values())}


def add_request(table: str, queue: str, delta: dict[str, int], token: str) -> dict:
    """UpdateItem parameters (also a TransactWriteItems Update) adding `delta` to the queue's counts item.

    The write records `token` and is conditional on the item not bearing it
    already: botocore's retry of a call whose response was lost then fails the
    condition instead of counting twice (the caller treats that failure as done).
    """
    names = {"#t": TALLY_TOKEN}
    values = {":t": {"S": token}}
    adds = []
    for i, (key, n) in enumerate(sorted(delta.items())):
        names[f"#a{i}"] = key
        values[f":a{i}"] = {"N": str(n)}
        adds.append(f"#a{i} :a{i}")
    return {
        "TableName": table,
        "Key": counts_key(queue),
        "UpdateExpression": "SET #t = :t ADD " + ", ".join(adds),
        "ConditionExpression": "attribute_not_exists(#t) OR #t <> :t",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }

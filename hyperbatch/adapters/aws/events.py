"""DynamoDB Streams records -> the domain events the local events table yields.

The job table's stream carries NEW_AND_OLD_IMAGES. Only job items whose
state changed become events: an INSERT is a new job (old_state None, as
`SqliteJobStore.create` records it), a MODIFY with a different state is a
transition. Edge items, writes that left the state alone (counters,
heartbeats, cancel flags) and REMOVEs (TTL expiry, the undo of a failed
create) are not events.

Records arrive as the Lambda event source mapping hands them over:
`{"eventName": ..., "dynamodb": {"Keys": ..., "NewImage": ..., "OldImage": ...}}`
with typed attribute values ({"S": "QUEUED"}).
"""

from __future__ import annotations

from typing import Iterable

from hyperbatch.core.ports import Event
from hyperbatch.adapters.aws.items import JOB_SK


def _string(image: dict | None, name: str) -> str | None:
    if not image or name not in image:
        return None
    return image[name].get("S")


def events_from_stream(records: Iterable[dict]) -> list[Event]:
    events = []
    for record in records:
        data = record.get("dynamodb") or {}
        if _string(data.get("Keys"), "sk") != JOB_SK:
            continue
        kind = record.get("eventName")
        new = data.get("NewImage")
        if kind not in ("INSERT", "MODIFY") or not new:
            continue
        new_state, job_id, queue = _string(new, "state"), _string(new, "id"), _string(new, "queue")
        old_state = _string(data.get("OldImage"), "state") if kind == "MODIFY" else None
        if new_state is None or new_state == old_state or job_id is None or queue is None:
            continue
        events.append(Event(job_id, old_state, new_state, queue))
    return events

"""JobStore contract: a write conditional on a key of a map field (a chunk's progress, fencing)."""

import pytest

from hyperbatch.core.errors import StaleTransition
from tests.handmade_ids import new_job_id
from hyperbatch.core.model import Change, Expect, new_job

CHUNK = {"lo": 0, "hi": 4, "attempt": 1, "worker": "w", "started": 1.0, "skip": []}


def test_a_write_conditional_on_a_map_key_applies_while_the_key_is_there_and_not_after(backend):
    doc = new_job(id=new_job_id(), owner="alice", queue="batch", definition="standard", array="1-4",
                  chunks={"c1": CHUNK})
    backend.store.create([doc], [])
    progress = Change(map_set={"chunks": {"c1": {**CHUNK, "lo": 2}}})
    new = backend.store.update(doc["id"], Expect(keys=(("chunks", "c1"),)), progress)
    assert new["chunks"] == {"c1": {**CHUNK, "lo": 2}}
    backend.store.update(doc["id"], Expect(), Change(map_del={"chunks": ["c1"]}))  # settled by someone else
    settled = backend.store.get(doc["id"])
    with pytest.raises(StaleTransition):
        backend.store.update(doc["id"], Expect(keys=(("chunks", "c1"),)), progress)
    assert backend.store.get(doc["id"]) == settled  # nothing written

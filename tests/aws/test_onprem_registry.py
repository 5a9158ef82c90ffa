"""The records of workers on your own machines in the job table (hyperbatch.adapters.aws.onprem), under moto."""

import pytest

from hyperbatch.adapters.aws.onprem import TableWorkerRegistry
from hyperbatch.core import onprem
from hyperbatch.core.errors import Conflict
from hyperbatch.services.presence import Presence


def record(name="lab-1", instance="a", **extra):
    return {"name": name, "queue": "batch", "definition": "standard", "host": "lab-1.example", "instance": instance,
            "ncpus": 16, "mem_mib": 65536, "ngpus": 2, "started_at": 100.0, "seen_at": 100.0, **extra}


def test_a_name_is_one_live_workers_until_it_goes_quiet(aws):
    now = [1000.0]
    registry = TableWorkerRegistry(aws.dynamodb, aws.plane.table, clock=lambda: now[0])
    registry.register(record(seen_at=now[0]))
    registry.register(record(seen_at=now[0] + 60))  # the same worker again: its refresh
    with pytest.raises(Conflict, match="worker name 'lab-1' is in use by a live on-premises worker"):
        registry.register(record(instance="b", seen_at=now[0]))
    now[0] += onprem.STALE_AFTER_SECONDS + 61  # the first one crashed: its name is free again
    registry.register(record(instance="b", seen_at=now[0]))
    (found,) = registry.workers()
    assert (found["instance"], found["ncpus"], found["mem_mib"], found["ngpus"]) == ("b", 16, 65536, 2)
    assert aws.calls.count("Scan") == 0


def test_a_stopping_worker_marks_its_record_gone_and_leaves_a_successors_alone(aws):
    registry = TableWorkerRegistry(aws.dynamodb, aws.plane.table)
    with Presence(registry, record(instance="a"), every=3600):
        assert [r["name"] for r in onprem.live(registry.workers(), registry.clock())] == ["lab-1"]
    assert onprem.live(registry.workers(), registry.clock()) == []  # gone at once, not three minutes later
    registry.register(record(instance="b", seen_at=registry.clock()))
    registry.forget("lab-1", "a")  # a late goodbye of the first one
    assert [r["instance"] for r in onprem.live(registry.workers(), registry.clock())] == ["b"]

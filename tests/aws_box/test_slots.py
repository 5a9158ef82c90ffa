"""A worker whose definition has room for several jobs runs them at once, never more than its room."""

import base64

import pytest

from hyperbatch.core.resources import Amount
from hyperbatch.services.slots import Room, slots_of

from tests.aws_box.harness import Box


@pytest.fixture
def roomy():
    """Workers of 4 vCPUs and 8 GiB, idling out after 2 s."""
    with Box(definitions={"idle_timeout_seconds": 2, "vcpus": 4, "memory_mib": 8192}) as box:
        box.start_stream()
        yield box


def _overlap(a: dict, b: dict) -> bool:
    return a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]


def test_one_four_cpu_worker_runs_four_one_cpu_jobs_at_once_and_a_four_cpu_job_alone(roomy):
    box = roomy
    small = [box.submit(command=["sh", "-c", "sleep 2; echo $NCPUS"], resources={"ncpus": 1}) for _ in range(4)]
    wide = box.submit(command=["sh", "-c", "sleep 1; echo $NCPUS"], resources={"ncpus": 4})
    box.settle()
    worker = box.start_worker()
    done = [box.wait_state(j["id"], "SUCCEEDED", timeout=60) for j in small + [wide]]
    box.join_workers(30)
    assert worker.exit_code == 0 and len(box.workers) == 1
    hosts = {d["exec_host"].rsplit("-", 1)[0] for d in done}
    assert len(hosts) == 1  # all on the one worker, each in a slot of its own
    small_docs, wide_doc = done[:4], done[4]
    assert all(_overlap(a, b) for i, a in enumerate(small_docs) for b in small_docs[i + 1:])  # four at once
    assert not any(_overlap(wide_doc, d) for d in small_docs)  # the 4-CPU job had the worker to itself
    for job, ncpus in [(small[0], "1"), (wide, "4")]:
        status, log = box.api("GET", f"/jobs/{job['id']}/log")
        assert status == 200
        assert base64.b64decode(log["data"]).decode() == f"{ncpus}\n"


def test_a_worker_of_one_cpu_is_one_agent_as_before(box):
    from hyperbatch.services.agent import Agent

    worker = box.start_worker()
    assert isinstance(worker.agent, Agent)
    worker.agent.stop()


def test_a_room_holds_what_runs_and_hands_out_distinct_gpus():
    room = Room(Amount(4, 8 << 30, 2))
    assert slots_of(room.amount) == 4 and slots_of(Amount(1, 0, 0)) == 1
    first = room.take(Amount(2, 0, 1))
    second = room.take(Amount(1, 4 << 30, 1))
    assert sorted(first + second) == ["0", "1"]
    assert room.take(Amount(1, 0, 1)) is None  # no GPU left
    assert room.take(Amount(2, 0, 0)) is None  # one CPU left
    assert room.take(Amount(1, 8 << 30, 0)) is None  # 4 GiB left
    room.give(Amount(2, 0, 1), first)
    assert room.take(Amount(3, 0, 1)) == first and not room.has_a_cpu()

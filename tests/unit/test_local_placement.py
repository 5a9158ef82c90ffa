"""Local claims place work by resources on a real SQLite store: what leases hold is counted across
workers and queues, GPUs are handed out distinct, and a starving job holds the machine."""

from __future__ import annotations

import sqlite3

import pytest

from hyperbatch.adapters.local import machine as machines
from hyperbatch.adapters.local.sqlite import Database, SqliteJobStore, SqliteWorkQueue
from hyperbatch.config import LocalSettings
from hyperbatch.core.model import new_job
from hyperbatch.core.options import resource_list
from hyperbatch.core.resources import Amount

GB = 1 << 30


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def local(tmp_path):
    db = Database(tmp_path / "state.db")
    clock = Clock()
    machine = machines.Machine(Amount(2, 8 * GB, 2), ["0", "1"], starve_after=60)
    store, queue = SqliteJobStore(db), SqliteWorkQueue(db, clock=clock, machine=machine)

    def submit(queue_name="batch", priority=0, **resources):
        job_id = str(store.reserve_ids(1))
        store.create([new_job(id=job_id, owner="u", queue=queue_name, resources=resource_list(resources))], [])
        queue.send(queue_name, job_id, 0, 1, 1, priority)
        return job_id

    return queue, submit, clock


def claim(queue, name="batch", worker="w"):
    return queue.claim(name, worker, 1, 30)


def test_two_one_cpu_jobs_fit_two_cpus_and_a_third_waits_for_an_ack(local):
    queue, submit, _ = local
    ids = [submit(ncpus=1) for _ in range(3)]
    first, second = claim(queue, worker="a"), claim(queue, worker="b")
    assert [first.job_id, second.job_id] == ids[:2]
    assert claim(queue, worker="c") is None  # no overcommit
    queue.ack(first)
    assert claim(queue, worker="c").job_id == ids[2]


def test_a_two_cpu_job_waits_until_both_are_free_while_a_one_cpu_job_backfills(local):
    queue, submit, _ = local
    one = submit(ncpus=1)
    wide = submit(ncpus=2)
    small = submit(ncpus=1)
    running = claim(queue, worker="a")
    assert running.job_id == one
    backfilled = claim(queue, worker="b")
    assert backfilled.job_id == small  # the wide job does not fit beside the first; this one does
    queue.ack(running)
    assert claim(queue, worker="c") is None  # one CPU free: the wide job still waits
    queue.ack(backfilled)
    assert claim(queue, worker="c").job_id == wide


def test_a_job_that_starved_keeps_smaller_ones_from_starting(local):
    queue, submit, clock = local
    submit(ncpus=1)
    running = claim(queue, worker="a")
    wide = submit(ncpus=2)
    submit(ncpus=1)
    clock.now += 61  # the wide job has waited past starve_after
    assert claim(queue, worker="b") is None  # the free CPU stays free for it
    queue.ack(running)
    assert claim(queue, worker="b").job_id == wide
    assert claim(queue, worker="c") is None


def test_gpus_go_out_distinct_and_come_back_with_the_lease(local):
    queue, submit, _ = local
    submit(ngpus=1)
    submit(ngpus=1)
    submit(ngpus=1)
    a, b = claim(queue, worker="a"), claim(queue, worker="b")
    assert {a.gpus, b.gpus} == {"0", "1"}
    assert claim(queue, worker="c") is None  # no third GPU
    queue.ack(a)
    assert claim(queue, worker="c").gpus == a.gpus


def test_memory_is_counted_across_leases(local):
    queue, submit, _ = local
    big, _, small = submit(mem="6gb"), submit(mem="4gb"), submit(mem="2gb")
    assert claim(queue, worker="a").job_id == big
    assert claim(queue, worker="b").job_id == small  # 6 + 2 fit in 8, 6 + 4 do not
    assert claim(queue, worker="c") is None
    rows = queue.db.conn.execute("SELECT job_id, cpus, mem FROM work WHERE lease_until IS NOT NULL").fetchall()
    assert sorted(r[2] for r in rows) == [2 * GB, 6 * GB]


def test_what_another_queue_holds_counts_too(local):
    queue, submit, _ = local
    submit("other", ncpus=2)
    submit("batch", ncpus=1)
    assert claim(queue, "other", "a") is not None
    assert claim(queue, "batch", "b") is None


def test_the_machine_is_read_and_capped_by_settings(tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: Tesla T4 (UUID: GPU-a)'\necho 'GPU 1: Tesla T4 (UUID: GPU-b)'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    found = machines.offer(LocalSettings())
    assert found.gpus == ["0", "1"] and found.amount.gpus == 2
    assert found.amount.cpus >= 1 and found.amount.mem > 0
    capped = machines.offer(LocalSettings(cpus=1, mem="1gb", gpus=["1"], starve_after_seconds=5))
    assert capped.amount == Amount(1, GB, 1) and capped.gpus == ["1"] and capped.starve_after == 5
    again = machines.from_environment(machines.to_environment(capped))
    assert (again.amount, again.gpus, again.starve_after) == (capped.amount, capped.gpus, capped.starve_after)
    assert machines.from_environment({}) is None


def test_no_gpu_is_found_where_there_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(machines, "NVIDIA_PROC", tmp_path / "absent")
    assert machines.nvidia_gpus() == []
    (tmp_path / "gpus" / "0000:3b:00.0").mkdir(parents=True)
    monkeypatch.setattr(machines, "NVIDIA_PROC", tmp_path / "gpus")
    assert machines.nvidia_gpus() == ["0"]


def test_a_store_from_before_placement_gains_the_lease_columns(tmp_path):
    path = tmp_path / "state.db"
    Database(path)
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE work DROP COLUMN gpus")
    conn.commit()
    assert "gpus" not in {row[1] for row in conn.execute("PRAGMA table_info(work)")}
    Database(path)
    assert "gpus" in {row[1] for row in conn.execute("PRAGMA table_info(work)")}
    conn.close()

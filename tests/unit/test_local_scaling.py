"""Local mode runs as many jobs at once as the machine allows (issue 10, item 9)."""

import os
from pathlib import Path

from hyperbatch import config
from hyperbatch.services.scale import scale_once

REPO = Path(__file__).resolve().parents[2]


class FakeQueue:
    def __init__(self, backlog):
        self._backlog = backlog

    def backlog(self, queue):
        return self._backlog.get(queue, 0)

    def in_flight(self, queue):
        return 0


class FakeCompute:
    def __init__(self):
        self.workers: dict[tuple[str, str], int] = {}

    def running(self):
        return dict(self.workers)

    def running_in(self, region):
        return {queue: n for (r, queue), n in self.workers.items() if r == region}

    def start(self, region, queue, definition, count):
        self.workers[(region, queue)] = self.workers.get((region, queue), 0) + count
        return count


def _local_pass(cfg, backlog, compute=None):
    """One pass of the daemon's scaler, with the arguments the daemon gives it."""
    compute = compute or FakeCompute()
    local = cfg.settings.local
    cap = local.worker_cap()
    capacity = {r.name: min(cap, cap if r.local_max_workers is None else r.local_max_workers)
                for r in cfg.regions if r.compute}
    scale_once(cfg, FakeQueue(backlog), compute, region_capacity=capacity, ratio=local.jobs_to_workers_ratio,
               max_workers=cap, total_capacity=cap)
    return compute


def test_two_pilot_jobs_get_two_workers_with_the_shipped_configuration():
    cfg = config.load(REPO / "configurations")
    assert cfg.definition("standard").jobs_to_workers_ratio == 4  # an AWS economy, not a local limit
    assert sum(_local_pass(cfg, {"batch": 2}).workers.values()) == min(2, len(os.sched_getaffinity(0)))


def test_the_packaged_default_configuration_runs_as_many_workers_as_cores():
    cfg = config.load(REPO / "hyperbatch" / "defaults")
    assert cfg.settings.local.worker_cap() == len(os.sched_getaffinity(0))
    assert sum(_local_pass(cfg, {"batch": 1000}).workers.values()) == len(os.sched_getaffinity(0))


def test_the_machine_cap_holds_across_queues_and_regions():
    cfg = config.load(REPO / "configurations")
    cfg = cfg.model_copy(update={"settings": cfg.settings.model_copy(
        update={"local": cfg.settings.local.model_copy(update={"max_workers": 3})})})
    compute = _local_pass(cfg, {"batch": 100, "west": 100})
    assert sum(compute.workers.values()) == 3
    _local_pass(cfg, {"batch": 100, "west": 100}, compute)  # a second pass starts none: the machine is full
    assert sum(compute.workers.values()) == 3

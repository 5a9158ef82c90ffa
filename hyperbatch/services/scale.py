"""The scaler: per pool (a queue's workers of one size), start ceil(work / jobs_to_workers_ratio) workers,
split over regions by the queue's weights.

Faults stay where they happen. A region whose workers cannot be counted (its
job queue missing, INVALID or throttled) is left out of this run and its share
goes to the other regions; a start that fails in one region is re-planned over
the regions left; a queue whose work cannot be measured is skipped. Each
failure is logged as one structured line and returned, so the caller can
publish it as a metric; nothing one region or queue does stops the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Mapping

from hyperbatch.core import onprem, scaling
from hyperbatch.config import Configuration, Pool
from hyperbatch.core.ports import Compute, WorkQueue

log = logging.getLogger("hyperbatch.scale")

ALL_QUEUES = "*"  # the queue of a failure that concerns every queue of a region (counting its workers)
ALL_REGIONS = "*"  # the region of a failure that concerns a queue everywhere (measuring its work)


@dataclass(frozen=True)
class Failure:
    """One thing a scaler run could not do: `stage` is "count", "work" or "start"."""

    region: str
    queue: str
    stage: str
    error: str  # "ExceptionType: message"


@dataclass(frozen=True)
class Sizing:
    """Local mode's own sizing instead of each definition's: `ratio`, `max_workers`, and
    `total_capacity`, the most workers of all queues and regions together (the machine's cores)."""

    ratio: int | None = None
    max_workers: int | None = None
    total_capacity: int | None = None


@dataclass
class Scaled:
    started: dict[tuple[str, str], int] = field(default_factory=dict)  # (region, queue) -> workers started
    running: dict[tuple[str, str], int] = field(default_factory=dict)  # counted before starting any
    failures: list[Failure] = field(default_factory=list)


def scale_once(
    config: Configuration, queue: WorkQueue, compute: Compute, weights: dict[str, dict[str, float]] | None = None,
    region_capacity: dict[str, int] | None = None, work: Callable[[str], int] | None = None,
    ratio: int | None = None, max_workers: int | None = None, total_capacity: int | None = None,
    onprem_workers: Mapping[str, int] | None = None,
) -> Scaled:
    """Start the workers each queue is short of; returns what was counted, started and what failed.

    `weights` overrides a queue's static weights (the `auto` weights on AWS);
    `region_capacity` caps workers per region across all queues. `work(queue)` is
    what a queue's workers have to do (default: the queue's backlog plus its items
    in flight); on AWS, where SQS counts messages rather than tasks, the scaler
    function passes one that asks the store. Local mode passes its own `ratio` and `max_workers`
    (instead of each definition's) and `total_capacity`, the most workers of all queues and
    regions together (the machine's cores). `onprem_workers` is the live on-premises workers per
    queue: a queue that weights `onprem` has them take their part of its work first
    (hyperbatch.core.onprem.cloud_share); they are never started, counted or stopped here.
    """
    out = Scaled()
    down: set[str] = set()  # regions left out of this run
    for region in config.compute_regions:
        try:
            counted = compute.running_in(region)
        except Exception as exc:  # any one region's trouble is that region's alone
            _failed(out, region, ALL_QUEUES, "count", exc)
            down.add(region)
            continue
        out.running.update({(region, q): n for q, n in counted.items() if n})
    per_region: dict[str, int] = {}
    for (region, _), n in out.running.items():
        per_region[region] = per_region.get(region, 0) + n
    for pool in config.pools:  # each size of each queue by its own work (hyperbatch.core.pools)
        try:
            amount = work(pool.name) if work is not None else queue.backlog(pool.name) + queue.in_flight(pool.name)
        except Exception as exc:
            _failed(out, ALL_REGIONS, pool.name, "work", exc)
            continue
        q, definition = config.queue(pool.queue), config.definition(pool.definition)
        # On-premises workers serve a pool's work queue too: what they absorb starts no cloud worker.
        amount, cloud = onprem.cloud_share(amount, (weights or {}).get(q.name) or config.weights(q),
                                           (onprem_workers or {}).get(pool.name, 0),
                                           ratio or definition.jobs_to_workers_ratio, config.compute_regions)
        if amount:
            _scale_queue(config, compute, pool, amount, cloud,
                         region_capacity, per_region, down, out, Sizing(ratio, max_workers, total_capacity))
    return out


def _scale_queue(config: Configuration, compute: Compute, pool: Pool, amount: int, weights: dict[str, float],
                 region_capacity: dict[str, int] | None, per_region: dict[str, int], down: set[str],
                 out: Scaled, sizing: Sizing) -> None:
    """Plan over the regions that answer; when a start fails, plan the rest again without that region.
    Workers are counted and started per pool: `queue` below is the pool's work queue."""
    queue = pool.name
    definition = config.definition(pool.definition)
    mine = {r: n for (r, name), n in out.running.items() if name == queue}
    usable = {r: w for r, w in weights.items() if r not in down}
    while usable and any(usable.values()):
        room = None
        if region_capacity is not None:
            room = {r: mine.get(r, 0) + max(0, cap - per_region.get(r, 0)) for r, cap in region_capacity.items()}
        plan = scaling.plan(amount, mine, usable, sizing.ratio or definition.jobs_to_workers_ratio,
                            sizing.max_workers or definition.max_workers, room)
        failed = None
        for region, count in plan.items():
            if sizing.total_capacity is not None:
                count = min(count, max(0, sizing.total_capacity - sum(per_region.values())))
            if count <= 0:
                continue
            try:
                started = compute.start(region, queue, definition.name, count)
            except Exception as exc:
                _failed(out, region, queue, "start", exc)
                failed = region
                break
            if started:
                out.started[(region, queue)] = out.started.get((region, queue), 0) + started
                mine[region] = mine.get(region, 0) + started
                per_region[region] = per_region.get(region, 0) + started
        if failed is None:
            return
        del usable[failed]


def _failed(out: Scaled, region: str, queue: str, stage: str, exc: Exception) -> None:
    failure = Failure(region, queue, stage, f"{type(exc).__name__}: {exc}")
    out.failures.append(failure)
    log.warning("scaling failed", extra={"region": region, "queue": queue, "stage": stage, "error": failure.error})

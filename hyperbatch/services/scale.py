"""The scaler: per queue, start ceil(work / jobs_to_workers_ratio) workers, split over regions by weight."""

from __future__ import annotations

from typing import Callable

from hyperbatch.core import scaling
from hyperbatch.config import Configuration
from hyperbatch.core.ports import Compute, WorkQueue


def scale_once(
    config: Configuration, queue: WorkQueue, compute: Compute, weights: dict[str, dict[str, float]] | None = None,
    region_capacity: dict[str, int] | None = None, work: Callable[[str], int] | None = None,
    ratio: int | None = None, max_workers: int | None = None, total_capacity: int | None = None,
) -> dict[tuple[str, str], int]:
    """Start the workers each queue is short of; returns what was started per (region, queue).

    `weights` overrides a queue's static weights (the `auto` weights on AWS);
    `region_capacity` caps workers per region across all queues. `work(queue)` is
    what a queue's workers have to do (default: the queue's backlog plus its items
    in flight); on AWS, where SQS counts messages rather than tasks, the scaler
    function passes one that asks the store. Local mode passes its own `ratio` and `max_workers`
    (instead of each definition's) and `total_capacity`, the most workers of all queues and
    regions together (the machine's cores).
    """
    running = compute.running()
    per_region: dict[str, int] = {}
    for (region, _), n in running.items():
        per_region[region] = per_region.get(region, 0) + n
    started: dict[tuple[str, str], int] = {}
    for q in config.queues:
        definition = config.definition(q.definition)
        amount = work(q.name) if work is not None else queue.backlog(q.name) + queue.in_flight(q.name)
        if not amount:
            continue
        mine = {r: n for (r, name), n in running.items() if name == q.name}
        room = None
        if region_capacity is not None:
            room = {r: mine.get(r, 0) + max(0, cap - per_region.get(r, 0)) for r, cap in region_capacity.items()}
        plan = scaling.plan(
            amount, mine, (weights or {}).get(q.name) or config.weights(q),
            ratio or definition.jobs_to_workers_ratio, max_workers or definition.max_workers, room,
        )
        for region, count in plan.items():
            if total_capacity is not None:
                count = min(count, max(0, total_capacity - sum(per_region.values())))
            if count > 0:
                compute.start(region, q.name, definition.name, count)
                started[(region, q.name)] = count
                per_region[region] = per_region.get(region, 0) + count
    return started

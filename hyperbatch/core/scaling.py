"""Scaler arithmetic: how many workers a queue wants and how many new ones to start in each region."""

from __future__ import annotations

from typing import Mapping

from hyperbatch.core.errors import SpecError
from hyperbatch.core.routing import split


def wanted_workers(backlog: int, ratio: int, max_workers: int) -> int:
    """min(max_workers, ceil(backlog / ratio)); 0 for an empty backlog."""
    if ratio < 1:
        raise SpecError(f"jobs_to_workers_ratio {ratio}: must be 1 or more")
    if backlog < 0 or max_workers < 0:
        raise SpecError(f"backlog {backlog} and max_workers {max_workers} must be zero or more")
    return min(max_workers, -(-backlog // ratio))


def plan(
    backlog: int,
    running: Mapping[str, int],
    weights: Mapping[str, float],
    ratio: int,
    max_workers: int,
    region_capacity: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """New workers to start per region (an entry for every region in `weights`).

    Each region's share is of the total the queue wants, not only of the new
    workers: workers started one at a time still end up spread by weight.
    A region's share is its weighted part of `wanted` (never above its
    `region_capacity`; the overflow goes to the other weighted regions), less
    what already runs there; no more start than the queue is short of in all.
    """
    wanted = wanted_workers(backlog, ratio, max_workers)
    short = max(0, wanted - sum(running.values()))
    if short == 0:
        return {r: 0 for r in weights}
    capacity = None if region_capacity is None else {r: region_capacity[r] for r in weights if r in region_capacity}
    share = split(wanted, weights, capacity)
    deficit = {r: max(0, share[r] - running.get(r, 0)) for r in weights}
    if sum(deficit.values()) <= short:
        return deficit
    # Some region runs more than its share: start only what is missing, where it is missing most.
    return split(short, {r: float(d) for r, d in deficit.items()}, deficit)

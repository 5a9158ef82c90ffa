"""Scaler arithmetic: how many workers a queue wants and how many new ones to start in each region."""

from __future__ import annotations

from typing import Mapping

from hyperbatch.errors import SpecError
from hyperbatch.routing import split


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

    Wanted minus running (all regions in `running` count, never below 0), split by weight; with
    `region_capacity`, a region takes at most its capacity minus what already runs there
    (a region missing from `region_capacity` is unlimited).
    """
    new = max(0, wanted_workers(backlog, ratio, max_workers) - sum(running.values()))
    capacity = None
    if region_capacity is not None:
        capacity = {r: region_capacity[r] - running.get(r, 0) for r in weights if r in region_capacity}
    return split(new, weights, capacity)

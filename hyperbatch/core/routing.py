"""Share new workers over regions by weight (largest-remainder method), within each region's capacity."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Mapping

from hyperbatch.core.errors import SpecError


def _apportion(n: int, weights: Mapping[str, Fraction]) -> dict[str, int]:
    """Largest remainder: floor of each exact quota, then +1 to the largest remainders (ties: by name)."""
    total = sum(weights.values())
    quotas = {r: n * w / total for r, w in weights.items()}
    out = {r: math.floor(q) for r, q in quotas.items()}
    by_remainder = sorted(quotas, key=lambda r: (-(quotas[r] - out[r]), r))
    for region in by_remainder[: n - sum(out.values())]:
        out[region] += 1
    return out


def split(n: int, weights: Mapping[str, float], capacity: Mapping[str, int] | None = None) -> dict[str, int]:
    """How many of `n` new workers each region gets, with an entry for every region in `weights`.

    Zero-weight regions get 0. With `capacity`, no region gets more than its capacity (a region
    missing from `capacity` is unlimited; a negative capacity counts as 0) and the overflow goes to
    the other positive-weight regions by weight; when everything is full the total is less than n.
    """
    if n < 0:
        raise SpecError(f"cannot start {n} workers: the number must be zero or more")
    for region, weight in weights.items():
        if not (math.isfinite(weight) and weight >= 0):
            raise SpecError(f"weight for {region} is {weight}: weights must be zero or more")
    capacity = capacity or {}
    out: dict[str, Any] = {region: 0 for region in weights}
    cap: dict[str, Any] = {r: max(0, capacity[r]) if r in capacity else math.inf for r in weights}
    pool = {r: Fraction(w) for r, w in weights.items() if w > 0 and cap[r] > 0}
    left = n
    # Water-filling: a region whose exact share reaches its capacity is filled and leaves the pool.
    while pool and left:
        total = sum(pool.values())
        full = [r for r, w in pool.items() if left * w / total >= cap[r]]
        if not full:
            out.update(_apportion(left, pool))
            break
        for region in full:
            out[region] = cap[region]
            left -= cap[region]
            del pool[region]
    return out

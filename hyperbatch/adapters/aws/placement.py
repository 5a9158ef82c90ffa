"""`auto` region weights from EC2 spot placement scores, cached, with equal weights as the fallback.

For a queue whose `region_weights` is "auto", the scaler asks
`RegionWeights.weights()` each run. A queue's weights are its cluster's
spot placement scores (1-10 per region, for the cluster's instance types at
the definition's `max_workers` instances), refreshed every `ttl` seconds
(10 minutes: scores move slowly, and the API has a low request quota). On any
error — no permission, throttling, a region without scores — the queue gets
equal weights over its cluster's regions, kept for a minute before trying
again. Fargate clusters have no instance types to score: equal weights.

`scaler.scale_once(..., weights=RegionWeights(config).weights())`: queues with
static weights are not in the result, so the scaler uses their configured ones.
"""

from __future__ import annotations

import logging
import math
import re
import time
from typing import Callable

from hyperbatch.config import Configuration, Queue
from hyperbatch.adapters.aws import clients

log = logging.getLogger("hyperbatch.placement")

CACHE_SECONDS = 600.0
FALLBACK_SECONDS = 60.0
# Graviton families carry a "g" after the generation digit (c6g, m7gd, c7gn); as stacks/compute_plan.py reads them.
_GRAVITON = re.compile(r"^[a-z]+\d+[a-z]*g[a-z]*(\.|$)")


def cluster_regions(config: Configuration, queue: Queue) -> list[str]:
    cluster = config.cluster(queue.cluster)
    return [r for r in config.compute_regions if cluster.regions is None or r in cluster.regions]


def score_request(config: Configuration, queue: Queue) -> dict | None:
    """GetSpotPlacementScores parameters for the queue's cluster; None when there is nothing to score."""
    cluster = config.cluster(queue.cluster)
    if cluster.type in ("FARGATE", "FARGATE_SPOT"):
        return None
    definition = config.definition(queue.definition)
    request = {
        "TargetCapacity": definition.max_workers,
        "TargetCapacityUnitType": "units",
        "SingleAvailabilityZone": False,
        "RegionNames": cluster_regions(config, queue),
    }
    types = cluster.instance_types
    if types and all("." in t for t in types):
        request["InstanceTypes"] = list(types)
    else:  # "optimal", families and default classes: describe the worker instead
        arm = any(t == "default_arm64" or _GRAVITON.match(t) for t in types)
        request["InstanceRequirementsWithMetadata"] = {
            "ArchitectureTypes": ["arm64" if arm else "x86_64"],
            "VirtualizationTypes": ["hvm"],
            "InstanceRequirements": {
                "VCpuCount": {"Min": max(1, math.ceil(definition.vcpus))},
                "MemoryMiB": {"Min": definition.memory_mib},
            },
        }
    return request


def parse_scores(pages: list[dict], regions: list[str]) -> dict[str, float]:
    """Region -> best score over the response pages; raises ValueError when no region scored above 0."""
    best: dict[str, float] = {}
    for page in pages:
        for entry in page.get("SpotPlacementScores", []):
            region, score = entry.get("Region"), entry.get("Score")
            if region in regions and score is not None:
                best[region] = max(best.get(region, 0.0), float(score))
    weights = {r: best.get(r, 0.0) for r in regions}
    if not any(weights.values()):
        raise ValueError(f"no spot placement score above 0 for {', '.join(regions)}")
    return weights


class RegionWeights:
    def __init__(self, config: Configuration, client=None, *, ttl: float = CACHE_SECONDS,
                 fallback_ttl: float = FALLBACK_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._client = client
        self.ttl, self.fallback_ttl, self.clock = ttl, fallback_ttl, clock
        self._cache: dict[str, tuple[float, dict[str, float]]] = {}

    @property
    def client(self):
        if self._client is None:
            self._client = clients.client("ec2", self.config.settings.main_region)
        return self._client

    def weights(self) -> dict[str, dict[str, float]]:
        """Weights of every queue configured "auto" (queue name -> region -> weight)."""
        return {q.name: self.for_queue(q.name) for q in self.config.queues if q.region_weights == "auto"}

    def for_queue(self, name: str) -> dict[str, float]:
        now = self.clock()
        cached = self._cache.get(name)
        if cached and cached[0] > now:
            return dict(cached[1])
        queue = self.config.queue(name)
        regions = cluster_regions(self.config, queue)
        try:
            weights = self._scores(queue, regions)
            until = now + self.ttl
        except Exception as exc:  # anything at all: scaling must not stop for want of a score
            log.warning("spot placement scores for queue %s unavailable (%s); equal weights", name, exc)
            weights = {r: 1.0 for r in regions}
            until = now + self.fallback_ttl
        self._cache[name] = (until, weights)
        return dict(weights)

    def _scores(self, queue: Queue, regions: list[str]) -> dict[str, float]:
        request = score_request(self.config, queue)
        if request is None or not regions:
            return {r: 1.0 for r in regions}
        pages, token = [], None
        while True:
            params = dict(request, **({"NextToken": token} if token else {}))
            page = self.client.get_spot_placement_scores(**params)
            pages.append(page)
            token = page.get("NextToken")
            if not token:
                break
        return parse_scores(pages, regions)

"""Whether configured entries exist in a deployment: the "deployed" column of `hyper <kind> list`.

One cheap listing call per (kind, region), cached; any failure reads as
"unknown" for the entries that needed it, never as an error.

Physical names come from hyperbatch/names.py, the rules the stacks build with.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable

from hyperbatch.cli import aws_session as aws
from hyperbatch.core.names import compute_stack

UNKNOWN, NOT_APPLICABLE = "unknown", "n/a"


def _strip(deployment: str, names: list[str]) -> set[str]:
    prefix = f"{deployment}-"
    return {n[len(prefix):] for n in names if n.startswith(prefix)}


def _pages(client: Any, operation: str, key: str, field: str, **kwargs: Any) -> list[str]:
    pages = client.get_paginator(operation).paginate(**kwargs)
    return [item[field] for page in pages for item in page[key]]


def _compute_stack(session: Any, deployment: str, region: str) -> set[str]:
    stack = aws.describe_stack(session, region, compute_stack(deployment, region))
    return {region} if stack and not stack["StackStatus"].startswith("DELETE") else set()


def _queues(session: Any, deployment: str, region: str) -> set[str]:
    sqs = aws.client(session, "sqs", region)
    urls = sqs.list_queues(QueueNamePrefix=f"{deployment}-", MaxResults=1000).get("QueueUrls", [])
    return _strip(deployment, [url.rsplit("/", 1)[-1] for url in urls])


def _clusters(session: Any, deployment: str, region: str) -> set[str]:
    """Batch job queues, and the auto scaling groups of LAUNCH_TEMPLATE clusters (same name rule)."""
    batch = aws.client(session, "batch", region)
    autoscaling = aws.client(session, "autoscaling", region)
    names = _pages(batch, "describe_job_queues", "jobQueues", "jobQueueName")
    names += _pages(autoscaling, "describe_auto_scaling_groups", "AutoScalingGroups", "AutoScalingGroupName")
    return _strip(deployment, names)


def _definitions(session: Any, deployment: str, region: str) -> set[str]:
    """Job definitions are named <deployment>-<definition>-<platform>-<arch>."""
    batch = aws.client(session, "batch", region)
    names = _pages(batch, "describe_job_definitions", "jobDefinitions", "jobDefinitionName", status="ACTIVE")
    pattern = re.compile(rf"{re.escape(deployment)}-(.+)-(ec2|fargate)-(x86_64|arm64)")
    return {m.group(1) for m in map(pattern.fullmatch, names) if m}


def _batch_regions(cfg: Any) -> list[str]:
    """Compute regions with at least one AWS Batch (not LAUNCH_TEMPLATE) cluster: where job definitions go."""
    return [
        r
        for r in cfg.compute_regions
        if any(c.type != "LAUNCH_TEMPLATE" and (c.regions is None or r in c.regions) for c in cfg.clusters)
    ]


# kind -> (regions where an entry should exist, names deployed in one region)
Where = Callable[[Any, Any, str], list[str]]
PROBES: dict[str, tuple[Where, Callable[[Any, str, str], set[str]]]] = {
    "regions": (lambda cfg, item, main: [item.name] if item.compute else [], _compute_stack),
    "queues": (lambda cfg, item, main: [main], _queues),
    "clusters": (lambda cfg, item, main: item.regions or cfg.compute_regions, _clusters),
    "definitions": (lambda cfg, item, main: _batch_regions(cfg), _definitions),
}


def statuses(kind: str, cfg: Any, host: dict) -> dict[str, str]:
    """Entry name -> "yes", "no", "partial: <regions>", "unknown" or "n/a" for the aws host `host`."""
    items = getattr(cfg, kind)
    if kind not in PROBES:
        return {item.name: NOT_APPLICABLE for item in items}  # images are CDK assets with no name of their own
    where, probe = PROBES[kind]
    deployment = host.get("stack_name") or cfg.settings.stack_name
    main = host.get("region") or cfg.settings.main_region
    cache: dict[str, set[str] | None] = {}
    session = functools.cache(lambda: aws.session(host.get("profile")))

    def found(region: str) -> set[str] | None:
        if region not in cache:
            try:
                cache[region] = probe(session(), deployment, region)
            except Exception:  # no credentials, no permission, no network: say so in the column
                cache[region] = None
        return cache[region]

    out = {}
    for item in items:
        regions = where(cfg, item, main)
        results = [found(region) for region in regions]
        present = [r for r, names in zip(regions, results) if names and item.name in names]
        if not regions:
            out[item.name] = NOT_APPLICABLE
        elif any(names is None for names in results):
            out[item.name] = UNKNOWN
        elif len(present) == len(regions):
            out[item.name] = "yes"
        else:
            out[item.name] = f"partial: {', '.join(present)}" if present else "no"
    return out

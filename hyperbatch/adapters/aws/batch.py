"""Compute on AWS Batch (worker containers as array jobs on a hub region's job queue), and on the
Auto Scaling groups of LAUNCH_TEMPLATE clusters (one instance, one worker).

Where to submit comes from the control plane's HYPER_COMPUTE value
(`stacks/compute_plan.compute_targets`): region -> cluster ->
{"type", "job_queue", "job_definitions": {definition: job definition name}}.
A HyperBatch queue runs on its configured cluster, so `start(region, queue,
definition, count)` submits to targets[region][queue's cluster] with the job
definition for `definition` there (job queue `<stack>-<cluster>`, job
definition `<stack>-<definition>-<ec2|fargate>-<arch>`, as stacks/naming.py
names them). The job definition already carries the shared worker environment;
the submit adds HYPER_QUEUE (and HYPER_BACKEND=aws).

Worker jobs are named `hb-<len(queue)>-<queue>-<ms>`: the length makes the
prefix of one queue never a prefix of another's ("a" and "a-b" share a
cluster's job queue), so `running` can tell the queues apart by name.

A LAUNCH_TEMPLATE cluster's target is {"type", "auto_scaling_group"}: its
instances run the worker of the one queue that uses the cluster (the
configuration allows no second), with the environment their boot script
gives them (stacks/worker_fleet.py). Starting N workers raises the group's
desired capacity by N (up to its maximum); its workers are the larger of the
desired capacity and the instances pending or in service. An instance whose
worker exits leaves the group and lowers the desired capacity itself.

Limits: an array job has 2 to 10,000 children, so a count is split into
balanced arrays of at most 10,000 and a single worker is a plain job.
SubmitJob is limited to 50 calls/s per account; every submit takes a token
from one process-wide bucket (`SUBMIT_LIMIT`) whose burst plus one second of
refill stays under that.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, Callable

from botocore.exceptions import ClientError

from hyperbatch.config import Configuration
from hyperbatch.adapters.aws import clients

log = logging.getLogger("hyperbatch.batch")

MAX_ARRAY_SIZE = 10_000
ACTIVE = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
# Auto Scaling lifecycle states of an instance that is, or is about to be, a worker.
LIVE_INSTANCE = ("Pending", "Pending:Wait", "Pending:Proceed", "InService")
DESCRIBE_BATCH = 100  # DescribeJobs ids per call


class TokenBucket:
    """At most `burst` + `rate` * t calls in any t seconds; `take` sleeps until a token is free."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rate, self.burst, self.clock, self.sleep = rate, burst, clock, sleep
        self.tokens = burst
        self.updated = clock()
        self._lock = threading.Lock()

    def take(self, n: float = 1.0) -> None:
        with self._lock:
            while True:
                now = self.clock()
                self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= n - 1e-9:  # tolerate float rounding, or a refill could fall short forever
                    self.tokens = max(0.0, self.tokens - n)
                    return
                self.sleep((n - self.tokens) / self.rate)


# Batch allows 50 SubmitJob calls/s per account and region: 10 + 40/s keeps any second under it.
SUBMIT_LIMIT = TokenBucket(rate=40.0, burst=10.0)


def array_sizes(count: int) -> list[int]:
    """Balanced sizes of at most MAX_ARRAY_SIZE adding up to `count` (each >= 2 unless count == 1)."""
    if count <= 0:
        return []
    parts = math.ceil(count / MAX_ARRAY_SIZE)
    base, extra = divmod(count, parts)
    return [base + 1] * extra + [base] * (parts - extra)


def job_name_prefix(queue: str) -> str:
    return f"hb-{len(queue)}-{queue}-"


def worker_job_name(queue: str, now: float) -> str:
    return f"{job_name_prefix(queue)}{int(now * 1000)}"


class BatchCompute:
    """Compute port on AWS Batch. `targets` is the parsed HYPER_COMPUTE value."""

    def __init__(self, config: Configuration, targets: dict, *, client_for: Callable[[str], Any] | None = None,
                 limiter: TokenBucket | None = None, clock: Callable[[], float] = time.time,
                 autoscaling_for: Callable[[str], Any] | None = None):
        self.config, self.targets = config, targets
        self.client_for = client_for or (lambda region: clients.client("batch", region))
        self.autoscaling_for = autoscaling_for or (lambda region: clients.client("autoscaling", region))
        self.limiter = limiter or SUBMIT_LIMIT
        self.clock = clock

    def _target(self, region: str, queue: str) -> dict:
        cluster = self.config.queue(self.config.pool(queue).queue).cluster
        target = self.targets.get(region, {}).get(cluster)
        if target is None:
            raise ValueError(f"cluster '{cluster}' of queue '{queue}' is not built in region {region}")
        if "job_queue" not in target and "auto_scaling_group" not in target:
            raise NotImplementedError(
                f"cluster '{cluster}' in {region} is a {target.get('type')} cluster: neither AWS Batch nor Auto Scaling"
            )
        return target

    def start(self, region: str, queue: str, definition: str, count: int) -> int:
        """Submit `count` workers; returns how many were submitted (fewer only if Batch refused midway,
        or a group reached its maximum size)."""
        target = self._target(region, queue)
        if "auto_scaling_group" in target:
            return self._grow(region, target["auto_scaling_group"], count)
        try:
            job_definition = target["job_definitions"][definition]
        except KeyError:
            raise ValueError(
                f"definition '{definition}' has no job definition on cluster of queue '{queue}' in {region} "
                "(a GPU definition cannot run on Fargate)"
            ) from None
        batch = self.client_for(region)
        started = 0
        for size in array_sizes(count):
            params = {
                "jobName": worker_job_name(queue, self.clock()),
                "jobQueue": target["job_queue"],
                "jobDefinition": job_definition,
                "containerOverrides": {
                    "environment": [
                        {"name": "HYPER_QUEUE", "value": queue},
                        {"name": "HYPER_BACKEND", "value": "aws"},
                    ]
                },
            }
            if size > 1:
                params["arrayProperties"] = {"size": size}
            self.limiter.take()
            try:
                batch.submit_job(**params)
            except ClientError as exc:
                if not started:
                    raise
                log.warning("submitted %d of %d workers for %s in %s: %s", started, count, queue, region, exc)
                break
            started += size
        return started

    def running(self) -> dict[tuple[str, str], int]:
        """Workers submitted and not finished per (region, queue), over every region (see `running_in`)."""
        return {(region, queue): n for region in self.targets for queue, n in self.running_in(region).items()}

    def running_in(self, region: str) -> dict[str, int]:
        """Workers submitted and not finished (SUBMITTED through RUNNING) in one region, per queue.

        Per job queue one ListJobs per active status (listing by JOB_NAME
        filter would return every status, including the past week's finished
        jobs); names tell the queues apart. An array parent counts its
        children in active states (DescribeJobs' arrayProperties.statusSummary).
        """
        out: dict[str, int] = {}
        for cluster, target in self.targets.get(region, {}).items():
            queues = self.config.pools_on(cluster)
            if not queues:
                continue
            if "auto_scaling_group" in target:
                size = _fleet_size(self._group(region, target["auto_scaling_group"]))
                if size:
                    out[queues[0]] = out.get(queues[0], 0) + size  # a fleet serves one queue (hyperbatch.config)
                continue
            if "job_queue" not in target:
                continue
            for queue, n in self._count(region, target["job_queue"], queues).items():
                if n:
                    out[queue] = out.get(queue, 0) + n
        return out

    def _active_jobs(self, region: str, job_queue: str, queues: list[str]) -> dict[str, tuple[str, dict]]:
        """jobId -> (HyperBatch queue, summary) of our active jobs on one Batch job queue."""
        batch = self.client_for(region)
        # Longest prefix first is not needed (lengths are encoded), but the match must be exact.
        prefixes = {job_name_prefix(q): q for q in queues}
        found: dict[str, tuple[str, dict]] = {}
        for status in ACTIVE:
            token = None
            while True:
                params = {"jobQueue": job_queue, "jobStatus": status}
                if token:
                    params["nextToken"] = token
                response = batch.list_jobs(**params)
                for summary in response.get("jobSummaryList", []):
                    array = summary.get("arrayProperties") or {}
                    if "index" in array or ":" in summary["jobId"]:
                        continue  # an array child: its parent counts it
                    for prefix, queue in prefixes.items():
                        if summary["jobName"].startswith(prefix):
                            found[summary["jobId"]] = (queue, summary)
                token = response.get("nextToken")
                if not token:
                    break
        return found

    def _count(self, region: str, job_queue: str, queues: list[str]) -> dict[str, int]:
        found = self._active_jobs(region, job_queue, queues)
        counts: dict[str, int] = {}
        arrays = []
        for job_id, (queue, summary) in found.items():
            if (summary.get("arrayProperties") or {}).get("size"):
                arrays.append(job_id)
            else:
                counts[queue] = counts.get(queue, 0) + 1
        batch = self.client_for(region)
        for start in range(0, len(arrays), DESCRIBE_BATCH):
            response = batch.describe_jobs(jobs=arrays[start : start + DESCRIBE_BATCH])
            for job in response.get("jobs", []):
                summary = (job.get("arrayProperties") or {}).get("statusSummary") or {}
                queue = found[job["jobId"]][0]
                counts[queue] = counts.get(queue, 0) + sum(summary.get(s, 0) for s in ACTIVE)
        return counts

    def _group(self, region: str, name: str) -> dict:
        found = self.autoscaling_for(region).describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        groups = found.get("AutoScalingGroups") or []
        if not groups:
            raise LookupError(f"Auto Scaling group {name} does not exist in {region}")
        return groups[0]

    def _grow(self, region: str, name: str, count: int) -> int:
        """Raise a fleet's desired capacity by `count` workers, up to its maximum; returns the increase."""
        group = self._group(region, name)
        now = _fleet_size(group)
        wanted = min(int(group["MaxSize"]), now + count)
        if wanted > int(group["DesiredCapacity"]):
            self.autoscaling_for(region).set_desired_capacity(
                AutoScalingGroupName=name, DesiredCapacity=wanted, HonorCooldown=False)
        return max(0, wanted - now)

    def stop_all(self) -> None:
        """Terminate every active worker job of the configured queues (an array parent takes its children);
        a fleet's desired capacity goes to zero."""
        for region, clusters in self.targets.items():
            for cluster, target in clusters.items():
                if "auto_scaling_group" in target:
                    self.autoscaling_for(region).set_desired_capacity(
                        AutoScalingGroupName=target["auto_scaling_group"], DesiredCapacity=0, HonorCooldown=False)
                    continue
                if "job_queue" not in target:
                    continue
                queues = self.config.pools_on(cluster)
                batch = self.client_for(region)
                for job_id in self._active_jobs(region, target["job_queue"], queues):
                    batch.terminate_job(jobId=job_id, reason="HyperBatch stop_all")


def _fleet_size(group: dict) -> int:
    """A fleet's workers: the capacity asked for (instances still to launch count), or the instances
    pending or in service if more (an instance not yet gone after lowering the capacity itself)."""
    live = sum(1 for i in group.get("Instances", []) if i.get("LifecycleState") in LIVE_INSTANCE)
    return max(int(group.get("DesiredCapacity", 0)), live)

"""Which workers are gone (hyperbatch.core.ports.Census): AWS Batch and on-premises records say, for free.

A worker's exec_host is `region/worker`. In a Batch container the worker is
the Batch job id (AWS_BATCH_JOB_ID: a UUID, `:INDEX` for an array child),
with `-N` for slot N of a worker that runs several jobs at once
(hyperbatch.wiring.worker). Such a worker is gone once DescribeJobs (no
charge, 100 ids a call) says its job SUCCEEDED or FAILED: its container
has stopped, and every process of it with it. On your own machine
(`onprem/NAME`) a worker is gone once its record is stale or marked gone
(hyperbatch.core.onprem). Anything else (an id of another shape, a region
that cannot be asked just now, a job Batch no longer lists) is not known to
be gone: its run's promised lease decides.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Callable

from hyperbatch.core import onprem

log = logging.getLogger("hyperbatch.census")

ENDED = ("SUCCEEDED", "FAILED")
DESCRIBE_BATCH = 100
_BATCH_WORKER = re.compile(
    r"(?P<job>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?::\d+)?)(?:-\d+)?")


def batch_job_of(worker: str) -> str | None:
    """The Batch job id a worker's name holds (its slot suffix dropped), or None."""
    found = _BATCH_WORKER.fullmatch(worker)
    return found["job"] if found else None


class WorkerCensus:
    def __init__(self, batch_for: Callable[[str], Any], registry=None, clock: Callable[[], float] = time.time):
        self.batch_for, self.registry, self.clock = batch_for, registry, clock

    def gone(self, hosts: set[str]) -> set[str]:
        jobs: dict[str, dict[str, list[str]]] = {}  # region -> Batch job id -> hosts
        names: dict[str, str] = {}  # on-premises worker name -> host
        for host in hosts:
            region, _, worker = host.partition("/")
            if region == onprem.ONPREM:
                names[worker] = host
            elif (job := batch_job_of(worker)) is not None:
                jobs.setdefault(region, {}).setdefault(job, []).append(host)
        out: set[str] = set()
        for region, by_job in jobs.items():
            try:
                out |= {h for job in self._ended(region, list(by_job)) for h in by_job[job]}
            except Exception as exc:  # not knowing is never "gone"
                log.warning("cannot describe workers in %s: %r", region, exc)
        if names and self.registry is not None:
            try:
                records = {r["name"]: r for r in self.registry.workers()}
            except Exception as exc:
                log.warning("cannot read on-premises workers: %r", exc)
            else:
                now = self.clock()
                out |= {host for name, host in names.items()
                        if name not in records or not onprem.alive(records[name], now)}
        return out

    def _ended(self, region: str, job_ids: list[str]) -> set[str]:
        batch = self.batch_for(region)
        ended = set()
        for start in range(0, len(job_ids), DESCRIBE_BATCH):
            for job in batch.describe_jobs(jobs=job_ids[start:start + DESCRIBE_BATCH]).get("jobs", []):
                if job.get("status") in ENDED:
                    ended.add(job["jobId"])
        return ended

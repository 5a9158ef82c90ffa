"""HyperBatch's own metrics, worked out from events and counts (no I/O here).

The Lambda functions publish them as CloudWatch embedded metric format
(EMF) through Powertools: job metrics with a `queue` dimension from the
release function, worker metrics with a `region` dimension and scaling failures with
`region` and `queue` dimensions from the scaler.
The dashboard (stacks/monitoring.py) finds them by name and dimension.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from hyperbatch.config import Configuration
from hyperbatch.core.ports import Event

SUBMITTED, STARTED = "JobsSubmitted", "JobsStarted"
FINISHED = {"SUCCEEDED": "JobsSucceeded", "FAILED": "JobsFailed", "CANCELLED": "JobsCancelled"}
DISPATCH_LATENCY = "DispatchLatency"  # milliseconds from submission to (each) start
WORKERS, VCPUS = "WorkersRunning", "VcpusRunning"
SCALING_FAILURES = "ScalingFailures"  # by region and queue ("*" for all): what a scaler run could not do


@dataclass
class JobMetrics:
    """Counts per queue and metric, and dispatch latencies per queue."""

    counts: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, event: Event, submitted_at: float | None = None, started_at: float | None = None,
            started_before: float | None = None) -> None:
        """One state change; times in epoch seconds, from the job's new and old images.

        A move to RUNNING is a start (with its dispatch latency) only when `started_at`
        changed: an array goes back to QUEUED between chunks and RUNNING again, but it
        started once.
        """
        counts = self.counts[event.queue]
        if event.old_state is None:
            counts[SUBMITTED] += 1
        if event.new_state == "RUNNING" and (started_at is None or started_at != started_before):
            counts[STARTED] += 1
            if submitted_at is not None and started_at is not None:
                self.latencies[event.queue].append(max(0.0, (started_at - submitted_at) * 1000.0))
        if event.new_state in FINISHED:
            counts[FINISHED[event.new_state]] += 1

    def by_queue(self) -> dict[str, tuple[dict[str, int], list[float]]]:
        queues = set(self.counts) | set(self.latencies)
        return {q: (dict(self.counts.get(q, {})), list(self.latencies.get(q, []))) for q in sorted(queues)}


def workers_per_region(
    config: Configuration, running: dict[tuple[str, str], int], started: dict[tuple[str, str], int]
) -> dict[str, dict[str, float]]:
    """Region -> {WorkersRunning, VcpusRunning}: workers counted before a scaler run plus those it started.

    Every compute region appears, with zeros where nothing runs (a flat line, not a gap).
    """
    out = {region: {WORKERS: 0.0, VCPUS: 0.0} for region in config.compute_regions}
    for source in (running, started):
        for (region, queue), n in source.items():
            vcpus = config.definition(config.pool(queue).definition).vcpus  # `queue`: a pool's work queue
            entry = out.setdefault(region, {WORKERS: 0.0, VCPUS: 0.0})
            entry[WORKERS] += n
            entry[VCPUS] += n * vcpus
    return out

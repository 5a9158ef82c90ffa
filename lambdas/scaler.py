"""The scaler function (EventBridge schedule): start the workers queues are short of.

Single flight without reserved concurrency: a run first takes the lease item
in the job table (hyperbatch/adapters/aws/lease.py) for a bit more than it can
run; a second run that overlaps finds it taken and returns without doing
anything. Sizes each queue on the store's count of waiting tasks (see
runtime.Runtime.work), less what the live on-premises workers of a queue that
weights `onprem` take (hyperbatch.core.onprem), splits new workers over regions
by weight (`auto` weights from spot placement scores), submits them to AWS Batch (or raises an
Auto Scaling group's desired capacity), and publishes WorkersRunning and
VcpusRunning per region. A region or queue that fails is skipped
(hyperbatch.services.scale) and counted as ScalingFailures, by region and queue.
"""

from __future__ import annotations

from hyperbatch.services.metrics import SCALING_FAILURES, VCPUS, WORKERS, workers_per_region
from hyperbatch.services.scale import scale_once

from hyperbatch.wiring import lambdas as runtime

logger = runtime.logger

LEASE_MARGIN_SECONDS = 10  # the lease outlasts the run's own timeout by this much


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    rt = runtime.get()
    holder = context.aws_request_id
    if not rt.scaler_lease.acquire(holder, context.get_remaining_time_in_millis() / 1000 + LEASE_MARGIN_SECONDS):
        logger.info("another scaler run holds the lease; this one does nothing")
        return {"started": {}, "skipped": "another scaler run holds the lease"}
    try:
        scaled = scale_once(rt.config, rt.queue, rt.compute, weights=rt.weights.weights(), work=rt.work,
                            onprem_workers=rt.onprem_workers())
    finally:
        rt.scaler_lease.release(holder)
    for region, values in workers_per_region(rt.config, scaled.running, scaled.started).items():
        runtime.publish("region", region, {name: (runtime.COUNT, [values[name]]) for name in (WORKERS, VCPUS)})
    for failure in scaled.failures:
        runtime.publish({"region": failure.region, "queue": failure.queue}, None,
                        {SCALING_FAILURES: (runtime.COUNT, [1])})
    result: dict = {"started": {f"{region}/{queue}": n for (region, queue), n in sorted(scaled.started.items())}}
    if scaled.failures:
        result["failures"] = [f"{f.region}/{f.queue} {f.stage}: {f.error}" for f in scaled.failures]
    if scaled.started:
        logger.info("started workers", extra={"started": result["started"]})
    return result

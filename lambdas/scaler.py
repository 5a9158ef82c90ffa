"""The scaler function (EventBridge schedule, reserved concurrency 1): start the workers queues are short of.

Sizes each queue on the store's count of waiting tasks (see runtime.Runtime.work),
splits new workers over regions by weight (`auto` weights from spot placement
scores), submits them to AWS Batch, and publishes WorkersRunning and VcpusRunning
per region.
"""

from __future__ import annotations

from hyperbatch.services.metrics import VCPUS, WORKERS, workers_per_region
from hyperbatch.services.scale import scale_once

from hyperbatch.wiring import lambdas as runtime

logger = runtime.logger


class _Counted:
    """The compute port, remembering what `running()` last answered (so it is asked once a run)."""

    def __init__(self, compute):
        self.compute, self.last = compute, {}

    def running(self):
        self.last = self.compute.running()
        return self.last

    def start(self, region, queue, definition, count):
        return self.compute.start(region, queue, definition, count)

    def stop_all(self):
        self.compute.stop_all()


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    rt = runtime.get()
    compute = _Counted(rt.compute)
    started = scale_once(rt.config, rt.queue, compute, weights=rt.weights.weights(), work=rt.work)
    for region, values in workers_per_region(rt.config, compute.last, started).items():
        runtime.publish("region", region, {name: (runtime.COUNT, [values[name]]) for name in (WORKERS, VCPUS)})
    result = {"started": {f"{region}/{queue}": n for (region, queue), n in sorted(started.items())}}
    if started:
        logger.info("started workers", extra=result)
    return result

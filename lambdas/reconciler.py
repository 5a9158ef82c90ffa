"""The reconciler function (EventBridge schedule): repair what SQS and a failing release function leave behind.

Dead letters become FAILED jobs (or, while their worker still beats, go back
as a fresh message a lease later), and stream batches the release function
gave up on are read back from the stream and handled again
(hyperbatch.services.dead_letters). Job metrics of the records handled again are
published as the release function publishes its own.
"""

from __future__ import annotations

from hyperbatch.wiring import lambdas as runtime

logger = runtime.logger


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    reconciler = runtime.get().reconciler
    result = reconciler.run_once()
    runtime.publish_jobs(reconciler.metrics)
    if any(result.values()):
        logger.info("reconciled", extra=result)
    return result

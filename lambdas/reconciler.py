"""The reconciler function (EventBridge schedule): repair what SQS and crashed processes leave behind.

Dead letters become FAILED jobs, RUNNING jobs whose worker stopped beating are
recovered, and work that sat unchanged in the queue too long is sent again
(hyperbatch.aws.reconcile).
"""

from __future__ import annotations

from . import runtime

logger = runtime.logger


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    result = runtime.get().reconciler.run_once()
    if any(result.values()):
        logger.info("reconciled", extra=result)
    return result

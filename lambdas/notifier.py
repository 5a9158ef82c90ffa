"""The notifier function (an EventBridge rule on "HyperBatch Job Notice" events): one mail or webhook call.

The release function puts a notice event for each mail or webhook a job's
change of state makes (hyperbatch.adapters.aws.notices); this sends it. A
failure raises, so Lambda tries the event again (asynchronous invocation:
twice more, a minute or more apart), off every job's path.
"""

from __future__ import annotations

from hyperbatch.wiring import lambdas as runtime

logger = runtime.logger


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    detail = event["detail"]
    sent = runtime.get().notice_sender.deliver(detail)
    logger.info("notice", extra={"channel": detail["channel"], "job": detail["notice"]["job_id"],
                                 "event": detail["notice"]["event"], "sent": sent})
    return {"sent": sent}

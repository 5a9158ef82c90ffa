"""The HTTP API function: API Gateway (payload 2.0, IAM authorizer) -> the API application.

The caller is the IAM principal API Gateway verified; a request with none is
refused with 403, as API Gateway itself refuses an unsigned one.
"""

from __future__ import annotations

from aws_lambda_powertools.logging import correlation_paths

from hyperbatch.wiring import lambdas as runtime

logger = runtime.logger


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def handler(event: dict, context) -> dict:
    return runtime.get().api.resolve(event, context)

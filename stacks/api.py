"""The HTTP API: every route IAM-authorized (SigV4), one Lambda integration, access logs.

Why an HTTP API and not a REST API: see docs/api-choice.md.
"""

from __future__ import annotations

import json

import jsii
from aws_cdk import aws_apigateway as apigw_v1
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk.aws_apigatewayv2_authorizers import HttpIamAuthorizer
from aws_cdk.aws_apigatewayv2_integrations import HttpLambdaIntegration
from constructs import Construct

from hyperbatch.config import Configuration

from stacks.retention import log_group

# The API surface. Explicit routes, not a catch-all proxy: an unknown path is
# answered by API Gateway and never reaches (or bills) the function.
ROUTES = (
    ("POST", "/jobs"),
    ("GET", "/jobs"),
    ("GET", "/jobs/{id}"),
    ("PATCH", "/jobs/{id}"),
    ("DELETE", "/jobs/{id}"),
    ("POST", "/jobs/{id}/hold"),
    ("POST", "/jobs/{id}/release"),
    ("POST", "/jobs/{id}/rerun"),
    ("POST", "/jobs/{id}/signal"),
    ("POST", "/jobs/{id}/move"),
    ("GET", "/jobs/{id}/log"),
    ("GET", "/jobs/{id}/tasks"),
    ("GET", "/jobs/{id}/files"),
    ("POST", "/uploads"),
    ("POST", "/workflows"),
    ("GET", "/workflows"),
    ("GET", "/workflows/{id}"),
    ("POST", "/uploads/parts"),
    ("POST", "/uploads/complete"),
    ("POST", "/uploads/abort"),
    ("GET", "/queues"),
    ("GET", "/nodes"),
    ("GET", "/health"),
    ("GET", "/openapi.json"),
    ("GET", "/swagger"),
    ("GET", "/swagger/swagger-ui.js"),  # Swagger UI's script and style, served by the API (no CDN)
    ("GET", "/swagger/swagger-ui.css"),
    # The dashboard's pages (hyperbatch/web: AWS_PAGES), opened through `hyper dashboard`'s signing proxy.
    ("GET", "/"),
    ("GET", "/ui/jobs"),
    ("GET", "/ui/jobs/{id}"),
    ("GET", "/ui/workers"),
    ("GET", "/ui/static/{name}"),
)

# One JSON line per request; the caller's ARN ties a request to a job owner.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "time": "$context.requestTime",
    "caller": "$context.identity.userArn",
    "ip": "$context.identity.sourceIp",
    "route": "$context.routeKey",
    "status": "$context.status",
    "latencyMs": "$context.responseLatency",
    "responseLength": "$context.responseLength",
    "integrationError": "$context.integrationErrorMessage",
}


@jsii.implements(apigw.IAccessLogSettings)
class _AccessLogs:
    def __init__(self, destination: apigw.IAccessLogDestination) -> None:
        self._destination = destination

    @property
    def destination(self) -> apigw.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw_v1.AccessLogFormat:
        return apigw_v1.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS, separators=(",", ":")))


class HyperApi(Construct):
    """`api.url` is the base URL the CLI signs requests against."""

    def __init__(self, scope: Construct, id: str, *, config: Configuration, handler: lambda_.IFunction) -> None:
        super().__init__(scope, id)
        self.http_api = apigw.HttpApi(
            self,
            "HttpApi",
            api_name=f"{config.settings.stack_name}-api",
            description="HyperBatch job API (IAM-authorized)",
            create_default_stage=False,
            default_authorizer=HttpIamAuthorizer(),
        )
        integration = HttpLambdaIntegration("Handler", handler)
        for method, path in ROUTES:
            self.http_api.add_routes(path=path, methods=[apigw.HttpMethod(method)], integration=integration)

        self.access_logs = log_group(self, "AccessLogs", config)
        self.stage = apigw.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigw.ThrottleSettings(
                rate_limit=config.settings.api.throttle_rate, burst_limit=config.settings.api.throttle_burst
            ),
            access_log_settings=_AccessLogs(apigw.LogGroupLogDestination(self.access_logs)),
        )
        self.url = self.stage.url

"""The control plane's Lambda functions: one shared code asset, one role and log group each."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from hyperbatch.config import Configuration

from stacks import code_assets
from stacks.nag import acknowledge, allow
from stacks.retention import log_group

RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
# Powertools for AWS Lambda (Python) v3, public layer; bump the version here only.
# It also supplies pydantic, which hyperbatch.config needs, built for this runtime and architecture.
POWERTOOLS_LAYER_VERSION = 27
POWERTOOLS_LAYER = "arn:aws:lambda:{region}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-arm64:{version}"


def powertools_layer_arn(region: str) -> str:
    return POWERTOOLS_LAYER.format(region=region, version=POWERTOOLS_LAYER_VERSION)


class Functions(Construct):
    """Builds functions that share code, layer and environment."""

    def __init__(self, scope: Construct, id: str, *, config: Configuration, environment: dict[str, str]) -> None:
        super().__init__(scope, id)
        self._config = config
        self._environment = environment
        self._code = lambda_.Code.from_asset(
            str(code_assets.PROJECT_ROOT), exclude=code_assets.only(*code_assets.LAMBDA_ENTRIES)
        )
        self._layer = lambda_.LayerVersion.from_layer_version_arn(
            self, "Powertools", powertools_layer_arn(Stack.of(self).region)
        )

    def add(self, name: str, handler: str, *, timeout_seconds: int, memory_mib: int = 512,
            environment: dict[str, str] | None = None, **props) -> lambda_.Function:
        """A function with its own role that can write only its own log group; `environment` replaces
        the shared one (stacks/contract.py says which function gets which)."""
        role = iam.Role(self, f"{name}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        logs = log_group(self, f"{name}Logs", self._config)
        allow(role, ["logs:CreateLogStream", "logs:PutLogEvents"], [logs.log_group_arn])
        function = lambda_.Function(
            self,
            name,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=handler,
            code=self._code,
            layers=[self._layer],
            role=role,
            log_group=logs,
            logging_format=lambda_.LoggingFormat.JSON,
            # No platform start/report lines per invocation (errors and timeouts still show);
            # the handlers' own logs at INFO and up.
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            environment=self._environment if environment is None else environment,
            timeout=Duration.seconds(timeout_seconds),
            memory_size=memory_mib,
            **props,
        )
        acknowledge(
            function,
            "Pinned to Python 3.12: the Powertools layer (and the pydantic-core binary it ships) is "
            "built per Python version, and both move together in stacks/functions.py.",
            "AwsSolutions-L1",
        )
        return function

"""The control plane's Lambda functions: shared code, dependency layer and environment; a role and log group each."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from hyperbatch.config import Configuration

from stacks import code_assets
from stacks.nag import acknowledge, allow
from stacks.retention import log_group

RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
PYTHON_VERSION = RUNTIME.name.removeprefix("python")  # "3.12": what the dependencies are built for


class Functions(Construct):
    """Builds functions that share code, the dependency layer and environment."""

    def __init__(self, scope: Construct, id: str, *, config: Configuration, environment: dict[str, str]) -> None:
        super().__init__(scope, id)
        self._config = config
        self._environment = environment
        self._code = lambda_.Code.from_asset(
            str(code_assets.PROJECT_ROOT), exclude=code_assets.only(*code_assets.LAMBDA_ENTRIES)
        )
        # requirements.txt as pinned (boto3 included, not the runtime's own), built for this
        # architecture and Python version by pip at synth (stacks/code_assets.py).
        self._layer = lambda_.LayerVersion(
            self,
            "Dependencies",
            code=lambda_.Code.from_asset(
                str(code_assets.lambda_dependencies(ARCHITECTURE.name, PYTHON_VERSION))
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="HyperBatch runtime dependencies (requirements.txt)",
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
            "Pinned to Python 3.12, the worker image's Python: the dependency layer (pydantic-core is "
            "a compiled extension) is built for RUNTIME's version, so both move together in stacks/functions.py.",
            "AwsSolutions-L1",
        )
        return function

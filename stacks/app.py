"""Builds the CDK app from a configuration directory: one control plane, one stack per compute region."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from hyperbatch.config import Configuration, ConfigError, load

from stacks import naming
from stacks.code_assets import PROJECT_ROOT, DependencyBuildError
from stacks.compute import ComputeStack
from stacks.control_plane import ControlPlaneStack

PLACEHOLDER_ACCOUNT = naming.PLACEHOLDER_ACCOUNT  # the account of a synth without credentials
DEFAULT_CONFIG_DIR = "configurations"


def config_dir_from(app: cdk.App, explicit: str | os.PathLike | None = None) -> Path:
    """Explicit argument, then `-c config_dir=...`, then $HYPERBATCH_CONFIG, then ./configurations."""
    chosen = explicit or app.node.try_get_context("config_dir") or os.environ.get("HYPERBATCH_CONFIG")
    return Path(chosen) if chosen else PROJECT_ROOT / DEFAULT_CONFIG_DIR


def account_for(config: Configuration) -> str:
    return config.settings.account or os.environ.get("CDK_DEFAULT_ACCOUNT") or PLACEHOLDER_ACCOUNT


def cdk_json_context() -> dict:
    """cdk.json's context (feature flags, pinned AZs), so a direct build matches `cdk synth`."""
    return json.loads((PROJECT_ROOT / "cdk.json").read_text()).get("context", {})


def build_app(
    config_dir: str | os.PathLike | None = None, outdir: str | None = None, context: dict | None = None
) -> cdk.App:
    """The whole deployment as a CDK app, checked by cdk-nag's AwsSolutions pack on synth.

    `context` adds to cdk.json's context, as `cdk -c key=value` or cdk.context.json would.
    Raises ConfigError (naming file, entry and field) for a bad configuration.
    """
    app = cdk.App(outdir=outdir, context=cdk_json_context() | (context or {}))
    config = load(config_dir_from(app, config_dir))
    deployment, main = config.settings.stack_name, config.settings.main_region
    account = account_for(config)

    control = ControlPlaneStack(
        app,
        naming.control_stack(deployment),
        config=config,
        env=cdk.Environment(account=account, region=main),
        description=f"HyperBatch {deployment}: control plane (API, job table, queues, scheduler)",
    )
    for region in config.compute_regions:
        compute = ComputeStack(
            app,
            naming.compute_stack(deployment, region),
            config=config,
            region=region,
            env=cdk.Environment(account=account, region=region),
            description=f"HyperBatch {deployment}: workers in {region}",
        )
        # Deploy order only (no references cross regions): workers start after their queues exist.
        compute.add_stack_dependency(control)
    cdk.Tags.of(app).add("hyperbatch:deployment", deployment)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


def main() -> int:
    """`python app.py`: synthesize into cdk.out (or the CDK CLI's CDK_OUTDIR), or print the problem and exit 1."""
    outdir = os.environ.get("CDK_OUTDIR") or "cdk.out"
    try:
        app = build_app(outdir=outdir)
    except ConfigError as error:
        print(f"configuration error:\n{error}", file=sys.stderr)
        return 1
    except DependencyBuildError as error:
        print(f"synthesis failed: {error}", file=sys.stderr)
        return 1
    try:
        assembly = app.synth()
    except RuntimeError as error:  # a failed validation (cdk-nag); its report is already printed
        print(f"synthesis failed: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    if not os.environ.get("CDK_OUTDIR"):  # run by hand: say what was written
        for stack in assembly.stacks:
            print(f"{stack.stack_name}: {os.path.relpath(stack.template_full_path)}")
    return 0

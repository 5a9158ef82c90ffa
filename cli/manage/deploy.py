"""`hyper deploy`: validate the configuration, then run the AWS CDK CLI on the project's CDK app."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

from hyperbatch.cli.errors import CliError, UsageError
from hyperbatch.cli.manage.common import config_option, configuration_dir

CDK_MISSING = "the AWS CDK CLI is missing: install it with `npm install -g aws-cdk@2`"


@click.command("deploy", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dry-run", is_flag=True,
              help="Only synthesize the templates (`cdk synth --all`); needs no AWS credentials.")
@click.option("--diff", is_flag=True, help="Show what a deploy would change (`cdk diff --all`).")
@config_option
@click.option("--profile", help="AWS profile to deploy with (default: the usual credential chain).")
@click.pass_context
def deploy(ctx: click.Context, dry_run: bool, diff: bool, config_dir: Path | None, profile: str | None) -> None:
    """Deploy every stack of the configuration (`cdk deploy --all`), streaming the CDK's output."""
    if dry_run and diff:
        raise UsageError("give --dry-run or --diff, not both")
    directory = _validated(config_dir)
    cdk = find_cdk()
    project = _project_dir()
    if dry_run:
        args = ["synth", "--all"]
    else:
        args = ["diff", "--all"] if diff else ["deploy", "--all", "--require-approval", "never"]
    # cdk.json runs "${HYPERBATCH_PYTHON:-python3}" app.py: synthesize with the interpreter hyper runs in
    # (it has hyperbatch; a `python3` first on PATH may not), unless the caller named another.
    env = {"HYPERBATCH_PYTHON": sys.executable, **os.environ, "HYPERBATCH_CONFIG": str(directory)}
    if profile:
        args += ["--profile", profile]
        env["AWS_PROFILE"] = profile
    if not dry_run:
        from hyperbatch.cli import aws_session as aws

        identity = aws.caller_identity(profile, f"`cdk {args[0]}` needs AWS credentials (--dry-run does not)")
        click.echo(f"hyper: as {identity['Arn']} (account {identity['Account']})", err=True)
    click.echo(f"hyper: {' '.join(cdk + args)}  (in {project}, HYPERBATCH_CONFIG={directory})", err=True)
    sys.stdout.flush()
    try:
        code = subprocess.call(cdk + args, cwd=project, env=env)
    except OSError as exc:
        raise CliError(f"cannot run {cdk[0]}: {exc.strerror or exc}") from None
    ctx.exit(code if code >= 0 else 128 - code)  # killed by signal N: 128+N, as a shell reports it


def _validated(given: Path | None) -> Path:
    """The configuration directory, after checking it; each problem on its own line, then exit 2."""
    from hyperbatch import config

    directory = configuration_dir(given)
    try:
        config.load(directory)
    except config.ConfigError as exc:
        for line in str(exc).splitlines():
            click.echo(f"hyper: configuration error: {line}", err=True)
        raise click.exceptions.Exit(2) from None
    return directory


def find_cdk() -> list[str]:
    """`cdk` on PATH, else `npx --no-install aws-cdk@2` if npx has that package; CliError (the hint)
    otherwise. npx is asked first, quietly: without the package it would print npm's own error."""
    if cdk := shutil.which("cdk"):
        return [cdk]
    if npx := shutil.which("npx"):
        command = [npx, "--no-install", "aws-cdk@2"]
        try:
            found = subprocess.run([*command, "--version"], stdin=subprocess.DEVNULL, capture_output=True,
                                   timeout=120, check=False).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            found = False
        if found:
            return command
    raise CliError(CDK_MISSING)


def _project_dir() -> Path:
    """Where cdk.json is: the checkout this CLI runs from, else the current directory."""
    for candidate in (Path(__file__).resolve().parents[2], Path.cwd()):  # cli/manage/deploy.py -> the checkout
        if (candidate / "cdk.json").is_file():
            return candidate
    raise UsageError("no cdk.json here: run `hyper deploy` in the HyperBatch project directory")

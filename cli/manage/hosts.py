"""`hyper hosts ...`: list, select and forget hosts, and import a deployed stack as one."""

from __future__ import annotations

from pathlib import Path

import click

from hyperbatch.cli import host_registry as registry
from hyperbatch.cli.errors import CliError, HostError, UsageError
from hyperbatch.cli.manage.common import config_option, configuration_dir, print_table
from hyperbatch.cli.runner import one_line

REQUIRED_OUTPUTS = ("ApiUrl", "Region", "StackName")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def hosts() -> None:
    """The HyperBatch hosts the commands can talk to (local mode, deployments)."""


@hosts.command("list")
def list_hosts() -> None:
    """Show every known host; `*` marks the one commands use."""
    data = registry.load_hosts()
    if not data["hosts"]:
        click.echo(registry.NO_HOST_MESSAGE)
        return
    try:
        using = registry.current()[0]
    except HostError:
        using = None
    rows = (
        ("*" if name == using else "", name, entry.get("kind"), entry.get("url"), entry.get("region"))
        for name, entry in sorted(data["hosts"].items())
    )
    print_table(("", "name", "kind", "url", "region"), rows)


@hosts.command("select")
@click.argument("name")
def select_host(name: str) -> None:
    """Make NAME the host the commands use."""
    registry.select(name)
    entry = registry.get(name)
    click.echo(f"selected host {name} ({entry.get('kind')}, {entry.get('url')})")


@hosts.command("remove")
@click.argument("name")
def remove_host(name: str) -> None:
    """Forget host NAME (nothing is deleted on the host itself)."""
    registry.remove(name)
    click.echo(f"removed host {name}")


@hosts.command("import-deployment")
@click.option("--stack-name", help="Control-plane CloudFormation stack (default: <settings stack_name>-Control).")
@click.option("--region", help="Where that stack is (default: settings main_region).")
@click.option("--profile", help="AWS profile to read the stack with and to sign requests with later.")
@click.option("--name", "host_name", help="Name for the host (default: the deployment's stack_name).")
@config_option
def import_deployment(
    stack_name: str | None, region: str | None, profile: str | None, host_name: str | None, config_dir: Path | None
) -> None:
    """Register a deployed HyperBatch (from its control-plane stack's outputs) and select it."""
    from hyperbatch.cli import aws_session as aws
    from hyperbatch.core.names import control_stack

    if not (stack_name and region):
        settings = _settings(config_dir)
        stack_name = stack_name or control_stack(settings.stack_name)
        region = region or settings.main_region
    with aws.errors(f"cannot read stack {stack_name} in {region}"):
        stack = aws.describe_stack(aws.session(profile), region, stack_name)
    if stack is None:
        raise CliError(
            f"no CloudFormation stack {stack_name} in {region}: deploy with `hyper deploy`, "
            "or pass --stack-name and --region"
        )
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}
    missing = [key for key in REQUIRED_OUTPUTS if key not in outputs]
    if missing:
        raise CliError(
            f"stack {stack_name} ({stack.get('StackStatus', 'unknown status')}) has no output "
            f"{', '.join(missing)}: is it a HyperBatch control plane, fully deployed?"
        )
    entry = {"kind": "aws", "url": outputs["ApiUrl"], "region": outputs["Region"], "stack_name": outputs["StackName"]}
    if profile:
        entry["profile"] = profile
    host_name = host_name or outputs["StackName"]
    registry.register(host_name, entry, select=True)
    click.echo(f"imported host {host_name} ({entry['url']}, {entry['region']}) from stack {stack_name}; selected it")


def _settings(given: Path | None):
    """settings.json of the configuration: where the default stack name and region come from."""
    from hyperbatch import config

    try:
        directory = configuration_dir(given)
        return config.parse_file("settings", config.read_raw(directory, "settings"))
    except (config.ConfigError, UsageError) as exc:
        raise UsageError(f"{one_line(exc)} (or pass --stack-name and --region)") from None

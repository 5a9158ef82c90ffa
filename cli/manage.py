"""`hyper` management commands: hosts, the configured resources, and deploy.

    hyper hosts list | select NAME | remove NAME | import-deployment [...]
    hyper regions|clusters|queues|definitions|images list|add|update|delete [...]
    hyper deploy [--dry-run | --diff] [--config DIR] [--profile P]

`cli.hyper` calls `register(hyper)`. The commands live in `cli.hosts_cmd`,
`cli.resources` and `cli.deploy`; this module holds what they share.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import click

from cli.errors import UsageError

DEPLOY_HINT = (
    "deploy with `hyper deploy` (or `cdk deploy --all`); "
    "local mode picks it up on `hyper local down && hyper local up`"
)

config_option = click.option(
    "--config",
    "config_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Configuration directory (default: $HYPERBATCH_CONFIG or ./configurations).",
)


def register(group: click.Group) -> None:
    """Add the hosts, resource and deploy commands to the `hyper` group."""
    from cli import deploy, hosts_cmd, resources

    group.add_command(hosts_cmd.hosts)
    for command in resources.groups():
        group.add_command(command)
    group.add_command(deploy.deploy)


def configuration_dir(given: Path | None) -> Path:
    """`--config`, else $HYPERBATCH_CONFIG, else ./configurations; UsageError if it is not a directory."""
    env = os.environ.get("HYPERBATCH_CONFIG")
    directory = given or (Path(env) if env else Path.cwd() / "configurations")
    if not directory.is_dir():
        raise UsageError(f"no configuration directory at {directory}: pass --config DIR or set HYPERBATCH_CONFIG")
    return directory.resolve()


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A plain rich table on stdout (cells are text, never markup); wide enough not to wrap when piped."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*headers, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for row in rows:
        table.add_row(*(Text("-" if cell is None else str(cell)) for cell in row))
    Console(width=None if sys.stdout.isatty() else 250, highlight=False).print(table)

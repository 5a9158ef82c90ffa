"""What the management commands share: the configuration directory, its option, plain tables."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import click

from hyperbatch.cli.errors import UsageError

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


def configuration_dir(given: Path | None, *, packaged_default: bool = False) -> Path:
    """`--config`, else $HYPERBATCH_CONFIG, else ./configurations; UsageError if it is not a directory.

    With `packaged_default` (local mode), a missing ./configurations falls back to the
    configuration the package carries (hyperbatch.defaults), so local mode runs anywhere.
    """
    env = os.environ.get("HYPERBATCH_CONFIG")
    directory = given or (Path(env) if env else Path.cwd() / "configurations")
    if not directory.is_dir() and packaged_default and not given and not env:
        from hyperbatch.defaults import DIRECTORY

        directory = DIRECTORY
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

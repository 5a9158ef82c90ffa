"""Run a click command the way every HyperBatch command reports problems: one line, never a traceback.

    sys.exit(run(my_command, "qsub"))

Usage errors (click's or ours) exit 2, CliError its own code (1 by default),
Ctrl-C 130, a closed pipe (`qstat | head`) 141 quietly, anything unexpected 1
with `PROG: internal error: ...`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from hyperbatch.cli.errors import CliError
# One rule for both kinds of command: the click commands (hyper, qlog) and the getopt ones (hyperbatch.cli.pbs).
from hyperbatch.cli.pbs.common import err, one_line


def run(command: click.Command, prog: str, args: list[str] | None = None, obj: Any = None) -> int:
    """Invoke `command` on `args` (default sys.argv[1:]) and return the exit code to use.

    The command's return value is the exit code when it is an int (0 otherwise).
    """
    args = sys.argv[1:] if args is None else args
    try:
        rv = command.main(args=args, prog_name=prog, standalone_mode=False, obj=obj)
        return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except click.UsageError as exc:
        err(f"{prog}: {one_line(exc.format_message()).rstrip('.')} (try '{prog} --help')")
        return 2
    except click.ClickException as exc:
        err(f"{prog}: {one_line(exc.format_message())}")
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        return 130
    except CliError as exc:
        err(f"{prog}: {one_line(exc.message)}")
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away: stop quietly, and keep the interpreter from complaining at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 141
    except Exception as exc:  # last resort: still one line
        err(f"{prog}: internal error: {type(exc).__name__}: {one_line(str(exc)) or 'no detail'}")
        return 1

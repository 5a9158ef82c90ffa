"""Where local state lives: one rule for the CLI, the daemon and the workers."""

import os
from pathlib import Path


def home() -> Path:
    """$HYPERBATCH_HOME, else ~/.hyperbatch, always absolute.

    Absolute because the daemon and its workers run in other directories than
    the command that named a relative path.
    """
    env = os.environ.get("HYPERBATCH_HOME")
    return (Path(env).expanduser() if env else Path.home() / ".hyperbatch").absolute()

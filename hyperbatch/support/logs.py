"""Process logging: one format for the daemon and the workers; Lambda uses Powertools instead.

Modules log through `logging.getLogger("hyperbatch.<part>")`. A long-running process
calls `configure()` once; in Lambda, hyperbatch.wiring.lambdas hands the Powertools
Logger's JSON formatter to these loggers, so the same lines become structured logs.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def configure(level: int = logging.INFO) -> None:
    """Log lines to stderr (the daemon's daemon.log, a worker's log file, a container's log stream)."""
    logging.basicConfig(level=level, format=FORMAT)

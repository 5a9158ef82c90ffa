"""Deferred jobs (`qsub -a`): a job is not eligible to run before its execution time.

Until then it waits (state WAITING, shown W as PBS shows it); the reconciler's timer
releases it once the time has come (services/release.release_due).
"""

from __future__ import annotations

import time


def eligible(execution_time: float | None, now: float) -> bool:
    return execution_time is None or execution_time <= now


def reason(execution_time: float) -> str:
    """The job's comment while it waits for its time."""
    when = time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(execution_time))
    return f"waiting for execution time {when}"

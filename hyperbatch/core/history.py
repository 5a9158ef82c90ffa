"""A job's history, kept on its document for `tracejob`: what happened to it, when, and where.

Each entry is `[epoch seconds, source, text]`, appended (Change.append) by
the same conditional write that makes the change it records, so the history
can neither miss a change nor record one that lost its race. `source` is the
letter tracejob prints: "S" for the server's side (submit, hold, alter,
cancel, rerun, move, requeue after a lost worker), "M" for the worker's side
(a run started on a host, a signal delivered, the exit). An array records
its own events (submitted, began, finished, cancelled), not one per task, so
the list stays short: a job gains a few entries per run.
"""

from __future__ import annotations

import time

FIELD = "history"
SERVER, WORKER = "S", "M"
MAX_TEXT = 200


def entry(source: str, text: str, at: float | None = None) -> list:
    return [round(time.time() if at is None else at, 2), source, text[:MAX_TEXT]]


def add(change, source: str, text: str, at: float | None = None):
    """Append one entry to `change` (a core.model.Change) and return the change."""
    change.append.setdefault(FIELD, []).append(entry(source, text, at))
    return change

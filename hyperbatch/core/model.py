"""The job record and the one way every adapter changes it.

A job is stored as one document. Adapters never edit documents themselves:
they check an `Expect` and apply an `Change` with the functions here (SQLite),
or translate both into one conditional write (DynamoDB), so the rules are the
same on every backend.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

from hyperbatch.core.errors import StaleTransition
from hyperbatch.core.states import JobState

# Array bookkeeping kept on the job document (counters, not one record per task).
ARRAY_COUNTERS = ("pending", "running", "succeeded", "failed", "cancelled")


def new_job(**fields: Any) -> dict:
    """A job document with every field present, so views and adapters need no defaults."""
    doc = {
        "id": None,
        "name": "job",
        "owner": "",
        "queue": "",
        "definition": "",
        "script": None,
        "script_name": None,
        "command": None,
        "array": None,  # canonical array spec, or None for a single job
        "depend": "",
        "priority": 0,
        "max_attempts": 1,
        "walltime": None,
        "env": {},
        "resources": {},
        "workdir": None,
        # PBS attributes qsub sets (core/options.py); defaults as PBS sends them.
        "account": None,
        "project": None,
        "checkpoint": "u",
        "output_path": None,
        "error_path": None,
        "join": "n",
        "keep": "n",
        "remove_files": None,
        "shell": None,
        "rerunnable": True,
        "execution_time": None,
        "mail_points": "a",
        "mail_users": None,
        "umask": None,
        "sandbox": None,
        "state": JobState.QUEUED.value,
        "attempt": 1,
        "run_count": 0,
        "lost_runs": 0,  # runs that ended with their worker lost (they use up no --retries)
        "exit_status": None,
        "reason": "",
        "submitted_at": time.time(),
        "started_at": None,
        "finished_at": None,
        "exec_host": None,
        "cpu_seconds": None,
        "cancel_requested": False,
        "heartbeat_at": None,
        "version": 0,
        # Arrays only: counters, failures by index, per-lease chunks in flight.
        "total": 1,
        "pending": 0,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
        "dispatched": [],  # merged [lo, hi) position ranges handed out at least once
        "failed_tasks": {},
        "cancelled_tasks": {},
        "retrying": {},
        "chunks": {},
        "beats": {},  # chunk id -> last heartbeat of the worker running it
    }
    doc.update(fields)
    return doc


@dataclass(frozen=True)
class Expect:
    """What the caller believes about the job; the write happens only if it still holds."""

    states: frozenset[JobState] | None = None
    attempt: int | None = None
    version: int | None = None
    fields: tuple[tuple[str, Any], ...] = ()  # (field, value) pairs that must match

    @classmethod
    def state(cls, *states: JobState, attempt: int | None = None) -> "Expect":
        return cls(states=frozenset(states), attempt=attempt)


@dataclass
class Change:
    """A write: plain fields set, counters added to, and keys set or removed inside map fields."""

    set: dict[str, Any] = field(default_factory=dict)
    add: dict[str, int] = field(default_factory=dict)
    map_set: dict[str, dict[str, Any]] = field(default_factory=dict)
    map_del: dict[str, list[str]] = field(default_factory=dict)


def holds(doc: dict, expect: Expect) -> bool:
    if expect.states is not None and doc["state"] not in {s.value for s in expect.states}:
        return False
    if expect.attempt is not None and doc["attempt"] != expect.attempt:
        return False
    if any(doc.get(key) != value for key, value in expect.fields):
        return False
    return expect.version is None or doc["version"] == expect.version


def apply(doc: dict, expect: Expect, change: Change) -> dict:
    """Return the new document, or raise StaleTransition if `expect` no longer holds."""
    if not holds(doc, expect):
        raise StaleTransition(f"job {doc['id']} is {doc['state']} attempt {doc['attempt']}")
    new = copy.copy(doc)
    for key, value in change.set.items():
        new[key] = value.value if isinstance(value, JobState) else value
    for key, delta in change.add.items():
        new[key] = new.get(key, 0) + delta
    for key, entries in change.map_set.items():
        new[key] = {**new.get(key, {}), **entries}
    for key, keys in change.map_del.items():
        new[key] = {k: v for k, v in new.get(key, {}).items() if k not in set(keys)}
    new["version"] = doc["version"] + 1
    return new


_DEFAULTS = new_job()


def is_array(doc: dict) -> bool:
    return doc["array"] is not None


def view(doc: dict) -> dict:
    """The job as the API shows it: no script body, no internal bookkeeping."""
    out = {
        key: doc.get(key, _DEFAULTS.get(key))  # a document written before a field existed shows its default
        for key in (
            "id", "name", "owner", "queue", "definition", "state", "attempt", "run_count",
            "max_attempts", "priority", "exit_status", "reason", "submitted_at", "started_at",
            "finished_at", "exec_host", "walltime", "env", "resources", "depend", "command",
            "script_name", "cpu_seconds", "workdir", "account", "project", "checkpoint", "output_path",
            "error_path", "join", "keep", "remove_files", "shell", "rerunnable", "execution_time", "mail_points",
            "mail_users", "umask", "sandbox",
        )
    }
    out["array"] = (
        {
            "spec": doc["array"],
            "total": doc["total"],
            **{k: doc[k] for k in ARRAY_COUNTERS},
            "failed_tasks": doc["failed_tasks"],
        }
        if is_array(doc)
        else None
    )
    return out

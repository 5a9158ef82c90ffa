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

from hyperbatch.core import states as transitions
from hyperbatch.core.errors import IllegalTransition, StaleTransition
from hyperbatch.core.states import JobState

# Array bookkeeping kept on the job document (counters, not one record per task).
ARRAY_COUNTERS = ("pending", "running", "succeeded", "failed", "cancelled")


def new_job(**fields: Any) -> dict:
    """A job document with every field present, so views and adapters need no defaults."""
    doc: dict[str, Any] = {
        "id": None,
        "server": "",  # the server name the id was given under (hyperbatch.core.ids.format_id)
        "name": "job",
        "owner": "",
        "queue": "",
        "definition": "",
        "pool": None,  # the work queue its work is sent to (hyperbatch.core.pools); None: its queue's
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
        "notify": [],  # webhook URLs (--notify): told of begin, end and abort (hyperbatch.core.notices)
        "umask": None,
        "sandbox": None,
        "stagein": [],  # staging pairs, canonical PBS text (core/staging.py)
        "stageout": [],
        "stageout_files": [],  # what the last run staged out: [{"path", "dest", "size"}]
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
        # Task maps (hyperbatch.core.tasks.TaskMap: {page: runs of positions}): failed (exit status),
        # cancelled, due for a retry (attempt), lost with their worker (times).
        "task_failed": {},
        "task_cancelled": {},
        "task_retry": {},
        "task_lost": {},
        "chunks": {},  # chunk id -> the chunk; its worker's heartbeats are apart (JobStore.beat)
        # Set or appended to when something happens, absent until then (a DynamoDB write is billed by the KB):
        # "history": [[time, code, args...], ...] for tracejob (hyperbatch.core.history),
        # "signals": [[time, name, task index, delivered], ...] asked for by qsig, for the worker to deliver.
        # "rerun_requested": True once qrerun asked to run the running job again: it stays RUNNING until its
        # worker has killed the run, and only then goes QUEUED (docs/architecture.md §4.5); None after.
        # Absent (or None) when not asked, so a write expects None (`NO_REQUEST`; `holds` reads a missing
        # field as None, DynamoDB's condition is attribute_not_exists OR NULL).
        # "reruns": runs ended by qrerun (like lost_runs, they use up no --retries: exits.free_runs).
    }
    doc.update(fields)
    return doc


# What a write expects of a running job when neither qdel nor qrerun may have been asked of it since: every
# end of its run but the one asked for (hyperbatch.services.dispatch), and qrerun itself.
NO_REQUEST: tuple[tuple[str, Any], ...] = (("cancel_requested", False), ("rerun_requested", None))


@dataclass(frozen=True)
class Expect:
    """What the caller believes about the job; the write happens only if it still holds."""

    states: frozenset[JobState] | None = None
    attempt: int | None = None
    version: int | None = None
    fields: tuple[tuple[str, Any], ...] = ()  # (field, value) pairs that must match
    keys: tuple[tuple[str, str], ...] = ()  # (map field, key) pairs: the key must be in the map

    @classmethod
    def state(cls, *states: JobState, attempt: int | None = None) -> "Expect":
        """The job is in one of `states` (a write that keeps the state; a move uses `move`)."""
        return cls(states=frozenset(states), attempt=attempt)

    @classmethod
    def move(
        cls, target: JobState | str, *sources: JobState | str, attempt: int | None = None,
        version: int | None = None, fields: tuple[tuple[str, Any], ...] = (),
    ) -> "Expect":
        """The expectation of a write that moves a job to `target`, taken from the transition table.

        The job must be in one of `sources` (by default, every state the table
        lets reach `target`); naming a source the table does not let reach
        `target` raises IllegalTransition (staying in the same state is no move).
        """
        target = JobState(target)
        given = frozenset(JobState(s) for s in sources) or transitions.sources(target)
        for source in given:
            transitions.check(source, target)
        return cls(states=given, attempt=attempt, version=version, fields=tuple(fields))


@dataclass
class Change:
    """A write: plain fields set, counters added to, keys set or removed inside map fields, and
    items appended to list fields (after `set`, so a set list field gets the appended items too)."""

    set: dict[str, Any] = field(default_factory=dict)
    add: dict[str, int] = field(default_factory=dict)
    map_set: dict[str, dict[str, Any]] = field(default_factory=dict)
    map_del: dict[str, list[str]] = field(default_factory=dict)
    append: dict[str, list] = field(default_factory=dict)


def check_write(expect: Expect, change: Change) -> None:
    """The rule both store adapters apply before writing: a change that sets the state expects only
    states the transition table lets reach it (as `Expect.move` builds). Raises IllegalTransition."""
    if "state" not in change.set:
        return
    target = JobState(change.set["state"])
    if expect.states is None:
        raise IllegalTransition(f"a write that sets the state to {target.value} must expect the states it moves "
                                "from (Expect.move)")
    for source in expect.states:
        transitions.check(source, target)


def holds(doc: dict, expect: Expect) -> bool:
    if expect.states is not None and doc["state"] not in {s.value for s in expect.states}:
        return False
    if expect.attempt is not None and doc["attempt"] != expect.attempt:
        return False
    if any(doc.get(key) != value for key, value in expect.fields):
        return False
    if any(key not in (doc.get(field) or {}) for field, key in expect.keys):
        return False
    return expect.version is None or doc["version"] == expect.version


def apply(doc: dict, expect: Expect, change: Change) -> dict:
    """Return the new document, or raise StaleTransition if `expect` no longer holds
    (IllegalTransition if the write breaks the transition table: `check_write`)."""
    check_write(expect, change)
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
    for key, items in change.append.items():
        new[key] = [*(new.get(key) or []), *items]
    new["version"] = doc["version"] + 1
    return new


def is_array(doc: dict) -> bool:
    return doc["array"] is not None

"""A job's history, kept on its document for `tracejob`: what happened to it, when, and where.

Each event is appended (Change.append) by the same conditional write that
makes the change it records, so the history can neither miss a change nor
record one that lost its race. Events are stored compactly, as
`[epoch seconds, code, arguments...]` (a DynamoDB write is billed per KB of
item, and a job's item stays under one): `render` turns them into the lines
tracejob prints, `[time, source, text]`, with source "S" for the server's
side and "M" for the worker's (PBS's MoM). The submit line is not stored:
it follows from the job's own fields. A user named "" is the job's owner.
An array records its own events (held, cancelled, re-run), not one per task
or chunk (its start is rendered from started_at), so a job gains a few
events per run; the one exception is a task's files not staged in or out
(`add_task_files`), the only place a task's reason is kept, and only for its
first MAX_TASK_FILE_EVENTS such tasks, so that the item stays small.

Codes: r run (host, attempt) · x exit (status, cpu seconds, wall seconds,
next attempt or 0) · h hold (user) · u release (user)
· d delete (user) · a alter (user, attribute names) · m move (user, queue)
· R rerun (user, tasks) · s signal (user, name, target, delivered) · q
dependencies met · n dependencies never met (reason) · L worker lost (host,
next attempt or 0) · f files not staged in or out (the line, core/staging.py).
"""

from __future__ import annotations

import time

FIELD = "history"
WORKER_CODES = frozenset("rxf")


def event(code: str, *args, at: float | None = None) -> list:
    return [round(time.time() if at is None else at, 2), code, *args]


def add(change, code: str, *args, at: float | None = None):
    """Append one event to `change` (a core.model.Change) and return the change."""
    change.append.setdefault(FIELD, []).append(event(code, *args, at=at))
    return change


MAX_TASK_FILE_EVENTS = 20


def add_task_files(change, doc: dict, notes: list[tuple[int, str]], at: float | None = None):
    """Append an `f` event for each (task index, staging note) to an array's `change`, while the array
    `doc` holds fewer than MAX_TASK_FILE_EVENTS of them; the change."""
    room = MAX_TASK_FILE_EVENTS - sum(1 for e in doc.get(FIELD) or () if e[1] == "f")
    for index, note in notes[:max(0, room)]:
        add(change, "f", f"task {index}: {note}", at=at)
    return change


def who(user: str, doc: dict) -> str:
    """How an event names the user who asked for it: "" for the job's owner (the common case, and short)."""
    return "" if user == doc.get("owner") else user


def _hms(seconds) -> str:
    total = max(0, int(seconds or 0))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _text(doc: dict, code: str, args: list) -> str:
    user = (args[0] if args else "") or doc.get("owner") or "?"
    if code == "r":
        return f"Job run on {args[0]} (attempt {args[1]})"
    if code == "x":
        status, cpu, wall, again = (list(args) + [None, 0, 0, 0])[:4]
        text = f"Exit_status={status} resources_used.cput={_hms(cpu)} resources_used.walltime={_hms(wall)}"
        return text + (f"; re-queued as attempt {again}" if again else "")
    if code == "h":
        return f"Holds u set at request of {user}"
    if code == "u":
        return f"Holds u released at request of {user}"
    if code == "d":
        return f"Job deleted at request of {user}"
    if code == "a":
        return f"Job attributes altered at request of {user}: {args[1]}"
    if code == "m":
        return f"Job moved to {args[1]} at request of {user}"
    if code == "R":
        return f"Job Rerun at request of {user}" + (f" ({args[1]} tasks)" if len(args) > 1 and args[1] else "")
    if code == "s":
        return f"Signal {args[1]} sent to {args[2]} at request of {user}" + (" (delivered)" if args[3] else "")
    if code == "f":
        return str(args[0])
    if code == "q":
        return "Dependencies met: job queued"
    if code == "n":
        return str(args[0]) if args else "Dependencies can never be met: job deleted"
    if code == "L":
        again = args[1] if len(args) > 1 else 0
        return f"Worker {args[0]} lost" + (f"; re-queued as attempt {again}" if again else "")
    return " ".join(str(a) for a in args) or code


def render(doc: dict) -> list[list]:
    """The history as tracejob prints it: [[time, "S" | "M", text], ...], the submit first."""
    owner = doc.get("owner") or "?"
    lines = [[doc.get("submitted_at") or 0, "S",
              f"Job Queued at request of {owner}, owner = {owner}, job name = {doc.get('name')}, "
              f"queue = {doc.get('queue')}"]]
    if doc.get("array") is not None and doc.get("started_at"):
        lines.append([doc["started_at"], "M", "Array began"])  # not stored: every chunk would pay for it
    for entry in doc.get(FIELD) or []:
        at, code, *args = entry
        lines.append([at, "M" if code in WORKER_CODES else "S", _text(doc, code, args)])
    lines[1:] = sorted(lines[1:], key=lambda line: line[0])
    return lines

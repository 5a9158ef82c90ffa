"""The local adapters of the ports: SQLite (store, queue, events), files (logs), subprocesses (compute).

`open_local` opens them over one state directory, $HYPERBATCH_HOME by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hyperbatch.core.paths import home

if TYPE_CHECKING:  # imported when opened: importing the package stays cheap
    from hyperbatch.adapters.local.logs import FileLogStore
    from hyperbatch.adapters.local.machine import Machine
    from hyperbatch.adapters.local.sqlite import Database, SqliteJobStore, SqliteWorkQueue


@dataclass
class LocalBackend:
    home: Path
    db: Database
    store: SqliteJobStore
    queue: SqliteWorkQueue
    logs: FileLogStore


def open_local(root: Path | None = None, machine: Machine | None = None) -> LocalBackend:
    """The backend over `root`; with `machine`, its queue's claims place work by resources (a worker's)."""
    from hyperbatch.adapters.local.logs import FileLogStore
    from hyperbatch.adapters.local.sqlite import Database, SqliteJobStore, SqliteWorkQueue
    from hyperbatch.adapters.local.wake import Wakeups

    root = Path(root or home())
    for sub in ("logs", "work", "workers"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    db = Database(root / "state.db")
    queue = SqliteWorkQueue(db, machine=machine, wakeups=Wakeups(root / "wake"))
    return LocalBackend(root, db, SqliteJobStore(db), queue, FileLogStore(root / "logs"))

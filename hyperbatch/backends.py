"""Wiring: which adapters back the ports, chosen from the environment.

Local mode keeps everything under $HYPERBATCH_HOME (default ~/.hyperbatch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import config as config_models


def home() -> Path:
    return Path(os.environ.get("HYPERBATCH_HOME") or Path.home() / ".hyperbatch")


@dataclass
class LocalBackend:
    home: Path
    db: object
    store: object
    queue: object
    logs: object


def open_local(root: Path | None = None) -> LocalBackend:
    from .local.logs import FileLogStore
    from .local.sqlite import Database, SqliteJobStore, SqliteWorkQueue

    root = Path(root or home())
    for sub in ("logs", "work", "workers"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    db = Database(root / "state.db")
    return LocalBackend(root, db, SqliteJobStore(db), SqliteWorkQueue(db), FileLogStore(root / "logs"))


def worker_from_environment():
    """An Agent for the queue, region and worker named in the environment (set by Compute)."""
    from .agent import Agent, Settings
    from .dispatch import Dispatcher

    backend_kind = os.environ.get("HYPER_BACKEND", "local")
    if backend_kind != "local":
        raise ValueError(f"HYPER_BACKEND={backend_kind}: this build knows only 'local'")
    config = config_models.load(os.environ["HYPER_CONFIG_DIR"])
    local = config.settings.local
    definition = config.definition(os.environ["HYPER_DEFINITION"])
    backend = open_local()
    dispatcher = Dispatcher(
        backend.store, backend.queue, os.environ["HYPER_WORKER_ID"], os.environ["HYPER_REGION"], local.lease_seconds
    )
    settings = Settings(
        queue=os.environ["HYPER_QUEUE"],
        idle_timeout=float(os.environ.get("HYPER_IDLE_TIMEOUT", definition.idle_timeout_seconds)),
        lease_seconds=local.lease_seconds,
        heartbeat_seconds=local.heartbeat_seconds,
        chunk_size=definition.chunk_size,
        work_root=backend.home / "work",
        definition_env=dict(definition.environment),
        pid_file=backend.home / "workers" / f"{os.environ['HYPER_WORKER_ID']}.job",
    )
    return Agent(dispatcher, backend.queue, backend.logs, settings)

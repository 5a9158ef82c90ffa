"""An on-premises worker's record, kept while it runs (hyperbatch.core.onprem).

The scaler cannot see a machine it did not start, so the worker says it is
there: it registers before it claims anything, rewrites its record every
REFRESH_SECONDS from a thread of its own (a store that hangs delays only that
thread, never a job), and marks the record gone when it stops. A worker that
dies without saying so goes stale after STALE_AFTER_SECONDS, and readers skip it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from hyperbatch.core import onprem
from hyperbatch.core.ports import WorkerRegistry

log = logging.getLogger("hyperbatch.presence")


class Presence:
    """A context manager: entering registers (raising Conflict when a live worker holds the name)."""

    def __init__(self, registry: WorkerRegistry, record: dict, clock: Callable[[], float] = time.time,
                 every: float = onprem.REFRESH_SECONDS):
        self.registry, self.record, self.clock, self.every = registry, dict(record), clock, every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> None:
        self.registry.register({**self.record, "seen_at": self.clock()})

    def __enter__(self) -> "Presence":
        self.record.setdefault("started_at", self.clock())
        self._write()
        self._thread = threading.Thread(target=self._refresh, name="presence", daemon=True)
        self._thread.start()
        log.info("registered as %s", onprem.node_name(self.record["name"]))
        return self

    def _refresh(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self._write()
            except Exception as exc:  # the next refresh tries again; jobs run on meanwhile
                log.warning("could not refresh the worker's record: %s", exc)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            self.registry.forget(self.record["name"], self.record["instance"])
        except Exception as error:  # the record goes stale by itself
            log.warning("could not mark the worker's record gone: %s", error)

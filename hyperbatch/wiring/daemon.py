"""The local daemon: the API on 127.0.0.1, and the scaler, release and reconciler on timers.

`hyper local up` starts `python -m hyperbatch.wiring.daemon` in the background.
Everything it keeps lives under $HYPERBATCH_HOME, so state survives a restart.
"""

from __future__ import annotations

import argparse
import getpass
import hmac
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path

from hyperbatch import config as config_models
from hyperbatch.api import build_app
from hyperbatch.wiring.worker import open_local
from hyperbatch.services.dispatch import Dispatcher
from hyperbatch.services.lease_recovery import reconcile_once
from hyperbatch.services.release import on_event
from hyperbatch.services.scale import scale_once
from hyperbatch.services.scheduler import Caller, Scheduler
from hyperbatch.adapters.local.compute import LocalCompute
from hyperbatch.adapters.local.http import make_server

log = logging.getLogger("hyperbatch.daemon")

EVENT_POLL_SECONDS = 0.02
GAP_CHECK_EVERY = 10.0


def write_secret(path: Path, text: str) -> None:
    """Write a file only its owner can read, never readable by others even for an instant."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class Daemon:
    def __init__(self, home: Path, config_dir: Path, port: int):
        self.home, self.config_dir, self.port = Path(home), Path(config_dir).resolve(), port
        self.config = config_models.load(self.config_dir)
        self.backend = open_local(self.home)
        self.compute = LocalCompute(self.backend.db, self.home, self.config_dir)
        self.scheduler = Scheduler(self.config, self.backend.store, self.backend.queue, self.backend.logs)
        local = self.config.settings.local
        self.dispatcher = Dispatcher(self.backend.store, self.backend.queue, "reconciler", "local", local.lease_seconds)
        self.token = secrets.token_urlsafe(32)
        self.user = getpass.getuser()
        self.app = build_app(self.scheduler, self.authorize, self.compute.running)
        self.server = make_server(self.app, port)
        self.port = self.server.server_address[1]
        self.stopping = threading.Event()
        self.wake_scaler = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def authorize(self, event: dict) -> Caller | None:
        """Local mode: the bearer token in a 0600 file proves the caller is the daemon's user."""
        given = event.get("headers", {}).get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return None
        return Caller(event["headers"].get("x-hyper-user") or self.user, admin=True)

    def _loop(self, every: float, step, name: str) -> None:
        while not self.stopping.is_set():
            try:
                step()
            except Exception:  # a timer that dies silently would stall the scheduler: log and go on
                log.exception("%s failed", name)
            self.stopping.wait(every)

    def _events(self) -> None:
        seq = 0
        store = self.backend.store
        while not self.stopping.is_set():
            try:
                batch = store.events_after(seq)
                for seq, event in batch:
                    on_event(self.scheduler, event)
                    if event.new_state == "QUEUED":
                        self.wake_scaler.set()
                if batch:
                    store.trim_events(seq)
                else:
                    self.stopping.wait(EVENT_POLL_SECONDS)
            except Exception:
                log.exception("event processing failed")
                self.stopping.wait(1)

    def _scaler(self) -> None:
        local = self.config.settings.local
        cap = local.worker_cap()  # the machine's cores unless configured
        capacity = {r.name: min(cap, cap if r.local_max_workers is None else r.local_max_workers)
                    for r in self.config.regions if r.compute}
        every = local.scaler_interval_seconds
        while not self.stopping.is_set():
            try:
                scale_once(self.config, self.backend.queue, self.compute, region_capacity=capacity,
                           ratio=local.jobs_to_workers_ratio, max_workers=cap, total_capacity=cap)
            except Exception:
                log.exception("scaler failed")
            self.wake_scaler.wait(every)
            self.wake_scaler.clear()

    def _reconciler(self) -> None:
        last_gap_check = 0.0

        def step():
            nonlocal last_gap_check
            check = time.time() - last_gap_check > GAP_CHECK_EVERY
            if check:
                last_gap_check = time.time()
            reconcile_once(self.scheduler, self.dispatcher, check_gaps=check)

        self._loop(self.config.settings.local.reconciler_interval_seconds, step, "reconciler")

    def serve(self) -> None:
        write_secret(self.home / "token", self.token)
        state = {"pid": os.getpid(), "url": self.url, "port": self.port, "config_dir": str(self.config_dir),
                 "started_at": time.time()}
        tmp = self.home / "daemon.json.tmp"
        tmp.write_text(json.dumps(state))
        tmp.replace(self.home / "daemon.json")  # readers never see half a file
        for target in (self._events, self._scaler, self._reconciler):
            threading.Thread(target=target, daemon=True, name=target.__name__).start()
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=self.shutdown).start())
        signal.signal(signal.SIGINT, lambda *_: threading.Thread(target=self.shutdown).start())
        log.info("HyperBatch local daemon on %s (pid %d)", self.url, os.getpid())
        self.server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        self.stopping.set()
        self.wake_scaler.set()
        self.compute.stop_all()
        self.server.shutdown()
        (self.home / "daemon.json").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hyperbatch-daemon")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        daemon = Daemon(args.home, args.config, args.port)
    except config_models.ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    daemon.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())

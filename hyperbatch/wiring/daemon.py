"""The local daemon: the API on 127.0.0.1, and the scaler, release and reconciler on timers.

`hyper local up` starts `python -m hyperbatch.wiring.daemon` in the background.
Everything it keeps lives under $HYPERBATCH_HOME, so state survives a restart.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import hmac
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from hyperbatch import config as config_models
from hyperbatch.api import build_app
from hyperbatch.adapters.local import machine, open_local
from hyperbatch.core.ids import short_host
from hyperbatch.services.dispatch import Dispatcher
from hyperbatch.services.lease_recovery import reconcile_once
from hyperbatch.services.notify import Notifier
from hyperbatch.services.release import MAX_EVENT_TRIES, release_events
from hyperbatch.services.scale import scale_once
from hyperbatch.services.scheduler import Caller, Scheduler
from hyperbatch.adapters.local.compute import LocalCompute
from hyperbatch.adapters.local.http import make_server
from hyperbatch.adapters.local.sqlite import StaleState
from hyperbatch.core import notices
from hyperbatch.support import local_home, logs, mail, webhooks
from hyperbatch.support.sessions import Sessions, same_origin, session_id
from hyperbatch.support.files import atomic_write

log = logging.getLogger("hyperbatch.daemon")

EVENT_POLL_SECONDS = 0.02
NOTIFY_POLL_SECONDS = 0.2
GAP_CHECK_EVERY = 10.0


class Daemon:
    def __init__(self, home: Path, config_dir: Path, port: int):
        self.home, self.config_dir, self.port = Path(home), Path(config_dir).resolve(), port
        self.config = config_models.load(self.config_dir)
        self.backend = open_local(self.home)
        # What jobs may use of this machine: submits are checked against it, workers place work by it.
        self.machine = machine.offer(self.config.settings.local)
        self.compute = LocalCompute(self.backend.db, self.home, self.config_dir, machine.to_environment(self.machine))
        # Local mode's PBS server name is the host's short name (`1234.myhost`), as PBS's default server's;
        # the SQLite store hands out each submit's ids exactly (SequenceBlocks' default).
        # qsig reaches a running job's processes at once, through its worker's pid file.
        self.scheduler = Scheduler(self.config, self.backend.store, self.backend.queue, self.backend.logs,
                                   server=short_host(socket.gethostname()), deliver=self.compute.signal_job,
                                   offer=lambda definition: self.machine.amount)
        local = self.config.settings.local
        # Taking back the run of a silent worker kills that worker's job first (the daemon knows its workers).
        self.dispatcher = Dispatcher(self.backend.store, self.backend.queue, "reconciler", "local", local.lease_seconds,
                                     fence=self.compute.fence)
        self.token = secrets.token_urlsafe(32)
        self.user = getpass.getuser()
        self.sessions = Sessions(self.token)  # the dashboard's sign-ins, traded for the token once
        self.app = build_app(self.scheduler, self.authorize, self.compute.running, status=self.status,
                             nodes=self.compute.workers, sessions=self.sessions)
        self.server = make_server(self.app, port)
        self.port = self.server.server_address[1]
        self.stopping = threading.Event()
        self.wake_scaler = threading.Event()
        self.started_at = time.time()
        self.event_tries = MAX_EVENT_TRIES
        self.notifier = Notifier(self.backend.store, {notices.MAIL: self._mailer(), notices.WEBHOOK: self._post})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def authorize(self, event: dict) -> Caller | None:
        """Local mode: the bearer token in a 0600 file proves the caller is the daemon's user; so does a
        dashboard session cookie, for a read or for a change sent from the dashboard's own origin."""
        headers = event.get("headers") or {}
        given = headers.get("authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return Caller(headers.get("x-hyper-user") or self.user, admin=True)
        method = event.get("requestContext", {}).get("http", {}).get("method", "")
        if self.sessions.valid(session_id(headers)) and same_origin(method, headers):
            return Caller(self.user, admin=True)
        return None

    def status(self) -> dict:
        """What GET /queues adds in local mode: events whose handling failed every try (`hyper local status`)."""
        return {"parked_events": self.backend.store.parked_events()}

    def _loop(self, every: float, step, name: str) -> None:
        while not self.stopping.is_set():
            try:
                step()
            except Exception:  # a timer that dies silently would stall the scheduler: log and go on
                log.exception("%s failed", name)
            self.stopping.wait(every)

    def _events(self) -> None:
        """Tail the events table: release dependents (`release_events`: each event marked done only once
        its handling committed; a failing one retried with back-off, then parked, never dropped)."""
        def wake(event) -> None:
            if event.new_state == "QUEUED":
                self.wake_scaler.set()

        while not self.stopping.is_set():
            try:
                drained = release_events(self.scheduler, self.backend.store, handled=wake,
                                         max_tries=self.event_tries)
                if not drained.handled:
                    self.stopping.wait(EVENT_POLL_SECONDS)
            except Exception:  # the table itself could not be read or written (locked): nothing was lost
                log.exception("event processing failed")
                self.stopping.wait(1)

    def _notify(self) -> None:
        """Deliver mail and webhook notices from the store's outbox, off the scheduling threads."""
        self._loop(NOTIFY_POLL_SECONDS, self.notifier.deliver_due, "notify")

    def _mailer(self):
        """Mail through the SMTP server of settings.json; None (no mail, said once in the log) without one."""
        settings = self.config.settings.notifications
        smtp = settings.smtp
        if smtp is None:
            return None
        sender = settings.mail_from if "@" in settings.mail_from else f"{settings.mail_from}@{socket.getfqdn()}"

        def send(delivery: notices.Delivery) -> None:
            mail.send_smtp(delivery.notice, delivery.target.split(","), sender=sender, host=smtp.host,
                           port=smtp.port, starttls=smtp.starttls, username=smtp.username,
                           password_file=smtp.password_file)
        return send

    def _post(self, delivery: notices.Delivery) -> None:
        webhooks.post(delivery.target, delivery.notice, self._webhook_secret)

    @functools.cached_property
    def _webhook_secret(self) -> bytes:
        """Read (or made) once, as the notifier function on AWS reads its SSM secret once."""
        return webhooks.local_secret(self.home)

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

    def write_files(self) -> None:
        """The token and daemon.json: written at start, and again on SIGHUP (`hyper local up` sends it
        when either is missing or damaged while this daemon runs)."""
        atomic_write(self.home / local_home.TOKEN_FILE, self.token)  # 0600: only its owner reads it
        state = {"pid": os.getpid(), "url": self.url, "port": self.port, "config_dir": str(self.config_dir),
                 "started_at": self.started_at}
        atomic_write(self.home / local_home.STATE_FILE, json.dumps(state))  # readers never see half a file

    def serve(self) -> None:
        self.write_files()
        unparked = self.backend.store.unpark_events()
        if unparked:
            log.warning("%d parked events get another round of tries", unparked)
        for target in (self._events, self._scaler, self._reconciler, self._notify):
            threading.Thread(target=target, daemon=True, name=target.__name__).start()
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=self.shutdown).start())
        signal.signal(signal.SIGINT, lambda *_: threading.Thread(target=self.shutdown).start())
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=self._rewrite_files).start())
        log.info("HyperBatch local daemon on %s (pid %d)", self.url, os.getpid())
        self.server.serve_forever(poll_interval=0.2)

    def _rewrite_files(self) -> None:
        try:
            self.write_files()
            log.info("rewrote %s and %s", local_home.TOKEN_FILE, local_home.STATE_FILE)
        except OSError:
            log.exception("cannot rewrite the token and daemon.json")

    def shutdown(self) -> None:
        self.stopping.set()
        self.wake_scaler.set()
        self.compute.stop_all()
        self.server.shutdown()
        # Before this process ends and so lets the lock go: nobody sees a free lock and our daemon.json.
        (self.home / local_home.STATE_FILE).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hyperbatch-daemon")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logs.configure()
    try:
        # A private home, and this daemon alone on it, before anything in it is opened.
        local_home.ensure_home(args.home)
        # Held until this process ends (after its shutdown thread removed daemon.json), not closed before.
        _lock = local_home.take_lock(args.home)
    except local_home.HomeError as exc:
        log.error("cannot start: %s", exc)
        return 1
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    try:
        daemon = Daemon(args.home, args.config, args.port)
    except config_models.ConfigError as exc:
        log.error("configuration error:\n%s", exc)
        return 2
    except (OSError, StaleState) as exc:
        log.error("cannot start: %s", exc)
        return 1
    daemon.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())

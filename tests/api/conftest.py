"""The API application in this process, over the local adapters in a temporary home.

`api.call(...)` hands one request to the application as the local server (and API Gateway)
would, without a socket; `served_api` serves the same application over HTTP on 127.0.0.1 with
the local server, for what only a socket shows (framing, Content-Length) and for schemathesis.
No workers run: what is submitted stays queued, so a test sees exactly what the API stored.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hyperbatch import config
from hyperbatch.adapters.local import open_local
from hyperbatch.adapters.local.http import _Context, make_server, to_event
from hyperbatch.api import build_app
from hyperbatch.services.scheduler import Caller, Scheduler

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configurations"
TOKEN = "test-token"
USER = "alice"


@dataclass
class Api:
    app: Any
    backend: Any
    scheduler: Scheduler
    url: str = ""

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, parsed JSON answer) for one request; `body` is sent as JSON, `raw` as it is."""
        data = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
        sent = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", **(headers or {})}
        result = self.app.resolve(to_event(method, path, sent, data), _Context())
        text = result.get("body") or ""
        return result["statusCode"], json.loads(text) if text else None

    def jobs(self) -> list[dict]:
        """Every job the store holds (what a refused request must not have changed)."""
        return self.backend.store.query(owner=None, limit=1000).items


def _authorize(event: dict) -> Caller | None:
    if event.get("headers", {}).get("authorization") != f"Bearer {TOKEN}":
        return None
    return Caller(USER, admin=True)


@pytest.fixture
def api(tmp_path) -> Api:
    backend = open_local(tmp_path / "home")
    scheduler = Scheduler(config.load(CONFIG_DIR), backend.store, backend.queue, backend.logs)
    return Api(build_app(scheduler, _authorize, lambda: {}), backend, scheduler)


@pytest.fixture
def served_api(api):
    """`api`, also served over HTTP by the local server on 127.0.0.1 (api.url)."""
    server = make_server(api.app, 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()

"""boto3 clients: created once per process and (service, region), then shared.

Creating a client loads its service model (tens of milliseconds and a few MB),
so Lambda handlers and the worker agent take theirs from here instead of
calling `boto3.client` per request. Low-level clients are thread-safe once
created; creation itself is not, hence the lock (and a private Session each:
boto3's default session must not be shared across threads while it builds).

One `Config` for everything: standard retry mode (exponential backoff with
jitter on throttling, 5xx and connection errors, 5 attempts in all), short
connect timeout, and a read timeout above SQS's longest long poll (20 s).
"""

from __future__ import annotations

import os
import threading

import boto3
from botocore.client import BaseClient
from botocore.config import Config

MAX_ATTEMPTS = 5
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0  # > SQS WaitTimeSeconds (max 20)

CONFIG = Config(
    retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
    connect_timeout=CONNECT_TIMEOUT,
    read_timeout=READ_TIMEOUT,
    max_pool_connections=32,  # the agent's pump threads and heartbeat share clients
    tcp_keepalive=True,
)

# S3 signs with SigV4 everywhere: presigned URLs (hyperbatch/adapters/aws/files.py) are accepted in
# every region only then.
S3_CONFIG = CONFIG.merge(Config(signature_version="s3v4"))

_lock = threading.Lock()
_clients: dict[tuple[str, str], BaseClient] = {}


def default_region() -> str:
    """The main region: where the table, queues and job logs live."""
    for name in ("HYPER_MAIN_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"):
        if os.environ.get(name):
            return os.environ[name]
    raise ValueError("no region: set HYPER_MAIN_REGION (or AWS_REGION)")


def client(service: str, region: str | None = None) -> BaseClient:
    """The process's shared client for `service` in `region` (default: the main region)."""
    key = (service, region or default_region())
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        if key not in _clients:
            config = S3_CONFIG if service == "s3" else CONFIG
            _clients[key] = boto3.session.Session().client(service, region_name=key[1], config=config)
        return _clients[key]


def reset() -> None:
    """Forget every client (tests that switch moto mocks, or credentials that rotated)."""
    with _lock:
        _clients.clear()

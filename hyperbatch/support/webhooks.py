"""Posting a notice to a webhook (`qsub --notify URL`), signed, and the local signing secret.

The receiver checks `X-HyperBatch-Signature: sha256=<hex HMAC-SHA256 of the body>`
with the deployment's secret (hyperbatch.core.notices.signature), so it can
tell our posts from anyone's; `X-HyperBatch-Event-Id` lets it drop a
duplicate (delivery is at least once).
"""

from __future__ import annotations

import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path

from hyperbatch.core.notices import SIGNATURE_HEADER, Notice, signature
from hyperbatch.support.files import atomic_write

TIMEOUT_SECONDS = 5.0  # a receiver that hangs holds up the other deliveries at most this long a try
SECRET_FILE = "notify.secret"


class WebhookFailed(Exception):
    """The receiver could not be reached, or answered other than 2xx."""


def post(url: str, notice: Notice, secret: bytes, timeout: float = TIMEOUT_SECONDS) -> None:
    """POST the notice's JSON body to `url`, signed; WebhookFailed unless the answer is 2xx."""
    body = notice.body()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "HyperBatch", SIGNATURE_HEADER: signature(secret, body),
        "X-HyperBatch-Event-Id": notice.event_id})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (http/https checked at submit)
            status = answer.status
    except urllib.error.HTTPError as exc:
        raise WebhookFailed(f"{url} answered {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise WebhookFailed(f"{url}: {getattr(exc, 'reason', exc)}") from None
    if not 200 <= status < 300:
        raise WebhookFailed(f"{url} answered {status}")


def local_secret(home: Path) -> bytes:
    """The local mode's signing secret: `$HYPERBATCH_HOME/notify.secret` (0600), made on first use."""
    path = Path(home) / SECRET_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    atomic_write(path, secrets.token_hex(32))
    os.chmod(path, 0o600)
    return path.read_bytes().strip()

"""Dashboard sign-ins of local mode: a browser trades the daemon's token once for a session cookie.

The token never travels again after the sign-in form (not in a URL, not in the page). A session is a
random id kept only in the daemon's memory, so a restart signs everyone out, and it expires after
SESSION_SECONDS. The cookie is HttpOnly (no script reads it) and SameSite=Strict (no other site's
page sends it); requests that change something must also come from the dashboard's own origin
(`same_origin`), so a cross-site form or fetch cannot act with it.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

COOKIE = "hyper_session"
SESSION_SECONDS = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD"})


class Sessions:
    """Open sessions by id, each with its expiry time; thread-safe (the server answers on many threads)."""

    def __init__(self, token: str, ttl: float = SESSION_SECONDS, clock=time.time):
        self._token, self._ttl, self._clock = token, ttl, clock
        self._open: dict[str, float] = {}
        self._lock = threading.Lock()

    def sign_in(self, given: str) -> str | None:
        """A new session id when `given` is the daemon's token, else None."""
        if not hmac.compare_digest(given.strip().encode(), self._token.encode()):
            return None
        sid = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._open = {k: v for k, v in self._open.items() if v > now}  # drop the expired ones
            self._open[sid] = now + self._ttl
        return sid

    def valid(self, sid: str | None) -> bool:
        if not sid:
            return False
        with self._lock:
            expires = self._open.get(sid)
        return expires is not None and expires > self._clock()

    def sign_out(self, sid: str | None) -> None:
        with self._lock:
            self._open.pop(sid or "", None)

    @property
    def seconds(self) -> int:
        """How long a session lasts: the cookie's Max-Age."""
        return int(self._ttl)


def session_id(headers: dict) -> str | None:
    """The session id a request's Cookie header carries (header names lower-case), or None."""
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


def same_origin(method: str, headers: dict) -> bool:
    """Whether a request made with the session cookie may act: reads always; anything else only with an
    Origin header (browsers send one with every POST, PATCH and DELETE) naming the host it was sent to."""
    if method.upper() in SAFE_METHODS:
        return True
    origin, host = headers.get("origin"), headers.get("host")
    if not origin or not host:
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == host

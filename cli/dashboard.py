"""`hyper dashboard`: the web dashboard of the current host (or `--host NAME`), in a browser.

A local host serves the dashboard itself: the command prints its URL and opens it, and the browser
signs in once with the daemon's token. An AWS host's API wants every request signed with the user's
AWS credentials (SigV4), which a browser cannot do: the command serves a proxy on 127.0.0.1 that
signs each request (hyperbatch.cli.client) and passes it on, so both kinds of host show the same pages.

The proxy signs for whoever reaches it, so it lets in only the browser that opened its launch link:
the link carries a random code that buys a session cookie (HttpOnly, SameSite=Strict, as local mode's
sign-in: hyperbatch.support.sessions), and a request that changes something must also come from the
proxy's own origin. The code is the proxy's, lives as long as the command runs, and is no AWS secret.
"""

from __future__ import annotations

import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import click

from hyperbatch.cli.client import Client
from hyperbatch.cli.errors import CliError
from hyperbatch.core.limits import MAX_BODY_BYTES
from hyperbatch.support.sessions import COOKIE, Sessions, same_origin, session_id

LAUNCH = "/ui/launch"
PASSED_BACK = ("content-type", "location", "cache-control", "content-security-policy", "x-content-type-options",
               "referrer-policy")
NOT_LET_IN = b"Open the dashboard with the link `hyper dashboard` printed.\n"


class SigningProxy:
    """A 127.0.0.1 server that signs each request of the signed-in browser for `client`'s host."""

    def __init__(self, client: Client, port: int = 0, timeout: float = 30.0):
        self.client, self.timeout = client, timeout
        self.code = secrets.token_urlsafe(24)
        self.sessions = Sessions(self.code)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    @property
    def launch_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{LAUNCH}?code={self.code}"

    def serve_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.server.serve_forever, name="dashboard-proxy", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def forward(self, method: str, path: str, body: bytes, accept: str, content_type: str) -> tuple[int, dict, bytes]:
        """Send one request to the host, signed; (status, headers worth passing back, body)."""
        import http.client

        client = self.client
        target = client._base + path
        headers = {"Accept": accept or "*/*"}
        if body:
            headers["Content-Type"] = content_type or "application/json"
        headers.update(client.signed_headers(method, target, body or None, headers))
        parts = urlsplit(client.url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = kind(parts.hostname or "", parts.port, timeout=self.timeout)
        try:
            conn.request(method, target, body=body or None, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            kept = {k: v for k, v in answer.getheaders() if k.lower() in PASSED_BACK}
            return answer.status, kept, data
        finally:
            conn.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                parts = urlsplit(self.path)
                if parts.path == LAUNCH:
                    sid = proxy.sessions.sign_in((parse_qs(parts.query).get("code") or [""])[0])
                    if sid is None:
                        return self._reply(401, {"Content-Type": "text/plain"}, NOT_LET_IN)
                    cookie = f"{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/; Max-Age={proxy.sessions.seconds}"
                    return self._reply(303, {"Location": "/", "Set-Cookie": cookie}, b"")
                if not (proxy.sessions.valid(session_id(headers)) and same_origin(self.command, headers)):
                    return self._reply(401, {"Content-Type": "text/plain"}, NOT_LET_IN)
                text = (headers.get("content-length") or "0").strip()
                if not text.isdigit():
                    return self._reply(400, {"Content-Type": "text/plain"}, b"Content-Length is no byte count\n")
                length = int(text)
                if length > MAX_BODY_BYTES:
                    return self._reply(413, {"Content-Type": "text/plain"}, b"the request body is over 10 MiB\n")
                body = self.rfile.read(length) if length else b""
                try:
                    status, back, data = proxy.forward(self.command, self.path, body, headers.get("accept", ""),
                                                       headers.get("content-type", ""))
                except (CliError, OSError) as exc:
                    return self._reply(502, {"Content-Type": "text/plain"}, f"{exc}\n".encode())
                self._reply(status, back, data)

            def _reply(self, status: int, headers: dict, body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = do_PATCH = _serve

            def log_message(self, *args) -> None:  # quiet: the terminal shows the link and nothing else
                pass

        return Handler


def open_dashboard(host: str | None, port: int, browse: bool) -> int:
    """Print (and open) the dashboard's URL; for an AWS host, serve the signing proxy until Ctrl-C."""
    from hyperbatch.cli.host_registry import current, get

    name, entry = (host, get(host)) if host else current()
    client = Client(entry, name=name)
    if client.kind != "aws":
        client.request("GET", "/health")  # a daemon that is not running: one line now, not an error in the browser
        url = client.url.rstrip("/") + "/"
        click.echo(f"HyperBatch dashboard of {name}: {url} (sign in with the token in $HYPERBATCH_HOME/token)")
        _browse(url, browse)
        return 0
    client.signed_headers("GET", client._base + "/", None, {})  # no credentials: one line now, not in the browser
    try:
        proxy = SigningProxy(client, port)
    except OSError as exc:
        raise CliError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None
    click.echo(f"HyperBatch dashboard of {name}, signed with your AWS credentials: {proxy.launch_url}")
    click.echo("Keep this running while you use it; Ctrl-C stops it.")
    _browse(proxy.launch_url, browse)
    try:
        proxy.server.serve_forever()
    finally:
        proxy.server.server_close()
    return 0


def _browse(url: str, browse: bool) -> None:
    if browse:
        import webbrowser

        webbrowser.open(url)

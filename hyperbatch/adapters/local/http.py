"""Serve the API resolver over HTTP on 127.0.0.1, as API Gateway (HTTP API, payload 2.0) would call it.

Like API Gateway, the server reads a request's body whole before the application sees it, and so
it owns the framing: a Content-Length that is not a number of bytes gets 400, one over
hyperbatch.core.limits.MAX_BODY_BYTES 413, a body sent chunked (no length) 411, and a body that
does not arrive in full within READ_TIMEOUT_SECONDS is never handed on. After refusing, the
server closes the connection: the body it did not read must not be taken for the next request.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from hyperbatch.core.limits import MAX_BODY_BYTES

log = logging.getLogger("hyperbatch.http")

READ_TIMEOUT_SECONDS = 60.0  # a client silent this long mid-request (or idle between requests) is dropped
_LENGTH_RE = re.compile(r"[0-9]{1,19}")


class _Context:
    """The few LambdaContext attributes powertools reads."""

    function_name = "hyperbatch-local"
    aws_request_id = "local"
    memory_limit_in_mb = 0
    invoked_function_arn = "arn:aws:lambda:local:000000000000:function:hyperbatch-local"


def to_event(method: str, raw_path: str, headers: dict[str, str], body: bytes) -> dict:
    parts = urlsplit(raw_path)
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": {k.lower(): v for k, v in headers.items()},
        "queryStringParameters": query or None,
        "requestContext": {
            "accountId": "local",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "http": {"method": method, "path": parts.path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": headers.get("User-Agent", "")},
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        **_body_fields(body),
    }


def _body_fields(body: bytes) -> dict:
    """A UTF-8 body as text; anything else base64-encoded, as API Gateway passes a binary body on."""
    if not body:
        return {"body": None, "isBase64Encoded": False}
    try:
        return {"body": body.decode("utf-8"), "isBase64Encoded": False}
    except UnicodeDecodeError:
        return {"body": base64.b64encode(body).decode(), "isBase64Encoded": True}


class Refused(Exception):
    """A request the server answers itself, without reading its body: (status, code, message)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def content_length(headers: Message) -> int:
    """The body's length as the headers give it (0 when they give none); Refused when the framing is not
    one this server honours."""
    if headers.get("Transfer-Encoding"):
        raise Refused(411, "LengthRequired", "send the request body with a Content-Length, not chunked")
    values = {value.strip() for value in headers.get_all("Content-Length") or []}
    if not values:
        return 0
    if len(values) > 1:
        raise Refused(400, "BadRequest", "the request has more than one Content-Length")
    text = values.pop()
    if not _LENGTH_RE.fullmatch(text):
        shown = text if len(text) <= 32 else text[:32] + "..."
        raise Refused(400, "BadRequest", f"Content-Length {shown!r} is not a number of bytes")
    length = int(text)
    if length > MAX_BODY_BYTES:
        raise Refused(413, "PayloadTooLarge", f"the request body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB")
    return length


def make_server(app, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as two writes: don't wait 40 ms between them

        timeout = READ_TIMEOUT_SECONDS

        def _handle(self, head: bool = False) -> None:
            """Serve one request through the application; `head`: a HEAD, served as the GET it asks
            about, with the GET's headers and no body (what a HEAD's answer may not carry)."""
            try:
                length = content_length(self.headers)
            except Refused as refused:
                self.close_connection = True  # its body, unread, must not be taken for a request
                self._reply(refused.status, {"content-type": "application/json"},
                            json.dumps({"error": refused.code, "message": refused.message}))
                return
            try:
                body = self.rfile.read(length) if length else b""
            except OSError:  # timed out or reset mid-body
                body = b""
            if len(body) < length:  # the client stopped sending: what came is not a request to act on
                self.close_connection = True
                return
            event = to_event("GET" if head else self.command, self.path, dict(self.headers.items()), body)
            try:
                result = app.resolve(event, _Context())
            except Exception:  # the application answers its own errors; this is a last resort
                log.exception("unhandled error serving %s %s", self.command, self.path)
                result = {"statusCode": 500, "headers": {"content-type": "application/json"},
                          "body": json.dumps({"error": "InternalError", "message": "the server failed; see daemon.log"})}
            self._reply(result["statusCode"], result.get("headers") or {}, result.get("body") or "",
                        result.get("isBase64Encoded", False), result.get("cookies") or [], head)

        def _reply(self, status: int, headers: dict, body: str, encoded: bool = False, cookies: list | tuple = (),
                   head: bool = False) -> None:
            data = base64.b64decode(body) if encoded else body.encode() if isinstance(body, str) else body
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() not in ("content-length", "connection"):
                    self.send_header(key, value)
            for cookie in cookies:  # payload 2.0 answers carry cookies apart, one Set-Cookie each
                self.send_header("Set-Cookie", cookie)
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if not head:
                self.wfile.write(data)

        def do_HEAD(self) -> None:
            self._handle(head=True)

        def __getattr__(self, name: str):
            """`do_GET`, `do_POST`, ... and any other method: the application answers it (an unknown one
            with the 404 every unknown route gets), not the standard library's HTML 501 page."""
            if name.startswith("do_"):
                return self._handle
            raise AttributeError(name)

        def log_message(self, format, *args):  # access log: quiet by default
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server

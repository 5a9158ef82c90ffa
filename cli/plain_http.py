"""HTTP/1.1 over a plain socket: what the CLI needs to talk to a local daemon, and nothing more.

http.client imports the email package and ssl (tens of milliseconds before
the first byte is sent); a PBS command that talks to 127.0.0.1 needs neither.
This is the subset of http.client's HTTPConnection the client uses: one
request at a time on a kept-alive connection, bodies by Content-Length or
chunked. HTTPS (AWS hosts) still goes through http.client.
"""

from __future__ import annotations

import _socket  # the C module: `socket` adds enum conversions and selectors at import, unused here

MAX_HEAD = 64 * 1024


class BadResponse(Exception):
    """The server's answer is not HTTP/1.x as expected."""


class Response:
    __slots__ = ("status", "reason", "body", "will_close")

    def __init__(self, status: int, reason: str, body: bytes, will_close: bool):
        self.status, self.reason, self.body, self.will_close = status, reason, body, will_close

    def read(self) -> bytes:
        return self.body


class PlainConnection:
    def __init__(self, host: str, port: int | None, timeout: float):
        self.host, self.port, self.timeout = host, port or 80, timeout
        self.sock: _socket.socket | None = None
        self._buffer = b""

    def request(self, method: str, target: str, body: bytes | None = None, headers: dict | None = None) -> None:
        if self.sock is None:
            self.sock = self._connect()
            self._buffer = b""
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{key}: {value}" for key, value in (headers or {}).items()]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))

    def getresponse(self) -> Response:
        head = self._read_until(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise BadResponse(f"bad status line {status_line[:80]!r}")
        headers = {}
        for line in header_lines:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        will_close = headers.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0"
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        elif "content-length" in headers:
            body = self._read_exactly(int(headers["content-length"]))
        else:
            body, will_close = self._read_to_end(), True
        return Response(int(parts[1]), parts[2] if len(parts) > 2 else "", body, will_close)

    def _connect(self) -> "_socket.socket":
        """socket.create_connection's loop over the host's addresses, on the C module. An ASCII host
        goes as bytes: a str one would load the idna codec first (milliseconds)."""
        host = self.host.encode("ascii") if self.host.isascii() else self.host
        error: OSError | None = None
        for family, kind, proto, _, address in _socket.getaddrinfo(host, self.port, 0, _socket.SOCK_STREAM):
            sock = _socket.socket(family, kind, proto)
            try:
                sock.settimeout(self.timeout)
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                sock.connect(address)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
        raise error or OSError(f"cannot resolve {self.host}")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._buffer = b""

    # ---- reading ------------------------------------------------------------------------------

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self._buffer += chunk
        return bool(chunk)

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            if len(self._buffer) > MAX_HEAD:
                raise BadResponse("response head too long")
            if not self._fill():
                if not self._buffer:  # a kept-alive connection the server has closed: worth one retry
                    raise ConnectionResetError("the server closed the connection")
                raise BadResponse("connection closed in the middle of a response")
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _read_exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if not self._fill():
                raise BadResponse("connection closed in the middle of a response body")
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def _read_chunked(self) -> bytes:
        out = []
        while True:
            size = int(self._read_until(b"\r\n").split(b";")[0] or b"0", 16)
            if size == 0:
                self._read_until(b"\r\n")
                return b"".join(out)
            out.append(self._read_exactly(size))
            self._read_exactly(2)

    def _read_to_end(self) -> bytes:
        while self._fill():
            pass
        data, self._buffer = self._buffer, b""
        return data

"""A small HTTP client for the HyperBatch API (stdlib only; botocore only for AWS hosts).

    from hyperbatch.cli.client import Client, ApiError
    status, body = Client(entry).request("GET", "/jobs", query={"state": "QUEUED,RUNNING"})

Local hosts get `Authorization: Bearer <token from token_file>` and
`X-Hyper-User: <login name>`; AWS hosts get SigV4 (service `execute-api`) with
the credentials of the entry's profile. Non-2xx answers raise ApiError with the
server's code and message; network failures raise Unreachable.
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds, and only checkers need it
if TYPE_CHECKING:
    from typing import Any, Mapping
from urllib.parse import quote, urlencode, urlsplit

from hyperbatch.cli.errors import ApiError, CliError, HostError, Unreachable
from hyperbatch.cli.plain_http import BadResponse, PlainConnection

__all__ = ["ApiError", "Client", "DEFAULT_TIMEOUT", "Unreachable", "current_client", "job_path"]

DEFAULT_TIMEOUT = 30.0
USER_AGENT = "hyperbatch-cli/0.1"
# http.client.RemoteDisconnected is a ConnectionResetError: a kept-alive connection the server closed.
_RETRYABLE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def _bad_answer(exc: BaseException) -> bool:
    """A malformed answer, from either transport (http.client is imported only for https hosts)."""
    http_client = sys.modules.get("http.client")
    return isinstance(exc, BadResponse) or (http_client is not None and isinstance(exc, http_client.HTTPException))


def job_path(job_id: str, *rest: str) -> str:
    """`/jobs/{id}[/rest...]` with the id escaped, so a mistyped id gets a 404, not a broken URL."""
    return "/".join(["/jobs", quote(str(job_id), safe=""), *rest])


class Client:
    """One host's API. Keeps one connection open across requests (qstat pages, qlog -f polls)."""

    def __init__(self, entry: Mapping[str, Any], timeout: float = DEFAULT_TIMEOUT, name: str | None = None) -> None:
        self.entry = dict(entry)
        self.name = name
        self.kind = self.entry.get("kind", "local")
        self.url = str(self.entry.get("url", ""))
        self.timeout = timeout
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            where = f"host {name!r}" if name else "the host"
            raise HostError(f"{where} has an invalid url {self.url!r}: it must start with http:// or https://")
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._host = parts.hostname
        self._port = parts.port
        self._base = parts.path.rstrip("/")  # e.g. "/prod" for an API Gateway stage
        self._conn: Any = None  # PlainConnection (http://), http.client.HTTPSConnection (https://)
        self._token: str | None = None
        self._credentials: Any = None

    # -- public -----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> tuple[int, Any]:
        """Send one request; return (status, parsed JSON body or None) for 2xx, else raise ApiError.

        `query` values that are None are left out; `body` is sent as JSON.
        """
        method = method.upper()
        target = self._base + (path if path.startswith("/") else "/" + path)
        if query:
            pairs = [(k, str(v)) for k, v in query.items() if v is not None]
            if pairs:
                target += "?" + urlencode(pairs, quote_via=quote)
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if data is not None:
            from hyperbatch.core.limits import MAX_BODY_BYTES

            if len(data) > MAX_BODY_BYTES:  # refused here in the server's words: sent, it breaks the pipe mid-way
                raise ApiError(413, "PayloadTooLarge", f"the request body is {len(data) / (1 << 20):.1f} MiB, over the "
                                                       f"API's limit of {MAX_BODY_BYTES >> 20} MiB")
            headers["Content-Type"] = "application/json"
        headers.update(self.signed_headers(method, target, data, headers))
        status, raw, reason = self._send(method, target, data, headers)
        return status, self._decode(status, raw, reason)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport --------------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._conn is None:
            if self._scheme == "https":
                import http.client

                self._conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout)
            else:  # a local daemon: a plain socket, without http.client's imports (hyperbatch.cli.plain_http)
                self._conn = PlainConnection(self._host, self._port, timeout=self.timeout)
        return self._conn

    def _send(self, method: str, target: str, data: bytes | None, headers: dict[str, str]) -> tuple[int, bytes, str]:
        # A kept-alive connection the server has since closed fails on first use: reconnect once.
        # Never for POST /jobs, where a retry could submit twice.
        retry = not (method == "POST" and target.rstrip("/").endswith("/jobs"))
        for attempt in (0, 1):
            reused = self._conn is not None and self._conn.sock is not None
            conn = self._connection()
            try:
                conn.request(method, target, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                if resp.will_close:
                    self.close()
                return resp.status, raw, resp.reason
            except _RETRYABLE as exc:
                self.close()
                if attempt == 0 and reused and retry:
                    continue
                raise self._unreachable(exc) from None
            except TimeoutError:  # socket.timeout is TimeoutError
                self.close()
                raise Unreachable(
                    f"HyperBatch at {self.url} did not answer within {self.timeout:g} s"
                ) from None
            except OSError as exc:  # refused, DNS, TLS, no route
                self.close()
                raise self._unreachable(exc) from None
            except Exception as exc:
                if not _bad_answer(exc):
                    raise
                self.close()
                raise Unreachable(f"bad answer from HyperBatch at {self.url}: {exc!r}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _unreachable(self, exc: BaseException) -> Unreachable:
        why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        if self.kind == "local":
            detail = "" if isinstance(exc, ConnectionRefusedError) else f" ({why})"
            return Unreachable(f"cannot reach HyperBatch at {self.url}{detail}: is `hyper local up` running?")
        return Unreachable(f"cannot reach HyperBatch at {self.url}: {why}")

    def _decode(self, status: int, raw: bytes, reason: str) -> Any:
        text = raw.decode("utf-8", "replace")
        try:
            payload = json.loads(text) if text.strip() else None
        except ValueError:
            payload = None
            if 200 <= status < 300:
                raise CliError(f"HyperBatch at {self.url} sent a non-JSON answer (HTTP {status})") from None
        if 200 <= status < 300:
            return payload
        code, message, pbs_errno, job_id = "", "", None, None
        if isinstance(payload, dict):
            code = str(payload.get("error") or "")
            message = str(payload.get("message") or payload.get("Message") or "")  # API Gateway says "Message"
            pbs_errno = payload.get("pbs_errno") if isinstance(payload.get("pbs_errno"), int) else None
            job_id = payload.get("job_id") if isinstance(payload.get("job_id"), str) else None
        if not message:
            first = text.strip().splitlines()[0][:200] if text.strip() else ""
            message = first or f"HTTP {status} {reason}".strip()
        if status >= 500:
            message = f"server error (HTTP {status}): {message}"
        raise ApiError(status, code or f"HTTP{status}", message, pbs_errno, job_id)

    # -- auth -------------------------------------------------------------------------------

    def signed_headers(self, method: str, target: str, data: bytes | None, headers: dict[str, str]) -> dict[str, str]:
        """The headers that authenticate a request to `target` (a path on this host, its stage included):
        what `request` adds; `hyper dashboard`'s proxy adds them to what a browser sends."""
        if self.kind == "aws":
            return self._sigv4(method, target, data, headers)
        return {"Authorization": f"Bearer {self._read_token()}", "X-Hyper-User": _login_name()}

    def _read_token(self) -> str:
        if self._token is None:
            token_file = self.entry.get("token_file")
            if not token_file:
                raise HostError(f"host {self.name or 'local'!r} has no token_file in hosts.json")
            path = os.path.expanduser(str(token_file))
            if not os.path.isabs(path):
                from hyperbatch.cli.host_registry import home

                path = str(home() / path)
            try:
                with open(path, encoding="utf-8") as f:
                    self._token = f.read().strip()
            except OSError as exc:
                raise HostError(
                    f"cannot read the token file {path} ({exc.strerror or exc}): is `hyper local up` running?"
                ) from None
            if not self._token:
                raise HostError(f"the token file {path} is empty: restart the daemon with `hyper local up`")
        return self._token

    def _sigv4(self, method: str, target: str, data: bytes | None, headers: dict[str, str]) -> dict[str, str]:
        region = self.entry.get("region")
        if not region:
            raise HostError(f"host {self.name or ''!r} has no region in hosts.json")
        if self._credentials is None:
            try:
                import boto3
                import botocore.exceptions
            except ImportError:  # pragma: no cover - boto3 is a dependency
                raise HostError("talking to an AWS host needs boto3: pip install boto3") from None
            try:
                session = boto3.Session(profile_name=self.entry.get("profile") or None)
                creds = session.get_credentials()
            except botocore.exceptions.ProfileNotFound:
                raise HostError(
                    f"AWS profile {self.entry.get('profile')!r} not found: check ~/.aws/config or the host entry"
                ) from None
            except botocore.exceptions.BotoCoreError as exc:
                raise HostError(f"cannot load AWS credentials: {exc}") from None
            if creds is None:
                raise HostError("no AWS credentials found: run `aws configure` or `aws sso login`, or set AWS_PROFILE")
            self._credentials = creds
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.exceptions import BotoCoreError

        url = f"{self._scheme}://{self._netloc}{target}"
        req = AWSRequest(method=method, url=url, data=data or b"", headers=dict(headers))
        try:
            SigV4Auth(self._credentials.get_frozen_credentials(), "execute-api", region).add_auth(req)
        except BotoCoreError as exc:
            raise HostError(f"cannot sign the request with your AWS credentials: {exc}") from None
        return {k: v for k, v in req.headers.items() if k.lower() not in {h.lower() for h in headers}}


def _login_name() -> str:
    """What getpass.getuser() answers (without importing getpass): LOGNAME, USER, LNAME, USERNAME, else
    the passwd entry, else the uid (some containers have neither)."""
    for key in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        if os.environ.get(key):
            return os.environ[key]
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())


def current_client(timeout: float = DEFAULT_TIMEOUT) -> Client:
    """A Client for the current host (see hyperbatch.cli.host_registry.current)."""
    from hyperbatch.cli.host_registry import current

    name, entry = current()
    return Client(entry, timeout=timeout, name=name)

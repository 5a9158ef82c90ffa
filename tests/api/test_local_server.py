"""The local server owns a request's framing (issue 9, item 7): a Content-Length it cannot honour gets
one JSON answer and a closed connection, at once, and nothing is run.

Before, `Content-Length: -5` made the server read until the client gave up and then run the request
(a phantom job), and `Content-Length: abc` dropped the connection with a traceback.
"""

from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import urlsplit

import pytest

from tests.api.conftest import TOKEN

JOB = b'{"command": ["true"]}'


def exchange(url: str, head: str, body: bytes = b"", finish: bool = False) -> tuple[int | None, dict | None]:
    """Send a raw request; (status, JSON answer), or (None, None) if the server closed without a word.

    The server must answer and close by itself: the client keeps its side open (unless `finish`,
    which ends its sending as a client that gave up would), and a bounded wait fails the test.
    """
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        if finish:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pytest.fail(f"the server neither answered nor closed the connection; got {received!r}")
    if not received:
        return None, None
    status_line, _, rest = received.partition(b"\r\n")
    headers, _, payload = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower(), headers
    return int(status_line.split()[1]), json.loads(payload)


def post(length: str, extra: str = "") -> str:
    return (f"POST /jobs HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer {TOKEN}\n"
            f"Content-Type: application/json\nContent-Length: {length}\n{extra}")


@pytest.mark.parametrize("length, status, words", [
    ("-5", 400, "Content-Length '-5' is not a number of bytes"),
    ("abc", 400, "Content-Length 'abc' is not a number of bytes"),
    ("1e3", 400, "Content-Length '1e3' is not a number of bytes"),
    ("99999999999", 413, "the request body is over 10 MiB"),
])
def test_a_content_length_that_cannot_be_honoured_is_refused_at_once(served_api, length, status, words):
    got, answer = exchange(served_api.url, post(length), JOB)
    assert (got, answer["message"]) == (status, words)
    assert served_api.jobs() == []


def test_two_different_lengths_are_refused(served_api):
    got, answer = exchange(served_api.url, post(str(len(JOB)), f"Content-Length: {len(JOB) + 1}\n"), JOB)
    assert (got, answer["message"]) == (400, "the request has more than one Content-Length")
    assert served_api.jobs() == []


def test_a_chunked_body_is_refused_with_411(served_api):
    head = (f"POST /jobs HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer {TOKEN}\n"
            "Content-Type: application/json\nTransfer-Encoding: chunked\n")
    got, answer = exchange(served_api.url, head, f"{len(JOB):x}\r\n".encode() + JOB + b"\r\n0\r\n\r\n")
    assert got == 411 and "Content-Length" in answer["message"]
    assert served_api.jobs() == []


def test_a_body_cut_short_is_not_run(served_api):
    """The client announced more than it sent, then gave up: what came is not a request to act on."""
    got, answer = exchange(served_api.url, post(str(len(JOB) + 50)), JOB, finish=True)
    assert (got, answer) == (None, None)
    assert served_api.jobs() == []


def test_a_well_framed_request_still_works_and_keeps_the_connection(served_api):
    parts = urlsplit(served_api.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        for _ in range(2):  # two requests on one connection
            conn.request("POST", "/jobs", body=JOB,
                         headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
            response = conn.getresponse()
            assert response.status == 201, response.read()
            response.read()
    finally:
        conn.close()
    assert len(served_api.jobs()) == 2


def test_head_answers_as_get_without_a_body_and_other_methods_are_a_json_404(served_api):
    """HEAD (link checkers, `curl -I`) and OPTIONS got the standard library's HTML 501 page; now HEAD has
    the GET's status and headers, and any other method the one-line 404 every unknown route gets."""
    parts = urlsplit(served_api.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        conn.request("GET", "/jobs", headers=auth)
        got = conn.getresponse()
        length = got.getheader("Content-Length")
        got.read()
        conn.request("HEAD", "/jobs", headers=auth)  # on the same connection: no body may follow
        head = conn.getresponse()
        assert (head.status, head.getheader("Content-Type"), head.getheader("Content-Length"), head.read()) == (
            200, "application/json", length, b"")
        for method in ("OPTIONS", "TRACE", "FROB"):
            conn.request(method, "/jobs", headers=auth)
            other = conn.getresponse()
            assert other.status == 404 and json.loads(other.read()) == {
                "error": "NotFound", "message": f"no route {method} /jobs"}, method
        conn.request("GET", "/jobs", headers=auth)  # and the connection still serves
        assert conn.getresponse().status == 200
    finally:
        conn.close()

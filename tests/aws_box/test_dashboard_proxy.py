"""`hyper dashboard` on an AWS host: the proxy on 127.0.0.1 signs each request of the browser that
opened its launch link with the user's AWS credentials, so the API (in the box, behind `http_api`,
which names the caller by the signature's access key) serves the same pages as local mode.
A request without the proxy's session cookie, or a change from another origin, is never signed.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from hyperbatch.cli.client import Client
from hyperbatch.cli.dashboard import SigningProxy
from tests.aws_box.harness import ALICE, http_api

KEYS = {"AKIAALICE": ALICE}


@pytest.fixture
def proxy(box, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAALICE")
    with http_api(box, KEYS) as api_url:
        served = SigningProxy(Client({"kind": "aws", "url": api_url, "region": box.region}))
        served.serve_in_background()
        try:
            yield served
        finally:
            served.close()


def _call(proxy: SigningProxy, method: str, path: str, headers: dict | None = None) -> tuple[int, dict, str]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read().decode()
    finally:
        conn.close()


def test_the_proxy_signs_the_launched_browsers_requests_and_no_one_elses(box, proxy):
    job = box.submit(command=["sleep", "60"], name="proxied")
    seq = job["seq"]

    # Not launched: nothing is signed, nothing reaches the API.
    assert _call(proxy, "GET", "/")[0] == 401
    status, _, _ = _call(proxy, "GET", "/ui/launch?code=guessed")
    assert status == 401

    launch = urlsplit(proxy.launch_url)
    status, headers, _ = _call(proxy, "GET", f"{launch.path}?{launch.query}")
    assert status == 303 and headers["location"] == "/"
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {p.strip() for p in headers["set-cookie"].split(";")}
    cookie = {"Cookie": headers["set-cookie"].split(";")[0]}

    status, headers, page = _call(proxy, "GET", "/", cookie)
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "<h1>Queues</h1>" in page and "proxied" in page and 'action="/ui/signout"' not in page
    status, _, page = _call(proxy, "GET", f"/ui/jobs/{seq}", cookie)
    assert status == 200 and "proxied" in page and f'data-action="/jobs/{seq}"' in page
    status, headers, _ = _call(proxy, "GET", "/ui/static/dashboard.js", cookie)
    assert status == 200 and headers["content-type"].startswith("text/javascript")

    # A change from another origin is not signed; from the proxy's own, it is the signer's (Alice's) request.
    assert _call(proxy, "DELETE", f"/jobs/{seq}", cookie | {"Origin": "http://evil.example"})[0] == 401
    own = {"Origin": f"http://127.0.0.1:{proxy.port}"}
    status, _, body = _call(proxy, "POST", f"/jobs/{seq}/hold", cookie | own | {"Content-Length": "-5"})
    assert (status, body) == (400, "Content-Length is no byte count\n")
    assert box.job(seq)["state"] == "QUEUED"
    status, _, body = _call(proxy, "DELETE", f"/jobs/{seq}", cookie | {"Origin": f"http://127.0.0.1:{proxy.port}"})
    assert status == 200 and json.loads(body)["state"] == "CANCELLED"
    assert box.job(seq)["state"] == "CANCELLED"


def test_the_api_answers_an_unsigned_page_in_one_line_not_a_sign_in_form(box):
    status, page = box.api("GET", "/", principal=None)
    assert status == 403
    assert "hyper dashboard" in page and 'name="token"' not in page

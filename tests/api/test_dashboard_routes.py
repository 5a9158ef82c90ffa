"""The dashboard's routes on the API application, in process: pages need credentials like every route
(the sign-in form locally, one line on AWS), bad filters and unknown jobs are one line on an HTML
page, and the sign-in trades the token for a session only when posted from the dashboard itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyperbatch import config
from hyperbatch.adapters.local import open_local
from hyperbatch.adapters.local.http import _Context, to_event
from hyperbatch.api import build_app
from hyperbatch.services.scheduler import Caller, Scheduler
from hyperbatch.support.sessions import Sessions
from tests.api.conftest import CONFIG_DIR, TOKEN, USER

HOST = "127.0.0.1:8765"


@pytest.fixture
def dash(tmp_path: Path):
    backend = open_local(tmp_path / "home")
    scheduler = Scheduler(config.load(CONFIG_DIR), backend.store, backend.queue, backend.logs, server="host")
    sessions = Sessions(TOKEN)

    def authorize(event: dict) -> Caller | None:
        bearer = event["headers"].get("authorization") == f"Bearer {TOKEN}"
        return Caller(USER, admin=True) if bearer else None

    app = build_app(scheduler, authorize, lambda: {}, sessions=sessions)

    def call(method: str, path: str, headers: dict | None = None, body: bytes = b"") -> dict:
        return app.resolve(to_event(method, path, {"Host": HOST, **(headers or {})}, body), _Context())

    call.scheduler = scheduler  # type: ignore[attr-defined]
    return call


BEARER = {"Authorization": f"Bearer {TOKEN}"}


def test_a_page_without_credentials_is_the_sign_in_form(dash):
    for path in ("/", "/ui/jobs", "/ui/jobs/1", "/ui/workers"):
        answer = dash("GET", path)
        assert answer["statusCode"] == 401, path
        assert 'name="token"' in answer["body"] and 'method="post" action="/ui/signin"' in answer["body"]
    assert dash("GET", "/jobs")["headers"]["Content-Type"] == "application/json"  # the API answers JSON still


def test_pages_with_credentials_show_the_queues_and_a_submitted_job(dash):
    dash.scheduler.submit([{"command": ["true"], "name": "hello", "array": "1-4"}], Caller(USER, admin=True))
    home = dash("GET", "/", BEARER)
    assert home["statusCode"] == 200 and home["headers"]["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in home["headers"]["Content-Security-Policy"]
    assert "<h1>Queues</h1>" in home["body"] and "hello" in home["body"] and "0/4 done" in home["body"]
    page = dash("GET", "/ui/jobs/1%5B%5D", BEARER)
    assert page["statusCode"] == 200 and "1[].host" in page["body"] and 'data-src="/jobs/1%5B1%5D/log?stream=stdout"' in page["body"]
    listed = dash("GET", "/ui/jobs?state=queued&name=HEL", BEARER)["body"]
    assert "hello" in listed
    assert "hello" not in dash("GET", "/ui/jobs?name=other", BEARER)["body"]


@pytest.mark.parametrize("path, status, line", [
    ("/ui/jobs?state=NAPPING", 400, "unknown state &#x27;NAPPING&#x27;"),
    ("/ui/jobs/99", 404, "Unknown Job Id 99"),
    ("/ui/jobs/1?index=x", 404, "Unknown Job Id 1"),
    ("/ui/jobs?queue=nope", 400, "nope"),
    ("/ui/jobs?user=" + "u" * 300, 400, "user: at most 256 characters"),
])
def test_a_bad_page_request_is_one_line_on_a_page(dash, path, status, line):
    answer = dash("GET", path, BEARER)
    assert answer["statusCode"] == status and answer["headers"]["Content-Type"].startswith("text/html")
    assert line in answer["body"] and "Traceback" not in answer["body"]


def test_static_files_are_served_without_credentials_and_only_by_name(dash):
    css = dash("GET", "/ui/static/dashboard.css")
    assert css["statusCode"] == 200 and css["headers"]["Content-Type"].startswith("text/css") and ".progress" in css["body"]
    assert dash("GET", "/ui/static/..%2Fpages.py")["statusCode"] == 404
    assert dash("GET", "/ui/static/pages.py")["statusCode"] == 404


def test_the_sign_in_sets_a_strict_http_only_cookie_only_for_the_token_from_the_same_origin(dash):
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": f"http://{HOST}"}
    wrong = dash("POST", "/ui/signin", form, b"token=guess")
    assert wrong["statusCode"] == 401 and "not this daemon" in wrong["body"] and not wrong.get("cookies")
    foreign = dash("POST", "/ui/signin", {**form, "Origin": "http://evil.example"}, f"token={TOKEN}".encode())
    assert foreign["statusCode"] == 403 and not foreign.get("cookies")
    right = dash("POST", "/ui/signin", form, f"token={TOKEN}".encode())
    assert right["statusCode"] == 303 and right["headers"]["Location"] == "/"
    (cookie,) = right["cookies"]
    assert cookie.startswith("hyper_session=") and TOKEN not in cookie
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {p.strip() for p in cookie.split(";")}


@pytest.mark.parametrize("path, line", [
    ("/ui/jobs/1%5B99%5D", "array 1 has no task 99"),
    ("/ui/jobs/1?index=99", "array 1 has no task 99"),
    ("/ui/jobs/1?index=-1", "array 1 has no task -1"),
    ("/ui/jobs/2?index=1", "job 2 is not an array job"),
    ("/ui/jobs/2%5B1%5D", "job 2 is not an array job"),
    ("/ui/nowhere", "no page /ui/nowhere"),
])
def test_a_task_that_does_not_exist_or_an_unknown_page_is_a_404_page(dash, path, line):
    """Not a page following the output of a task that is not there (its live log only said why later)."""
    dash.scheduler.submit([{"command": ["true"], "array": "1-4"}, {"command": ["true"]}], Caller(USER, admin=True))
    answer = dash("GET", path, BEARER)
    assert answer["statusCode"] == 404 and answer["headers"]["Content-Type"].startswith("text/html"), answer
    assert f'<p class="error">{line}</p>' in answer["body"] and 'id="log"' not in answer["body"]


def test_the_log_of_a_task_outside_its_array_is_an_unknown_job(dash):
    dash.scheduler.submit([{"command": ["true"], "array": "1-4"}], Caller(USER, admin=True))
    answer = dash("GET", "/jobs/1%5B99%5D/log", BEARER)
    assert answer["statusCode"] == 404 and '"Unknown Job Id 1[99].host"' in answer["body"], answer
    whole = dash("GET", "/jobs/1/log", BEARER)  # the array itself still asks for a task
    assert whole["statusCode"] == 400 and "name a task, as in 1[1]" in whole["body"]


def test_the_openapi_document_names_the_cookie_the_sign_in_sets(dash):
    """A client built from the document sends the cookie it names: it must be the one the daemon reads."""
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": f"http://{HOST}"}
    (cookie,) = dash("POST", "/ui/signin", form, f"token={TOKEN}".encode())["cookies"]
    doc = json.loads(dash("GET", "/openapi.json", BEARER)["body"])
    named = doc["components"]["securitySchemes"]["sessionCookie"]["name"]
    assert cookie.startswith(f"{named}="), (named, cookie)


def test_a_sign_in_form_that_is_not_utf8_is_the_form_again(dash):
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": f"http://{HOST}"}
    answer = dash("POST", "/ui/signin", form, b"token=\xff\xfe")
    assert answer["statusCode"] == 401 and 'name="token"' in answer["body"] and "not this daemon" in answer["body"]

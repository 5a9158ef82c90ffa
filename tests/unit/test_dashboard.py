"""The dashboard's rules without a server: sign-in sessions (hyperbatch/support/sessions.py) and the
pages' HTML (hyperbatch/web/pages.py): what a user controls is shown as text, never as markup."""

from __future__ import annotations

import html.parser

import pytest

from hyperbatch.support.sessions import Sessions, same_origin, session_id
from hyperbatch.web import pages

HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


class Tags(html.parser.HTMLParser):
    """Every start tag of a page, and the attribute names seen on them."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[str] = []
        self.attributes: set[str] = set()
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes |= {name for name, _ in attrs}


def test_a_session_opens_with_the_token_alone_and_ends_at_sign_out_or_expiry():
    now = [1000.0]
    sessions = Sessions("the-token", ttl=60, clock=lambda: now[0])
    assert sessions.sign_in("wrong") is None and sessions.sign_in("") is None
    sid = sessions.sign_in("the-token")
    assert sid and "the-token" not in sid and sessions.valid(sid)
    assert sessions.sign_in("the-token") != sid  # each sign-in its own random id
    assert not sessions.valid("made-up") and not sessions.valid(None)
    now[0] += 61
    assert not sessions.valid(sid)
    other = sessions.sign_in("the-token")
    sessions.sign_out(other)
    assert not sessions.valid(other)


@pytest.mark.parametrize("method, headers, allowed", [
    ("GET", {}, True),
    ("DELETE", {"origin": "http://127.0.0.1:8765", "host": "127.0.0.1:8765"}, True),
    ("POST", {"origin": "http://evil.example", "host": "127.0.0.1:8765"}, False),
    ("POST", {"origin": "http://127.0.0.1:9999", "host": "127.0.0.1:8765"}, False),
    ("PATCH", {"host": "127.0.0.1:8765"}, False),  # no Origin: not a browser's same-origin request
    ("POST", {"origin": "null", "host": "127.0.0.1:8765"}, False),  # a sandboxed frame or a file
])
def test_a_change_made_with_the_cookie_must_come_from_the_same_origin(method, headers, allowed):
    assert same_origin(method, headers) is allowed


def test_the_session_id_is_read_from_the_cookie_header_among_others():
    assert session_id({"cookie": "theme=dark; hyper_session=abc123; x=1"}) == "abc123"
    assert session_id({"cookie": "theme=dark"}) is None
    assert session_id({}) is None


def _job(**fields) -> dict:
    return {"id": "7.host", "seq": "7", "name": "job", "owner": "alice", "queue": "batch", "state": "QUEUED",
            "depend": "", "array": None, **fields}


def test_hostile_strings_are_rendered_as_text_on_every_page():
    job = _job(name=HOSTILE, owner=HOSTILE, env={"X": HOSTILE}, depend=f"afterok:{HOSTILE}")
    rendered = [
        pages.layout(HOSTILE, pages.jobs_table([job]), HOSTILE, [{"name": HOSTILE, "counts": {}}]),
        pages.job_page(job, [], None, "stdout"),
        pages.jobs_page([job], {"name": HOSTILE, "user": HOSTILE}, [HOSTILE], HOSTILE),
        pages.workers_page([{"name": HOSTILE, "queue": HOSTILE}]),
        pages.message(HOSTILE, HOSTILE),
    ]
    for text in rendered:
        parsed = Tags(text)
        assert "img" not in parsed.tags and parsed.tags.count("script") <= 1  # the page's own script only
        assert "onerror" not in parsed.attributes
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_an_arrays_progress_bar_counts_every_state():
    array = {"total": 10, "pending": 3, "running": 2, "succeeded": 4, "failed": 1, "cancelled": 0}
    bar = pages.progress(array)
    assert 'aria-valuemax="10" aria-valuenow="5"' in bar
    assert "5/10 done · pending 3 · running 2 · succeeded 4 · failed 1" in bar
    assert 'class="seg s-succeeded" style="width:40.00%"' in bar and "s-cancelled" not in bar


def test_the_dependency_graph_links_each_job_waited_for():
    graph = pages.dependency_graph(_job(depend="afterok:3.host:4.host,afterany:5.host"))
    assert graph.startswith("<svg") and graph.count("<rect") == 4  # three parents and this job
    for parent in ("3.host", "4.host", "5.host"):
        assert f'href="/ui/jobs/{parent}"' in graph
    assert pages.dependency_graph(_job()) == ""


def test_the_buttons_call_the_api_and_only_those_that_apply_are_enabled():
    page = pages.job_page(_job(state="HELD"), [], None, "stdout")
    buttons = {b.split(">")[-1]: b for b in page.split("</button>")[:-1]}
    assert 'data-action="/jobs/7/release" data-method="POST"' in buttons["Release (qrls)"]
    assert "disabled" not in buttons["Release (qrls)"] and "disabled" not in buttons["Cancel (qdel)"]
    assert buttons["Hold (qhold)"].endswith(" disabled>Hold (qhold)")

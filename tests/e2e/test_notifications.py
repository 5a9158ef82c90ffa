"""Notifications from a real daemon: PBS mail (-m, -M) to an SMTP sink, signed webhooks (--notify) to a receiver.

Both listen on 127.0.0.1. Each test checks one message per event: what PBS would
mail, and the webhook's JSON body with its HMAC signature checked against the
secret in the local home.
"""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.e2e.conftest import free_port, one_line, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_notifications")]

SMTP_PORT = free_port()


def e2e_configure(config: dict) -> None:
    config["settings"]["notifications"] = {"mail_from": "pbs@example.org",
                                           "smtp": {"host": "127.0.0.1", "port": SMTP_PORT}}


class Sink:
    """What the SMTP server received: email.message.Message objects, with their envelope recipients."""

    def __init__(self):
        self.messages: list[tuple[list[str], email.message.Message]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's handler name)
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"

    def about(self, job_id: str) -> list[tuple[list[str], email.message.Message]]:
        return [(to, m) for to, m in self.messages if m["Subject"] == f"PBS JOB {job_id}"]


@pytest.fixture(scope="module")
def smtp():
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=SMTP_PORT)
    controller.start()
    yield sink
    controller.stop()


class Receiver(ThreadingHTTPServer):
    """A webhook receiver: records every POST; a path under /flaky answers 500 to an event's first two tries."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.posts: list[tuple[str, Any, bytes, int]] = []  # (path, headers, body, status answered)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def accepted(self, path: str) -> list[dict]:
        with self.lock:
            return [json.loads(body) for p, _, body, status in self.posts if p == path and status == 200]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server: Receiver = self.server  # type: ignore[assignment]
        with server.lock:
            tries = sum(1 for p, h, _, _ in server.posts
                        if p == self.path and h.get("X-HyperBatch-Event-Id") == self.headers["X-HyperBatch-Event-Id"])
            status = 500 if self.path.startswith("/flaky") and tries < 2 else 200
            server.posts.append((self.path, self.headers, body, status))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def hook():
    receiver = Receiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.shutdown()
    receiver.server_close()


def test_mail_says_begin_and_end_when_asked_and_abort_by_default(hb, smtp):
    asked = hb.submit("-m", "be", "-M", "alice@example.com,bob", "-N", "told", "--", "true")
    quiet = hb.submit("--", "true")  # -m a: a job that ends by itself mails no one
    hb.wait_state(asked, "SUCCEEDED")
    hb.wait_state(quiet, "SUCCEEDED")
    deleted = hb.submit("-h", "-N", "gone", "--", "true")
    hb.run("qdel", deleted)

    [(to, mail)] = wait_for(lambda: smtp.about(deleted), what="the abort mail")
    host = hb.full(deleted)["Variable_List"].split("PBS_O_HOST=")[1].split(",")[0]
    user = hb.job(deleted)["owner"]
    assert to == [f"{user}@{host}"] and mail["From"] == "pbs@example.org"
    assert mail.get_payload().splitlines()[:3] == [f"PBS Job Id: {deleted}", "Job Name:   gone",
                                                   "Aborted by PBS Server "]
    mails = wait_for(lambda: len(smtp.about(asked)) == 2 and smtp.about(asked), what="begin and end mail")
    assert [m.get_payload().splitlines()[2:] for _, m in mails] == [
        ["Begun execution"], ["Execution terminated", "Exit_status=0"]]
    assert all(to == ["alice@example.com", f"bob@{host}"] for to, _ in mails)
    assert smtp.about(quiet) == []  # mailed in order: the abort after it came, so nothing for it is coming


def test_webhook_gets_one_signed_event_per_array_begin_and_end(hb, hook):
    array = hb.submit("-J", "1-6", "--notify", f"{hook.url}/array", "-N", "sweep", "--", "true")
    failing = hb.submit("--notify", f"{hook.url}/array", "--", "sh", "-c", "exit 3")
    hb.wait_all_final([array, failing])
    posts = wait_for(lambda: len(hook.accepted("/array")) == 4 and hook.accepted("/array"), what="four events")
    secret = (hb.home / "notify.secret").read_bytes().strip()
    with hook.lock:
        for _, headers, body, _ in hook.posts:
            assert headers["X-HyperBatch-Signature"] == "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    by_job = {job: [(p["event"], p["old_state"], p["new_state"]) for p in posts if p["job_id"] == job]
              for job in (array, failing)}
    assert by_job[array] == [("begin", "QUEUED", "RUNNING"), ("end", "RUNNING", "SUCCEEDED")]
    assert by_job[failing] == [("begin", "QUEUED", "RUNNING"), ("end", "RUNNING", "FAILED")]
    end = next(p for p in posts if p["job_id"] == failing and p["event"] == "end")
    assert (end["exit_status"], end["queue"], end["name"]) == (3, hb.job(failing)["queue"], "STDIN")
    assert len({p["event_id"] for p in posts}) == 4


def test_webhook_that_fails_twice_gets_each_event_once(hb, hook):
    job = hb.submit("--notify", f"{hook.url}/flaky", "--", "true")
    hb.wait_state(job, "SUCCEEDED")
    accepted = wait_for(lambda: len(hook.accepted("/flaky")) == 2 and hook.accepted("/flaky"), what="two events")
    assert [p["event"] for p in accepted] == ["begin", "end"]
    with hook.lock:
        assert sorted(status for p, _, _, status in hook.posts if p == "/flaky") == [200] * 2 + [500] * 4
    time.sleep(0.5)
    assert len(hook.accepted("/flaky")) == 2  # delivered, not delivered again


def test_a_notify_url_that_is_not_http_is_refused(hb):
    proc = hb.run("qsub", "--notify", "ftp://example.com/x", "--", "true", check=False)
    assert proc.returncode != 0
    assert one_line(proc.stderr) == "qsub: illegal --notify value 'ftp://example.com/x': give an http:// or " \
                                    "https:// URL"


def test_m_j_tells_each_task_of_an_array_as_well_as_the_array(hb, hook, smtp):
    array = hb.submit("-J", "1-4", "-m", "ej", "-M", "carol@example.com", "--notify", f"{hook.url}/tasks",
                      "-N", "each", "--", "sh", "-c", 'exit $((PBS_ARRAY_INDEX == 3))')
    hb.wait_state(array, "FAILED")
    task = array.replace("[]", "[{}]")
    posts = wait_for(lambda: len(hook.accepted("/tasks")) == 10 and hook.accepted("/tasks"), what="ten events")
    told = sorted((p["job_id"], p["event"], p["new_state"], p["exit_status"]) for p in posts)
    assert told == sorted([(array, "begin", "RUNNING", None), (array, "end", "FAILED", 1)] + [
        (task.format(i), "begin", "RUNNING", None) for i in (1, 2, 3, 4)] + [
        (task.format(i), "end", "FAILED" if i == 3 else "SUCCEEDED", int(i == 3)) for i in (1, 2, 3, 4)])
    assert len({p["event_id"] for p in posts}) == 10
    # -m ej: an end mail for each task and one for the array, no begin mail
    ours = f"PBS JOB {array.split('[')[0]}["  # the array's subject and its tasks'
    mails = wait_for(lambda: len(mine := [m for _, m in smtp.messages if m["Subject"].startswith(ours)]) == 5 and mine,
                     what="five end mails")
    assert {m["Subject"]: m.get_payload().splitlines()[2:] for m in mails} == {
        f"PBS JOB {array}": ["Execution terminated", "Exit_status=1", "1 of 4 tasks failed (indices 3)"],
        **{f"PBS JOB {task.format(i)}": ["Execution terminated", f"Exit_status={int(i == 3)}"] for i in (1, 2, 3, 4)}}

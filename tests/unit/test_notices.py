"""hyperbatch.core.notices: which change tells whom what; hyperbatch.services.notify: delivering from an outbox."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import pytest

from hyperbatch.core import notices
from hyperbatch.core.errors import SpecError
from hyperbatch.core import tasks
from hyperbatch.core.model import Expect, apply, new_job
from hyperbatch.services.notify import Notifier


def job(state="QUEUED", **fields):
    doc = new_job(id="42", server="srv", name="run", owner="ann", queue="default", env={"PBS_O_HOST": "login1"})
    doc.update(state=state, **fields)
    return doc


def moved(old, state, **fields):
    new = dict(old, state=state, version=old["version"] + 1, **fields)
    return new


@pytest.mark.parametrize("old_state, new_state, fields, event", [
    ("QUEUED", "RUNNING", {}, "begin"),
    ("RUNNING", "SUCCEEDED", {"exit_status": 0}, "end"),
    ("RUNNING", "FAILED", {"exit_status": 3}, "end"),  # the script's own exit: it ended
    ("RUNNING", "FAILED", {"exit_status": 271}, "end"),  # killed by a signal: PBS mails that as an end
    ("RUNNING", "FAILED", {"exit_status": -29}, "abort"),  # walltime exceeded
    ("RUNNING", "FAILED", {"exit_status": -27}, "abort"),  # memory exceeded
    ("RUNNING", "FAILED", {"exit_status": -20}, "abort"),  # worker lost, -r n
    ("RUNNING", "CANCELLED", {"exit_status": 271}, "abort"),  # qdel while running
    ("QUEUED", "CANCELLED", {}, "abort"),  # qdel before it ran
    ("WAITING", "CANCELLED", {}, "abort"),  # a dependency that can never be met
    ("RUNNING", "QUEUED", {}, None),  # a retry, or handed back: nothing ended
    ("QUEUED", "HELD", {}, None),
    ("HELD", "WAITING", {}, None),
])
def test_event_of_a_plain_job(old_state, new_state, fields, event):
    old = job(old_state)
    assert notices.event_of(old, moved(old, new_state, **fields)) == event


def test_a_job_begins_each_time_it_starts_and_a_write_that_keeps_the_state_says_nothing():
    old = job("QUEUED", started_at=100.0, run_count=1, attempt=2)
    assert notices.event_of(old, moved(old, "RUNNING", started_at=200.0)) == "begin"
    running = job("RUNNING")
    assert notices.event_of(running, moved(running, "RUNNING", heartbeat_at=5.0)) is None
    assert notices.event_of(None, job("QUEUED")) is None
    assert notices.event_of(None, job("CANCELLED")) == "abort"  # submitted after a parent that failed


def test_an_array_begins_once_and_ends_once():
    old = job("QUEUED", array="1-10", total=10)
    first = moved(old, "RUNNING", started_at=10.0)
    assert notices.event_of(old, first) == "begin"
    between = moved(first, "QUEUED")
    assert notices.event_of(first, between) is None
    assert notices.event_of(between, moved(between, "RUNNING")) is None  # the next chunk: it began already
    running = moved(between, "RUNNING")
    assert notices.event_of(running, moved(running, "FAILED", exit_status=1)) == "end"
    assert notices.event_of(running, moved(running, "CANCELLED")) == "abort"


def test_mail_follows_mail_points_and_users_webhooks_get_every_event():
    old = job("QUEUED", mail_points="be", mail_users="bob@example.com,carol", notify=["https://h.example/x"])
    begin = notices.of_change(old, moved(old, "RUNNING", started_at=7.0))
    assert [(d.channel, d.target) for d in begin] == [("mail", "bob@example.com,carol@login1"),
                                                      ("webhook", "https://h.example/x")]
    # default -m a: mail on abort only, to the owner at the submit host
    plain = job("RUNNING")
    assert notices.of_change(plain, moved(plain, "SUCCEEDED", exit_status=0)) == []
    [abort] = notices.of_change(plain, moved(plain, "CANCELLED", reason="deleted by ann"))
    assert (abort.channel, abort.target) == ("mail", "ann@login1")
    assert notices.of_change(plain, moved(dict(plain, mail_points="n"), "CANCELLED")) == []  # -m n


def array_job(spec="1-4", **fields):
    size = int(spec.split("-")[1]) - int(spec.split("-")[0]) + 1
    return job("QUEUED", array=spec, total=size, pending=size, **fields)


def written(doc, change):
    """An array's document after `change`, as update_array writes it (derived state, next version)."""
    new = apply(doc, Expect(), change)
    return {**new, **tasks.derived_fields(new), "version": doc["version"] + 1}


def told(deliveries, channel="webhook"):
    return [(d.notice.event, d.notice.job_id, d.notice.new_state, d.notice.exit_status, d.notice.reason)
            for d in deliveries if d.channel == channel]


def test_an_array_is_told_once_not_per_task_unless_m_j_asks():
    plain = array_job(mail_points="abe", notify=["https://h.example/x"])
    started = written(plain, tasks.claim_chunk(plain, "c1", 0, 4, 1, "w", 5.0).change)
    assert told(notices.of_change(plain, started)) == [("begin", "42[].srv", "RUNNING", None, "")]
    ended = written(started, tasks.finish_chunk(started, "c1", {0: 0, 1: 0, 2: 0, 3: 0}).change)
    assert told(notices.of_change(started, ended)) == [("end", "42[].srv", "SUCCEEDED", 0, "")]


def test_m_j_tells_each_task_its_begin_and_end_and_mail_follows_the_other_letters():
    doc = array_job("1-4", mail_points="ej", max_attempts=2, notify=["https://h.example/x"])
    started = written(doc, tasks.claim_chunk(doc, "c1", 0, 3, 1, "w", 5.0).change)
    deliveries = notices.of_change(doc, started, now=6.0)
    assert told(deliveries) == [("begin", "42[].srv", "RUNNING", None, "")] + [
        ("begin", f"42[{i}].srv", "RUNNING", None, "") for i in (1, 2, 3)]
    assert told(deliveries, "mail") == []  # -m ej: no begin mail, for the array or its tasks
    assert {d.notice.event_id for d in deliveries} == {"42.1", "42[1].1", "42[2].1", "42[3].1"}
    assert {d.notice.time for d in deliveries if "[]" not in d.notice.job_id} == {5.0}  # the chunk's start

    # A heartbeat settles tasks 1 and 2 (2 failed: a retry is left, so it goes back, and is told nothing).
    progressed = written(started, tasks.record_progress(started, "c1", 2, {0: 0, 1: 4}).change)
    deliveries = notices.of_change(started, progressed, now=7.0)
    assert told(deliveries) == [("end", "42[1].srv", "SUCCEEDED", 0, "")]
    assert [(d.target, d.notice.mail()) for d in deliveries if d.channel == "mail"] == [
        ("ann@login1", ("PBS JOB 42[1].srv", "PBS Job Id: 42[1].srv\nJob Name:   run\nExecution terminated\n"
                                               "Exit_status=0\n"))]

    # The retry of task 2 starts and ends: told as a second run of the same task.
    rerun = written(progressed, tasks.claim_chunk(progressed, "c2", 1, 2, 2, "w", 8.0).change)
    assert told(notices.of_change(progressed, rerun, now=8.5)) == [("begin", "42[2].srv", "RUNNING", None, "")]
    done = written(rerun, tasks.finish_chunk(rerun, "c2", {1: 0}).change)
    assert told(notices.of_change(rerun, done)) == [("end", "42[2].srv", "SUCCEEDED", 0, "")]


def test_m_j_tells_a_task_that_hyperbatch_stopped_as_an_abort_with_its_reason():
    doc = array_job("1-3", mail_points="aj")
    started = written(doc, tasks.claim_chunk(doc, "c1", 0, 3, 1, "w", 5.0).change)
    cancelled = written(started, tasks.cancel_tasks(started, "deleted", index=3))
    assert told(notices.of_change(started, cancelled), "mail") == []  # it still runs until its worker stops it
    ended = written(cancelled, tasks.finish_chunk(cancelled, "c1", {0: 1, 1: -29, 2: 271}).change)
    deliveries = notices.of_change(cancelled, ended, now=9.0)
    assert told(deliveries, "mail") == [  # -m aj: aborts only; task 1's own exit 1 is an end
        ("abort", "42[2].srv", "FAILED", -29, "exceeded resource walltime"),
        ("abort", "42[3].srv", "CANCELLED", None, "task deleted")]
    assert [d.notice.event_id for d in deliveries] == ["42[2].3", "42[3].3"]  # the array ends FAILED: -m a not e


def test_a_task_not_started_is_told_only_through_the_array():
    doc = array_job("1-3", mail_points="abej")
    cancelled = written(doc, tasks.cancel_tasks(doc, "deleted"))
    assert told(notices.of_change(doc, cancelled), "mail") == [("abort", "42[].srv", "CANCELLED", None, "deleted")]


def test_the_notice_says_what_pbs_mails_and_what_a_webhook_reads():
    old = job("RUNNING", started_at=5.0)
    [delivery] = notices.of_change(old, moved(old, "FAILED", exit_status=-29, finished_at=9.5,
                                              reason="job killed: walltime 2 exceeded limit 1"))
    notice = delivery.notice
    assert notice.mail() == ("PBS JOB 42.srv", "PBS Job Id: 42.srv\nJob Name:   run\nAborted by PBS Server \n"
                                               "job killed: walltime 2 exceeded limit 1\n")
    assert json.loads(notice.body()) == {
        "event_id": "42.1", "event": "abort", "job_id": "42.srv", "name": "run", "owner": "ann", "queue": "default",
        "old_state": "RUNNING", "new_state": "FAILED", "exit_status": -29,
        "reason": "job killed: walltime 2 exceeded limit 1", "time": 9.5}
    end = notices.notice_of("end", old, moved(old, "SUCCEEDED", exit_status=0))
    assert end.mail()[1].splitlines()[2:] == ["Execution terminated", "Exit_status=0"]


def test_signature_is_the_hex_hmac_sha256_of_the_body():
    assert notices.signature(b"key", b"body") == \
        "sha256=" + hmac.new(b"key", b"body", hashlib.sha256).hexdigest()


@pytest.mark.parametrize("url", ["ftp://x.example/a", "example.com/hook", "http://", "https://a b.example/", "",
                                 "http://[::1", "http://h.example:abc/", "http://h.example:99999/"])
def test_notify_urls_must_be_http_or_https(url):
    with pytest.raises(SpecError, match="illegal --notify value"):
        notices.check_url(url)


def test_eventbridge_detail_is_shaped_like_batch():
    old = job("RUNNING", started_at=5.0, submitted_at=1.0)
    detail = notices.state_change_detail(moved(old, "SUCCEEDED", exit_status=0, finished_at=9.0, run_count=1),
                                         "RUNNING")
    assert {k: detail[k] for k in ("jobName", "jobId", "jobQueue", "status", "previousStatus", "owner", "createdAt",
                                   "startedAt", "stoppedAt", "attempts", "container")} == {
        "jobName": "run", "jobId": "42.srv", "jobQueue": "default", "status": "SUCCEEDED", "previousStatus": "RUNNING",
        "owner": "ann", "createdAt": 1000, "startedAt": 5000, "stoppedAt": 9000, "attempts": 1,
        "container": {"exitCode": 0}}


# ---- delivering ---------------------------------------------------------------------------------

class Outbox:
    def __init__(self, deliveries):
        self.rows = {seq: [d, 0, 0.0] for seq, d in enumerate(deliveries)}

    def due_notices(self, now, limit=100):
        return [(seq, d, tries) for seq, (d, tries, at) in sorted(self.rows.items()) if at <= now][:limit]

    def notice_done(self, seq):
        del self.rows[seq]

    def notice_failed(self, seq, error, retry_at):
        self.rows[seq][1] += 1
        self.rows[seq][2] = retry_at


def deliveries():
    old = job("QUEUED", mail_points="b", notify=["http://127.0.0.1:9/a"])
    return notices.of_change(old, moved(old, "RUNNING", started_at=1.0))


def test_a_failing_receiver_is_tried_again_later_and_does_not_hold_up_the_others():
    now = [100.0]
    calls = []

    def flaky(d):
        calls.append((d.channel, now[0]))
        raise OSError("connection refused")

    box = Outbox(deliveries())
    notifier = Notifier(box, {"mail": lambda d: calls.append((d.channel, now[0])), "webhook": flaky},
                        clock=lambda: now[0], max_tries=3)
    assert notifier.deliver_due() == 1  # the mail went; the webhook waits
    assert notifier.deliver_due() == 0 and len(calls) == 2  # not due again yet
    now[0] += 1.0
    notifier.deliver_due()  # second try, then 2 s
    now[0] += 1.0
    notifier.deliver_due()
    assert len(calls) == 3
    now[0] += 1.0
    notifier.deliver_due()  # third try: given up, forgotten
    assert [c for c, _ in calls] == ["mail", "webhook", "webhook", "webhook"]
    assert box.rows == {}


def test_without_smtp_settings_mail_is_dropped_and_said_once(caplog):
    box = Outbox(deliveries() + deliveries())
    posted = []
    with caplog.at_level(logging.WARNING, "hyperbatch.notify"):
        Notifier(box, {"mail": None, "webhook": posted.append}).deliver_due()
    assert box.rows == {} and len(posted) == 2
    assert [r.getMessage() for r in caplog.records] == [
        "mail is not configured: job 42.srv's begin notice (and any later) not sent"]


# ---- on AWS: the release function's batch ------------------------------------------------------

def test_a_batch_puts_its_state_changes_after_its_sends_and_before_its_counts():
    from types import SimpleNamespace

    from hyperbatch.services.stream_release import StreamBatch

    calls = []

    class Notices:
        def __init__(self, fail):
            self.fail = fail

        def publish(self, changes, deliveries):
            calls.append(("publish", [(c["previousStatus"], c["status"]) for c in changes],
                          [(d.channel, d.notice.event) for d in deliveries]))
            if self.fail:
                raise OSError("EventBridge unreachable")

    queued = job("QUEUED", notify=["https://h.example/x"])
    running = moved(queued, "RUNNING", started_at=3.0)
    beat = moved(running, "RUNNING", heartbeat_at=4.0)
    records = [(None, queued), (queued, running), (running, beat)]
    decode = lambda pair: SimpleNamespace(events=[], old=pair[0], new=pair[1], submitted_at=None,  # noqa: E731
                                          started_at=None, started_before=None)
    queue = SimpleNamespace(send_many=lambda items: calls.append(("send", len(items))))
    store = SimpleNamespace(tally=lambda handled: calls.append(("tally", len(handled))))
    for fail in (False, True):
        calls.clear()
        batch = StreamBatch(None, queue, store, decode, Notices(fail))
        for record in records:
            batch.handle_record(record)
        if fail:
            with pytest.raises(OSError):
                batch.finish()  # the batch comes again: nothing was counted
        else:
            batch.finish()
        assert calls[:2] == [("send", 1), ("publish", [(None, "QUEUED"), ("QUEUED", "RUNNING")],
                                          [("webhook", "begin")])]
        assert calls[2:] == ([] if fail else [("tally", 3)])


def test_eventbridge_refusing_an_entry_is_an_error():
    from hyperbatch.adapters.aws.notices import EventBridgeNotices, EventsRefused

    class Client:
        def __init__(self):
            self.calls = []

        def list_rules(self):  # a rule routes the state changes somewhere
            return {"Rules": [{"Name": "mine", "State": "ENABLED", "EventPattern": '{"source": ["hyperbatch"]}'}]}

        def put_events(self, Entries):  # noqa: N803 (boto3's name)
            self.calls.append(Entries)
            return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "ThrottlingException"}] + [{}] * (len(Entries) - 1)}

    client = Client()
    details = [notices.state_change_detail(job("QUEUED"), None)] * 12
    with pytest.raises(EventsRefused, match="refused 1 events: ThrottlingException"):
        EventBridgeNotices(client).publish(details, [])
    assert [len(c) for c in client.calls] == [10]
    assert client.calls[0][0]["Source"] == "hyperbatch" and client.calls[0][0]["DetailType"] == \
        "HyperBatch Job State Change"
    quiet = Client()
    EventBridgeNotices(quiet, state_changes=False).publish(details, [])
    assert quiet.calls == []

"""Notifications on AWS in a box: state changes on EventBridge (a rule to an SQS queue receives them),
notices delivered by the notifier function: SES mail (recorded by moto) and a signed webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.aws_box.harness import ACCOUNT, Box

SETTINGS = {"lease_seconds": 3, "heartbeat_seconds": 1, "heartbeat_max_seconds": 2, "run_lease_seconds": 6,
            "notifications": {"ses_sender": "hpc@example.org", "webhook_secret_parameter": "/hyperbatch/webhook"}}


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        self.received.append((self.headers, self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def _rule_to_queue(box, name: str, pattern: dict) -> str:
    """A rule on the default bus with `pattern`, targeting a new SQS queue; the queue's URL."""
    queue_url = box.sqs.create_queue(QueueName=f"{name}-events")["QueueUrl"]
    queue_arn = box.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = box.client("events")
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": queue_arn}])
    return queue_url


def _events(box, queue_url) -> list[dict]:
    out = []
    while True:
        found = box.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not found:
            return out
        out += [json.loads(m["Body"]) for m in found]
        box.sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(found)])


def test_state_changes_go_to_eventbridge_and_notices_to_ses_and_a_signed_webhook():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Box(settings=SETTINGS) as box:
            queue_url = _rule_to_queue(box, "all-jobs", {"source": ["hyperbatch"]})
            box.client("ses").verify_email_identity(EmailAddress="hpc@example.org")
            box.client("ssm").put_parameter(Name="/hyperbatch/webhook", Value="s3cret", Type="SecureString")
            box.start_stream()

            url = f"http://127.0.0.1:{server.server_address[1]}/hook"
            job = box.submit(command=["true"], name="told", mail_points="be", mail_users="alice@example.com",
                             notify=[url])
            array = box.submit(command=["true"], array="1-20")
            box.start_worker()
            box.wait_state(job["id"], "SUCCEEDED")
            box.wait_state(array["id"], "SUCCEEDED")
            box.settle()

            received = _events(box, queue_url)
            changes = [e["detail"] for e in received if e["detail-type"] == "HyperBatch Job State Change"]
            assert {e["source"] for e in received} == {"hyperbatch"}
            mine = [c for c in changes if c["jobId"] == job["id"]]
            assert [(c["previousStatus"], c["status"]) for c in mine] == [
                (None, "QUEUED"), ("QUEUED", "RUNNING"), ("RUNNING", "SUCCEEDED")]
            last = mine[-1]
            assert (last["jobName"], last["jobQueue"], last["owner"], last["container"]) == (
                "told", "batch", f"arn:aws:iam::{ACCOUNT}:user/alice", {"exitCode": 0})
            assert last["createdAt"] <= last["startedAt"] <= last["stoppedAt"]
            done = [c for c in changes if c["jobId"] == array["id"]][-1]
            assert (done["status"], done["arrayProperties"]["size"]) == ("SUCCEEDED", 20)
            assert done["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 20

            # The stack's rule hands each notice to the notifier function: played here.
            notices = [e for e in received if e["detail-type"] == "HyperBatch Job Notice"]
            assert sorted((n["detail"]["channel"], n["detail"]["notice"]["event"]) for n in notices) == [
                ("mail", "begin"), ("mail", "end"), ("webhook", "begin"), ("webhook", "end")]
            for notice in notices:
                assert box.invoke("notifier", notice) == {"sent": True}

            from moto.ses.models import ses_backends

            mails = ses_backends[ACCOUNT]["us-east-1"].sent_messages
            assert sorted((m.source, tuple(m.destinations["ToAddresses"]), m.subject) for m in mails) == [
                ("hpc@example.org", ("alice@example.com",), f"PBS JOB {job['id']}")] * 2
            assert sorted(m.body.splitlines()[2] for m in mails) == ["Begun execution", "Execution terminated"]
            assert len(_Hook.received) == 2
            for headers, body in _Hook.received:
                assert headers["X-HyperBatch-Signature"] == "sha256=" + hmac.new(b"s3cret", body,
                                                                                  hashlib.sha256).hexdigest()
            assert sorted(json.loads(body)["event"] for _, body in _Hook.received) == ["begin", "end"]
    finally:
        server.shutdown()
        server.server_close()


def test_m_j_puts_a_notice_for_each_task_of_an_array_as_well_as_the_array():
    with Box(settings=SETTINGS) as box:
        queue_url = _rule_to_queue(box, "notices", {"detail-type": ["HyperBatch Job Notice"]})
        box.start_stream()
        array = box.submit(command=["sh", "-c", "exit $((PBS_ARRAY_INDEX == 2))"], array="1-3", mail_points="ej",
                           mail_users="dan@example.com", notify=["https://hooks.example/t"])
        box.start_worker()
        box.wait_state(array["id"], "FAILED")
        box.settle()

        told = sorted((e["detail"]["channel"], e["detail"]["notice"]["job_id"], e["detail"]["notice"]["event"],
                       e["detail"]["notice"]["exit_status"]) for e in _events(box, queue_url))
        task = array["id"].replace("[]", "[{}]")
        assert told == sorted(
            [("webhook", array["id"], "begin", None), ("webhook", array["id"], "end", 1),
             ("mail", array["id"], "end", 1)]
            + [("webhook", task.format(i), "begin", None) for i in (1, 2, 3)]
            + [(channel, task.format(i), "end", int(i == 2)) for i in (1, 2, 3) for channel in ("mail", "webhook")])


def test_state_changes_are_put_only_once_a_rule_listens_and_the_release_function_has_looked_again():
    from hyperbatch.wiring import lambdas as runtime

    clock = [1000.0]
    with Box(settings=SETTINGS) as box:
        runtime.get().notices.rules.clock = lambda: clock[0]  # the release function's minute, moved by hand
        box.start_stream()

        def run_one() -> dict:
            job = box.submit(command=["true"])
            box.start_worker()
            box.wait_state(job["id"], "SUCCEEDED")
            box.settle()
            return job

        def state_changes_put() -> list[str]:
            return [json.loads(e["Detail"])["jobId"] for c in box.meter.calls
                    if (c.service, c.operation) == ("events", "PutEvents") for e in c.params["Entries"]
                    if e["DetailType"] == "HyperBatch Job State Change"]

        def rule_listings() -> int:
            return box.meter.by_operation("release")["events:ListRules"]

        run_one()  # the bus has only the stack's notifier rule: nothing is put
        assert state_changes_put() == [] and rule_listings() == 1

        queue_url = _rule_to_queue(box, "my-jobs", {"source": [{"prefix": "hyper"}], "detail-type": [
            {"anything-but": "HyperBatch Job Notice"}]})
        run_one()  # within the minute the release function still goes by what it saw
        assert state_changes_put() == [] and rule_listings() == 1

        clock[0] += 60
        job = run_one()
        assert state_changes_put() == [job["id"]] * 3 and rule_listings() == 2
        received = _events(box, queue_url)
        assert [(e["source"], e["detail-type"]) for e in received] == [("hyperbatch", "HyperBatch Job State Change")] * 3
        assert [(e["detail"]["jobId"], e["detail"]["previousStatus"], e["detail"]["status"]) for e in received] == [
            (job["id"], None, "QUEUED"), (job["id"], "QUEUED", "RUNNING"), (job["id"], "RUNNING", "SUCCEEDED")]

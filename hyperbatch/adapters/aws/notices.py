"""Job notices on AWS: state changes and notices onto EventBridge, and a notice delivered (SES mail, webhook).

The release function puts, for the state changes of each batch of stream
records (hyperbatch.services.stream_release), one "HyperBatch Job State Change"
event each on the main region's default bus (source `hyperbatch`, a detail
shaped like AWS Batch's: hyperbatch.core.notices.state_change_detail), so a
deployment's users route them with rules of their own, but only while a rule
of that bus could match one (`RuleWatch`: EventBridge bills every event put,
$1 a million, read or not); and one "HyperBatch Job Notice" event per mail or
webhook delivery a change makes, whoever listens. The stack's rule sends
those to the notifier function (lambdas/notifier.py), which calls
`NoticeSender.deliver`: mail through SES from the configured sender, a
webhook POST signed with the secret in the configured SSM SecureString. A
delivery that fails raises, and Lambda tries the event again (twice, minutes
apart); each event carries the change's `event_id`, so a duplicate can be
dropped. Nothing of this is on a job's path: the release function only adds
one PutEvents call per 10 events to its batch, and a ListRules a minute.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from typing import Any, Callable

from hyperbatch.core import event_rules, notices
from hyperbatch.core.names import EVENT_SOURCE, NOTICE_DETAIL_TYPE, STATE_CHANGE_DETAIL_TYPE
from hyperbatch.support import webhooks

log = logging.getLogger("hyperbatch.notify")

PUT_EVENTS_MAX = 10  # entries in one PutEvents call


class EventsRefused(Exception):
    """EventBridge refused some entries of a PutEvents call."""


class EventBridgeNotices:
    """Puts a batch's state changes (when `state_changes` and a rule could read them) and notices on the
    default event bus. `clock` is the RuleWatch's (tests move it past the minute)."""

    def __init__(self, client, *, state_changes: bool = True, clock: Callable[[], float] = time.monotonic):
        self.client, self.state_changes = client, state_changes
        self.rules = RuleWatch(client, clock=clock)

    def publish(self, changes: list[dict], deliveries: list[notices.Delivery]) -> None:
        listened = bool(changes) and self.state_changes and self.rules.listening()
        entries = [_entry(STATE_CHANGE_DETAIL_TYPE, detail) for detail in changes] if listened else []
        entries += [_entry(NOTICE_DETAIL_TYPE, {"channel": d.channel, "target": d.target, "notice": asdict(d.notice)})
                    for d in deliveries]
        for start in range(0, len(entries), PUT_EVENTS_MAX):
            answer = self.client.put_events(Entries=entries[start:start + PUT_EVENTS_MAX])
            if answer.get("FailedEntryCount"):
                codes = sorted({e.get("ErrorCode") for e in answer["Entries"] if e.get("ErrorCode")})
                raise EventsRefused(f"EventBridge refused {answer['FailedEntryCount']} events: {', '.join(codes)}")


class RuleWatch:
    """Whether a rule of the default bus could match a state change (hyperbatch.core.event_rules), asked
    with ListRules (every page) at most once per `every` seconds of `clock` per function instance.

    ListRules is a control-plane call: not billed, but throttled per account, hence the minute's cache;
    a rule made meanwhile gets its events from the next look on. When ListRules fails (denied by an IAM
    slip, throttled, unreachable) the answer is yes: events are paid for rather than lost. The first
    failure is logged, the later ones are not (every minute would be noise)."""

    def __init__(self, client, *, every: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.client, self.every, self.clock = client, every, clock
        self._answer: bool | None = None
        self._asked_at = 0.0
        self._failed_before = False

    def listening(self) -> bool:
        now = self.clock()
        if self._answer is None or now - self._asked_at >= self.every:
            self._answer, self._asked_at = self._ask(), now
        return self._answer

    def _ask(self) -> bool:
        try:
            token = None
            while True:
                page = self.client.list_rules(**({"NextToken": token} if token else {}))
                if any(event_rules.listens(rule) for rule in page.get("Rules", [])):
                    return True
                token = page.get("NextToken")
                if not token:
                    return False
        except Exception as exc:  # whatever went wrong, the events go out
            if not self._failed_before:
                log.warning("cannot list the default event bus's rules (%s): job state changes are put "
                            "whether a rule reads them or not", exc)
                self._failed_before = True
            return True


def _entry(detail_type: str, detail: dict) -> dict:
    return {"Source": EVENT_SOURCE, "DetailType": detail_type, "Detail": json.dumps(detail)}


class NoticeSender:
    """Delivers one notice event's detail: SES mail from `sender`, or a webhook signed with the secret in
    the SSM parameter `secret_parameter`. A channel that is not configured is logged and dropped."""

    def __init__(self, ses, ssm, *, sender: str | None, secret_parameter: str | None):
        self.ses, self.ssm, self.sender, self.secret_parameter = ses, ssm, sender, secret_parameter
        self._secret: bytes | None = None

    def deliver(self, detail: dict[str, Any]) -> bool:
        """Send it; False when its channel is not configured (nothing sent). Raises when sending failed."""
        notice = notices.Notice(**detail["notice"])
        if detail["channel"] == notices.MAIL:
            if not self.sender:
                log.warning("no SES sender in settings.notifications: job %s's mail not sent", notice.job_id)
                return False
            subject, text = notice.mail()
            self.ses.send_email(Source=self.sender, Destination={"ToAddresses": detail["target"].split(",")},
                                Message={"Subject": {"Data": subject}, "Body": {"Text": {"Data": text}}})
            return True
        if not self.secret_parameter:
            log.warning("no webhook secret in settings.notifications: job %s's webhook not called", notice.job_id)
            return False
        webhooks.post(detail["target"], notice, self.secret())
        return True

    def secret(self) -> bytes:
        if self._secret is None:
            found = self.ssm.get_parameter(Name=self.secret_parameter, WithDecryption=True)
            self._secret = found["Parameter"]["Value"].strip().encode()
        return self._secret

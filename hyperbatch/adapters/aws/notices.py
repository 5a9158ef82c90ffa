"""Job notices on AWS: state changes and notices onto EventBridge, and a notice delivered (SES mail, webhook).

The release function puts, for the state changes of each batch of stream
records (hyperbatch.services.stream_release), one "HyperBatch Job State Change"
event each on the main region's default bus (source `hyperbatch`, a detail
shaped like AWS Batch's: hyperbatch.core.notices.state_change_detail), so a
deployment's users route them with rules of their own; and one "HyperBatch Job
Notice" event per mail or webhook delivery a change makes. The stack's rule
sends those to the notifier function (lambdas/notifier.py), which calls
`NoticeSender.deliver`: mail through SES from the configured sender, a
webhook POST signed with the secret in the configured SSM SecureString. A
delivery that fails raises, and Lambda tries the event again (twice, minutes
apart); each event carries the change's `event_id`, so a duplicate can be
dropped. Nothing of this is on a job's path: the release function only adds
one PutEvents call per 10 events to its batch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

from hyperbatch.core import notices
from hyperbatch.core.names import EVENT_SOURCE, NOTICE_DETAIL_TYPE, STATE_CHANGE_DETAIL_TYPE
from hyperbatch.support import webhooks

log = logging.getLogger("hyperbatch.notify")

PUT_EVENTS_MAX = 10  # entries in one PutEvents call


class EventsRefused(Exception):
    """EventBridge refused some entries of a PutEvents call."""


class EventBridgeNotices:
    """Puts a batch's state changes (when `state_changes`) and notices on the default event bus."""

    def __init__(self, client, *, state_changes: bool = True):
        self.client, self.state_changes = client, state_changes

    def publish(self, changes: list[dict], deliveries: list[notices.Delivery]) -> None:
        entries = [_entry(STATE_CHANGE_DETAIL_TYPE, detail) for detail in changes] if self.state_changes else []
        entries += [_entry(NOTICE_DETAIL_TYPE, {"channel": d.channel, "target": d.target, "notice": asdict(d.notice)})
                    for d in deliveries]
        for start in range(0, len(entries), PUT_EVENTS_MAX):
            answer = self.client.put_events(Entries=entries[start:start + PUT_EVENTS_MAX])
            if answer.get("FailedEntryCount"):
                codes = sorted({e.get("ErrorCode") for e in answer["Entries"] if e.get("ErrorCode")})
                raise EventsRefused(f"EventBridge refused {answer['FailedEntryCount']} events: {', '.join(codes)}")


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

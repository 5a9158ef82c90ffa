"""Delivering notices (mail, webhooks) from an outbox, each on its own, retried with back-off.

Locally the outbox is the store's `notices` table, filled in the same
transaction as the change that made them (hyperbatch.core.notices.of_change),
and the daemon's notify thread calls `deliver_due` off the scheduling path: a
receiver that is down delays only its own notices (each try waits its turn,
doubling, hyperbatch.support.backoff), and a notice is forgotten once
delivered or after `max_tries`. A crash between a send and its forgetting
sends it again: delivery is at least once (receivers drop a repeat by its
`event_id`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol

from hyperbatch.core.notices import Delivery
from hyperbatch.support import backoff

log = logging.getLogger("hyperbatch.notify")

MAX_TRIES = 10  # about 17 minutes of tries (1 s doubling, at most 5 minutes apart)
RETRY_BASE_SECONDS = 1.0
RETRY_CAP_SECONDS = 300.0

Sender = Callable[[Delivery], None]


class Outbox(Protocol):
    def due_notices(self, now: float, limit: int = 100) -> list[tuple[int, Delivery, int]]: ...

    def notice_done(self, seq: int) -> None: ...

    def notice_failed(self, seq: int, error: str, retry_at: float) -> None: ...


@dataclass
class Notifier:
    """The senders per channel (None: that channel is not configured, its notices are dropped, said once)."""

    outbox: Outbox
    senders: Mapping[str, Sender | None]
    clock: Callable[[], float] = time.time
    max_tries: int = MAX_TRIES
    retry_base: float = RETRY_BASE_SECONDS
    _said: set = field(default_factory=set)

    def deliver_due(self) -> int:
        """Try every due notice once; returns how many were delivered."""
        delivered = 0
        for seq, delivery, tries in self.outbox.due_notices(self.clock()):
            send = self.senders.get(delivery.channel)
            if send is None:
                if delivery.channel not in self._said:
                    self._said.add(delivery.channel)
                    log.warning("%s is not configured: job %s's %s notice (and any later) not sent",
                                delivery.channel, delivery.notice.job_id, delivery.notice.event)
                self.outbox.notice_done(seq)
                continue
            try:
                send(delivery)
            except Exception as exc:
                tries += 1
                error = f"{type(exc).__name__}: {exc}"
                if tries >= self.max_tries:
                    log.error("%s to %s for job %s given up after %d tries: %s", delivery.channel, delivery.target,
                              delivery.notice.job_id, tries, error)
                    self.outbox.notice_done(seq)
                else:
                    wait = backoff.delay(tries - 1, self.retry_base, RETRY_CAP_SECONDS)
                    log.warning("%s to %s for job %s failed (try %d), again in %gs: %s", delivery.channel,
                                delivery.target, delivery.notice.job_id, tries, wait, error)
                    self.outbox.notice_failed(seq, error, self.clock() + wait)
                continue
            self.outbox.notice_done(seq)
            delivered += 1
        return delivered

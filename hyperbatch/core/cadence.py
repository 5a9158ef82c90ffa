"""When a running run's worker looks at the store, and when it renews its lease there.

Two kinds of beat (docs/architecture.md §4.6):

- A *check* reads the run's job (eventually consistent: half a read unit)
  to learn of a cancel (qdel), a signal (qsig), or a run taken back. The
  first comes `first_check` seconds after the start; after that one comes
  every half of the run's age, never more than `most_between_checks` apart:
  a short job hears a qdel within seconds, an hour-long one within minutes,
  and an hour of running costs about twenty reads.
- A *renewal* writes the promise that the worker still runs the run. Where
  the store is free (local mode, `run_lease` None) every beat is one, a
  heartbeat apart, with the claim's lease (fine-grained: as before). On AWS
  a run first lives on its claim's lease (the SQS message's visibility,
  `claim_lease`); a third of the way through it the worker registers the run
  (hyperbatch.core.ports.RunRegister) with the long `run_lease`, and renews
  that registration each half run lease. Runs shorter than a third of a
  claim lease write nothing; an hour-long one writes twice.

The worker fences itself by the same numbers (hyperbatch.services.agent.Lease):
it kills its job once a whole lease, less a margin (`margin`), has passed
since the last renewal that reached the store. An unregistered run's last
renewal is its start, so its registration must land before `fenced_at`, or
the run kills itself and runs again (in turn, never at once). Registering at
a third of the claim lease leaves, within the configuration's bounds (a
heartbeat at most a third of the lease), a lease/2 - heartbeat/2 >= 1.5
heartbeats for it: a registration that fails, or comes a heartbeat late on a
loaded machine, is tried again before the fence (`registration_tries` >= 2).
At half the lease the first try could be the only one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FENCE_MARGIN = 0.5  # heartbeats: a worker that cannot renew kills its job this long before its lease ends


@dataclass(frozen=True)
class Cadence:
    claim_lease: float  # seconds a claim (and an unregistered run) is leased for
    first_check: float  # the heartbeat: the first check after a start, and the retry of a failed renewal
    most_between_checks: float  # the longest wait between two checks
    run_lease: float | None = None  # what a registration promises; None: every beat renews the claim lease

    @classmethod
    def fine(cls, lease: float, heartbeat: float) -> "Cadence":
        """Local mode's: a renewal (which reads the job too) every heartbeat."""
        return cls(lease, heartbeat, heartbeat, None)

    @property
    def registers(self) -> bool:
        return self.run_lease is not None

    @property
    def margin(self) -> float:
        """How long before its lease ends a worker that could not renew kills its job: half a heartbeat,
        which must exceed the clock difference between the worker and whoever takes the run back."""
        return FENCE_MARGIN * self.first_check

    @property
    def fenced_at(self) -> float:
        """Age at which a run that renewed nothing since its start kills itself: its claim lease less the margin."""
        return self.claim_lease - self.margin

    def check_gap(self, age: float) -> float:
        """Seconds from a check at `age` (seconds since the run started) to the next one."""
        if not self.registers:
            return self.first_check
        return min(self.most_between_checks, max(self.first_check, age / 2))

    @property
    def register_at(self) -> float:
        """Age at which a run registers: a third of its claim lease (see the module's note)."""
        return self.claim_lease / 3

    def registration_tries(self) -> int:
        """Registrations a run can try before it fences itself: the first at `register_at`, a failed one
        again a heartbeat later, none at or after `fenced_at`."""
        return max(0, math.ceil((self.fenced_at - self.register_at) / self.first_check))

    @property
    def renew_every(self) -> float:
        """Seconds between renewals once a run is registered (or, fine-grained, between beats)."""
        return self.run_lease / 2 if self.run_lease is not None else self.first_check

    def checks_within(self, seconds: float) -> int:
        """Checks a run lasting `seconds` makes (renewals of a fine cadence not counted)."""
        age, n = self.first_check, 0
        while age < seconds:
            n += 1
            age += self.check_gap(age)
        return n

    def renewals_within(self, seconds: float) -> int:
        """Store writes a run lasting `seconds` makes besides its start and end."""
        if not self.registers:
            return max(0, math.ceil(seconds / self.first_check) - 1)
        if seconds <= self.register_at:
            return 0
        return 1 + max(0, math.ceil((seconds - self.register_at) / self.renew_every) - 1)

    def longest_silence(self) -> float:
        """The longest a run goes between two checks: how late a qdel may be heard, at worst."""
        return self.most_between_checks if self.registers else self.first_check

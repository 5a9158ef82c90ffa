"""Signal names as qsig takes them: `SIGUSR1`, `USR1`, `usr1` or a number; PBS's `suspend` and
`resume` are refused (a job cannot be suspended on a worker that others may not use meanwhile)."""

from __future__ import annotations

import signal

from hyperbatch.core.errors import PBSE_NOSUP, PBSE_UNKSIG, SpecError

_BY_NUMBER = {int(s): s.name for s in signal.Signals if s.name.startswith("SIG") and not s.name.startswith("SIG_")}
_NAMES = set(_BY_NUMBER.values())


def parse(text: str) -> str:
    """The canonical name of a signal (`SIGUSR1`); SpecError (PBS: Unknown/illegal signal name) otherwise."""
    given = str(text).strip()
    if given.lower() in ("suspend", "resume", "admin-suspend", "admin-resume"):
        raise SpecError(f"qsig -s {given}: suspending jobs is not supported", pbs_errno=PBSE_NOSUP)
    if given.isdigit():
        name = _BY_NUMBER.get(int(given))
    else:
        upper = given.upper()
        name = upper if upper.startswith("SIG") else "SIG" + upper
    if name not in _NAMES:
        raise SpecError(f"unknown signal '{given}': give a name such as SIGUSR1 or USR1, or a number",
                        pbs_errno=PBSE_UNKSIG)
    return name


def number(name: str) -> int:
    return int(signal.Signals[name])

"""Job ids: short, unique, time-ordered strings (ARCHITECTURE.md §3).

An id is 13 Crockford base32 characters: 10 for a 48-bit millisecond
timestamp (the same prefix a ULID has) and 3 for a 15-bit sequence that
starts at a random value each millisecond and counts up. Ids from one
process are strictly increasing; ids from different processes sort by
creation time to the millisecond. An array task is written `ID[7]`.
"""

from __future__ import annotations

import re
import secrets
import threading
import time

from hyperbatch.errors import SpecError

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
LENGTH = 13
EXAMPLE = "01JD4V8ZK2N3Q"
_SEQ_BITS = 15
_ID_RE = re.compile(rf"[{ALPHABET}]{{{LENGTH}}}")
_REF_RE = re.compile(rf"([{ALPHABET}]{{{LENGTH}}})(?:\[([0-9]{{0,18}})\])?")

_lock = threading.Lock()
_last_ms = -1
_last_seq = 0


def _encode(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 32)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def new_job_id() -> str:
    """A new id, greater than every id this process made before (thread-safe)."""
    global _last_ms, _last_seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            # Start in the lower half so a busy millisecond has room to count up.
            _last_ms, _last_seq = ms, secrets.randbelow(1 << (_SEQ_BITS - 1))
        elif _last_seq + 1 < (1 << _SEQ_BITS):
            _last_seq += 1  # same millisecond (or the clock went back)
        else:
            _last_ms, _last_seq = _last_ms + 1, 0  # sequence exhausted: borrow the next millisecond
        return _encode(_last_ms, 10) + _encode(_last_seq, 3)


def valid_job_id(text: str) -> bool:
    """True when `text` has the exact shape of a job id (13 upper-case Crockford characters)."""
    return isinstance(text, str) and _ID_RE.fullmatch(text) is not None


def parse_job_ref(text: str) -> tuple[str, int | None]:
    """Parse `ID`, `ID[7]` (one array task) or `ID[]` (the whole array) into (id, index or None)."""
    match = _REF_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise SpecError(f"'{text}' is not a job id (like {EXAMPLE} or {EXAMPLE}[7])")
    job_id, index = match.groups()
    return job_id, int(index) if index else None

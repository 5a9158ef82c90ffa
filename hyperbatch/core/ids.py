"""Job ids: short, unique, time-ordered strings (docs/architecture.md §3.5).

An id is 13 Crockford base32 characters: 10 for a 48-bit millisecond
timestamp (the same prefix a ULID has) and 3 for a 15-bit sequence. The
sequence space of a millisecond has two halves:

- lone ids (`new_job_id`) use the lower half (< 2**14): each millisecond
  starts at a random value below 2**13 and counts up; when it would reach
  2**14 the next millisecond is borrowed;
- blocks (`new_job_ids(n)`) use the upper half: n consecutive ids from 2**14
  in a millisecond this process never used for a block before. DynamoJobStore
  writes a block's jobs unconditionally (BatchWriteItem) behind one
  conditional write that claims the millisecond, so a block must never share
  ids with lone ids, nor with this process's other blocks.

Ids from one process are strictly increasing across both functions (unless
the clock goes back by more than the borrowed milliseconds); ids from
different processes sort by creation time to the millisecond. An array task
is written `ID[7]`.
"""

from __future__ import annotations

import re
import secrets
import threading
import time

from hyperbatch.core.errors import SpecError

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
LENGTH = 13
PREFIX = 10  # characters of the millisecond timestamp
EXAMPLE = "01JD4V8ZK2N3Q"
_SEQ_BITS = 15
BLOCK_START = 1 << (_SEQ_BITS - 1)  # the first sequence of the upper half: blocks
MAX_BLOCK = (1 << _SEQ_BITS) - BLOCK_START  # ids in one block: 16,384
_ID_RE = re.compile(rf"[{ALPHABET}]{{{LENGTH}}}")
_REF_RE = re.compile(rf"([{ALPHABET}]{{{LENGTH}}})(?:\[([0-9]{{0,18}})\])?")

_lock = threading.Lock()
_last_ms = -1  # millisecond of the last id made (lone or block)
_last_seq = 0  # its sequence
_last_block_ms = -1  # the last millisecond used for a block


def _encode(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 32)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def _decode(text: str) -> int:
    value = 0
    for char in text:
        value = value * 32 + ALPHABET.index(char)
    return value


def _lone_start() -> int:
    # Random in the lower quarter so a busy millisecond has room to count up in the lower half.
    return secrets.randbelow(1 << (_SEQ_BITS - 2))


def new_job_id() -> str:
    """A new lone id (sequence in the lower half), greater than every id this process made before (thread-safe)."""
    global _last_ms, _last_seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms, _last_seq = ms, _lone_start()
        elif _last_seq + 1 < BLOCK_START:
            _last_seq += 1  # same millisecond (or the clock went back)
        else:
            # Lower half used up, or a block took this millisecond's upper half: borrow the next one.
            _last_ms, _last_seq = _last_ms + 1, _lone_start()
        return _encode(_last_ms, PREFIX) + _encode(_last_seq, 3)


def new_job_ids(n: int) -> list[str]:
    """A block: `n` (1..16,384) consecutive ids of one millisecond, sequences from 2**14 up.

    The millisecond is now, or a later one this process borrows: never one it
    used for a block before, and never below its last id (thread-safe).
    """
    global _last_ms, _last_seq, _last_block_ms
    if not 1 <= n <= MAX_BLOCK:
        raise ValueError(f"a block holds 1 to {MAX_BLOCK} ids, not {n}")
    with _lock:
        ms = max(time.time_ns() // 1_000_000, _last_ms)
        if ms <= _last_block_ms:
            ms = _last_block_ms + 1  # this millisecond's upper half is taken: borrow the next
        _last_ms, _last_seq, _last_block_ms = ms, BLOCK_START + n - 1, ms
        prefix = _encode(ms, PREFIX)
        return [prefix + _encode(BLOCK_START + i, 3) for i in range(n)]


def block_prefix(job_ids: list[str]) -> str | None:
    """The millisecond prefix the ids share if they form a block (all in the upper half of one millisecond)."""
    if not job_ids:
        return None
    prefix = job_ids[0][:PREFIX]
    for job_id in job_ids:
        if not valid_job_id(job_id) or job_id[:PREFIX] != prefix or _decode(job_id[PREFIX:]) < BLOCK_START:
            return None
    return prefix


def next_millisecond(job_id: str) -> str:
    """The smallest id of the millisecond after `job_id`'s (every id of its millisecond sorts below it)."""
    return _encode(_decode(job_id[:PREFIX]) + 1, PREFIX) + _encode(0, 3)


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

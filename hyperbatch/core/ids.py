"""Job ids as PBS prints them, and where their sequence numbers come from.

Inside HyperBatch a job's id is its sequence number as a decimal string
("1234"): the store's key, and what dependencies name. Users see the id the
way PBS Pro prints it (`format_id`): `1234.SERVER` for a job, `1234[].SERVER`
for an array, `1234[7].SERVER` for one array task, where SERVER is the
deployment's server name (the host's short name in local mode, the stack name
on AWS; a job keeps the one it was submitted under in its `server` field).
That string is what qsub prints, what the job finds in PBS_JOBID and what
keys qstat's JSON. Every command accepts an id with or without `.SERVER`,
with `[]` or with `[INDEX]` (`parse_job_ref`).

Sequence numbers
----------------
The store hands them out: `JobStore.reserve_ids(n)` reserves n consecutive
numbers that it never hands out again (SQLite: one counter row updated in a
write transaction; DynamoDB: one conditional `ADD n` on a counter item).
`SequenceBlocks` sits in front of it in each process and may reserve more
than a submit needs, keeping the rest for the next submits, so a burst costs
one store write per block, not per job. The guarantees:

- Unique: every number is reserved once, so two jobs never share an id; no
  write needs to check for a clash (DynamoDB writes a batch's jobs with
  unconditional BatchWriteItem).
- Increasing: within one process each id is greater than every id it made
  before. Across processes, an id is greater than every id made more than
  `lifetime` seconds before it anywhere: a block is used only for `lifetime`
  seconds after it was reserved, and any block reserved later starts above it.
  With `lifetime=0` (local mode: one process submits, and the SQLite write is
  cheap) every submit reserves exactly what it needs and ids are strictly
  increasing, with no gaps.
- A submit of n jobs gets n consecutive numbers from one block (`take`): no
  other job's id lies between its first and its last, which lets DynamoDB
  keep one index entry for all of them (hyperbatch.adapters.aws.dynamo).
- Gaps are possible (the unused rest of an expired block, a failed submit);
  PBS's sequence has them too when a submission fails.

Sequence numbers have at most 12 digits (PBS_MAXSEQNUM); the store refuses
to go past MAX_SEQUENCE instead of wrapping around as PBS does, so ids keep
increasing. Ids sort by number (`number`); `sort_key` pads them to 12 digits
for stores whose sort keys are strings.
"""

from __future__ import annotations

import time

from hyperbatch.core.patterns import lazy
from hyperbatch.core.errors import NotFound, SpecError

MAX_DIGITS = 12
MAX_SEQUENCE = 10**MAX_DIGITS - 1
EXAMPLE = "1234"
# SEQ, then [] or [INDEX], then .SERVER (a host name: labels of letters, digits, '-' and '_').
_REF_RE = lazy(r"([0-9]{1,12})(\[([0-9]{0,18})\])?(?:\.([A-Za-z0-9_][A-Za-z0-9_.-]*))?")
_ID_RE = lazy(r"[1-9][0-9]{0,11}")


class IllegalJobId(SpecError):
    """An operand that is not a job id at all (PBS: 'illegally formed job identifier', exit 1)."""

    code = "IllegalJobId"


# ---- ids and their PBS form -------------------------------------------------------------------

def valid_job_id(text: object) -> bool:
    """True when `text` is an internal job id: a sequence number in decimal, no leading zero."""
    return isinstance(text, str) and _ID_RE.fullmatch(text) is not None


def number(job_id: str) -> int:
    """The sequence number of an id (ids compare by this, never as strings)."""
    return int(job_id)


def sort_key(job_id: str) -> str:
    """The id padded to 12 digits, so that string order is number order (DynamoDB sort keys)."""
    return f"{int(job_id):0{MAX_DIGITS}d}"


def from_sort_key(key: str) -> str:
    return str(int(key))


def consecutive(job_ids: list[str]) -> bool:
    """True when the ids are n consecutive sequence numbers in order (one `take` of a submit)."""
    return bool(job_ids) and all(
        valid_job_id(j) and int(j) == int(job_ids[0]) + i for i, j in enumerate(job_ids)
    )


def format_id(job_id: str, server: str | None, *, array: bool = False, index: int | None = None) -> str:
    """`1234.server`, `1234[].server` (array) or `1234[7].server` (task); no suffix when server is empty."""
    brackets = f"[{index}]" if index is not None else ("[]" if array else "")
    return f"{job_id}{brackets}.{server}" if server else f"{job_id}{brackets}"


def display_id(doc: dict, index: int | None = None) -> str:
    """The PBS id of a job document (or of one of its array tasks)."""
    return format_id(doc["id"], doc.get("server"), array=doc.get("array") is not None, index=index)


def short_host(name: str) -> str:
    """A host name's first label, as PBS names its server (`login1.example.com` -> `login1`)."""
    return name.split(".", 1)[0]


def same_server(given: str, ours: str) -> bool:
    """Whether `given` names this server: equal ignoring case, or equal in the first label
    (PBS treats `1234.host` and `1234.host.example.com` as the same job)."""
    return given.lower() == ours.lower() or short_host(given).lower() == short_host(ours).lower()


class JobRef:
    """A parsed operand: `seq` (the internal id), `index` (a task) or `array` (`[]` given), `server` as typed."""

    __slots__ = ("text", "seq", "index", "array", "server")

    def __init__(self, text: str, seq: str, index: int | None, array: bool, server: str | None):
        self.text, self.seq, self.index, self.array, self.server = text, seq, index, array, server

    def expanded(self, server: str | None) -> str:
        """The operand as PBS echoes it in messages: with `.SERVER` appended when it had none."""
        return self.text if self.server or not server else f"{self.text}.{server}"

    def __repr__(self) -> str:
        return f"JobRef({self.text!r})"


def parse_job_ref(text: str, server: str | None = None) -> JobRef:
    """Parse `1234`, `1234.SERVER`, `1234[]`, `1234[].SERVER`, `1234[7]`, `1234[7].SERVER`.

    IllegalJobId when the text is not shaped like a job id. With `server`
    given, an id naming another server is NotFound ("Unknown Job Id ...").
    """
    stripped = text.strip() if isinstance(text, str) else ""
    match = _REF_RE.fullmatch(stripped)
    if match is None or int(match[1]) == 0:
        raise IllegalJobId(f"illegally formed job identifier: {text}")
    seq = str(int(match[1]))
    brackets, index, given = match[2], match[3], match[4]
    if given is not None and given.endswith("."):
        raise IllegalJobId(f"illegally formed job identifier: {text}")
    ref = JobRef(stripped, seq, int(index) if index else None, brackets == "[]", given)
    if server and given and not same_server(given, server):
        raise NotFound(f"Unknown Job Id {stripped}")
    return ref


# ---- sequence blocks ----------------------------------------------------------------------------

class SequenceBlocks:
    """Hands out ids from blocks of sequence numbers reserved in the store (see the module docstring).

    `reserve(n)` reserves n consecutive numbers and returns the first. A block
    holds at least `block` numbers; it doubles (up to `max_block`) each time
    this process uses one up within `lifetime` seconds and halves when one
    expires unused, so a burst of submits costs one reservation per block and
    a trickle one per submit. A block older than `lifetime` is abandoned. `lifetime=None` keeps a block until it is used up (a single
    process: ids stay strictly increasing anyway); `block=1, lifetime=0`
    reserves exactly what each submit needs.
    """

    def __init__(self, reserve, *, block: int = 1, max_block: int = 1000, lifetime: float | None = 0.0,
                 clock=time.monotonic):
        if not 1 <= block <= max_block:
            raise ValueError(f"block must be 1..max_block, not {block}")
        self._reserve, self._clock = reserve, clock
        self._min, self._max, self._lifetime = block, max_block, lifetime
        self._size = block
        self._next, self._last, self._reserved_at = 1, 0, 0.0
        import threading  # here, not at the top: the PBS commands parse ids and never make them

        self._lock = threading.Lock()

    def take(self, n: int) -> list[str]:
        """n consecutive ids, each greater than every id this object handed out before (thread-safe)."""
        if not 1 <= n <= MAX_SEQUENCE:
            raise ValueError(f"cannot take {n} ids")
        with self._lock:
            now = self._clock()
            expired = self._lifetime is not None and now - self._reserved_at >= self._lifetime
            if expired or self._next + n - 1 > self._last:
                if expired:
                    if self._next <= self._last:
                        self._size = max(self._min, self._size // 2)  # part of it went unused: smaller next time
                elif self._last:
                    self._size = min(self._max, self._size * 2)  # used up in time: the next one is bigger
                size = max(n, self._size)
                first = self._reserve(size)
                self._next, self._last, self._reserved_at = first, first + size - 1, now
            start = self._next
            self._next += n
            return [str(i) for i in range(start, start + n)]


def check_reservation(first: int, n: int) -> None:
    """What every store checks before it reserves n numbers from `first`: no sequence past 12 digits."""
    if first + n - 1 > MAX_SEQUENCE:
        raise SpecError(f"job ids are used up: the sequence reached {first - 1} of at most {MAX_SEQUENCE}")

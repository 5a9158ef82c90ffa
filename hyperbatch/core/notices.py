"""Who is told what when a job changes state: PBS mail (-m, -M), webhooks (--notify), EventBridge's detail.

One rule for both platforms, applied where each sees a change once with the
document before and after it: locally the SQLite store, in the same
transaction as the change (its `notices` table is the outbox a daemon thread
delivers from); on AWS the release function, from the table's stream
(hyperbatch.services.stream_release). Delivery is at least once, so every
notice carries an `event_id` (the job's id and the document's version after
the change) by which a receiver drops a duplicate.

The events are PBS's mail points (OpenPBS svr_mail.c):

- `b` begin: a job starts running (every run, as PBS mails each start); an
  array once, when its first task starts.
- `e` end: a job ends by itself: SUCCEEDED, or FAILED with its script's exit
  status (0-255, or 256 + a signal number).
- `a` abort: HyperBatch ended it: CANCELLED (qdel, a dependency that can never
  be met), or FAILED with a negative exit status (walltime or memory exceeded,
  the worker lost and the job not rerunnable, the program could not start,
  stage-in failed, dead-lettered again and again). PBS's default, `-m a`.
- `n` no mail.
- `j` each array task is told too (PBS: mail for subjobs): its own begin when
  a chunk starts it (each run), and its end or abort when a run of it ends
  (not when it goes back for a retry), mailed at the points the other letters
  name and posted to every `--notify` URL. Without `j` an array is told once
  (begin, end), whatever its size. Tasks that never started (cancelled while
  pending) are told only through the array's own abort.

Mail goes to `-M`'s addresses (a name without `@` at the submit host); with
no `-M`, to the owner at the submit host, as PBS does. A `--notify` URL is told every begin, end and abort, whatever
`-m` says (`-m` is about mail). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from hyperbatch.core.errors import SpecError
from hyperbatch.core.ids import display_id
from hyperbatch.core.states import FINAL, JobState

BEGIN, END, ABORT = "begin", "end", "abort"
MAIL_LETTER = {BEGIN: "b", END: "e", ABORT: "a"}
MAIL = "mail"
WEBHOOK = "webhook"
SIGNATURE_HEADER = "X-HyperBatch-Signature"
MAX_URL = 2048

# What PBS writes after the job's id and name (OpenPBS pbs_messages.c: msg_job_start, _end, _abort).
_MAIL_TEXT = {BEGIN: "Begun execution", END: "Execution terminated", ABORT: "Aborted by PBS Server "}


@dataclass(frozen=True)
class Notice:
    """One event of one job, as a webhook receives it (`body`) and a mail tells it (`mail`)."""

    event_id: str
    event: str  # begin, end or abort
    job_id: str  # as qsub printed it: 1234.server, 1234[].server
    name: str
    owner: str
    queue: str
    old_state: str | None
    new_state: str
    exit_status: int | None
    reason: str
    time: float

    def body(self) -> bytes:
        """The webhook's JSON body (keys sorted, so its signature is over stable bytes)."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    def mail(self) -> tuple[str, str]:
        """(subject, text) in PBS's words."""
        lines = [f"PBS Job Id: {self.job_id}", f"Job Name:   {self.name}", _MAIL_TEXT[self.event]]
        if self.event == END:
            lines.append(f"Exit_status={self.exit_status}")
        if self.event != BEGIN and self.reason:
            lines.append(self.reason)
        return f"PBS JOB {self.job_id}", "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Delivery:
    """One notice to one channel: mail to `target` (addresses, comma separated), or a POST to the URL `target`."""

    channel: str
    target: str
    notice: Notice


def event_of(old: dict | None, new: dict | None) -> str | None:
    """begin, end, abort or None: what a change of a job document from `old` to `new` means to its owner."""
    if new is None or (old is not None and old["state"] == new["state"]):
        return None
    state = JobState(new["state"])
    if state is JobState.RUNNING:
        if new.get("array") is not None and old is not None and old.get("started_at") is not None:
            return None  # an array moves between QUEUED and RUNNING as chunks come and go: it began once
        return BEGIN
    if state not in FINAL:
        return None
    if state is JobState.CANCELLED or (state is JobState.FAILED and (new.get("exit_status") or 0) < 0):
        return ABORT
    return END


def of_change(old: dict | None, new: dict | None, now: float | None = None) -> list[Delivery]:
    """The deliveries a change makes: mail as `-m`/`-M` ask, and one POST per `--notify` URL; for an array
    with `-m j`, the same for each task the change started or ended (stamped `now`, default the clock)."""
    if new is None:
        return []
    event = event_of(old, new)
    out = _deliveries(new, notice_of(event, old, new)) if event is not None else []
    if old is not None and new.get("array") is not None and "j" in (new.get("mail_points") or ""):
        out += [d for notice in task_notices(old, new, time.time() if now is None else now)
                for d in _deliveries(new, notice)]
    return out


def _deliveries(doc: dict, notice: Notice) -> list[Delivery]:
    out = []
    to = mail_to(doc)
    if to and MAIL_LETTER[notice.event] in (doc.get("mail_points") or "a"):
        out.append(Delivery(MAIL, ",".join(to), notice))
    for url in doc.get("notify") or []:
        out.append(Delivery(WEBHOOK, url, notice))
    return out


def task_notices(old: dict, new: dict, now: float) -> list[Notice]:
    """A notice per task of the array that the change from `old` to `new` started (begin) or whose
    run it ended (end, or abort when HyperBatch ended it), in index order; none for a task going back
    to be retried. Its id is the task's (`1234[7].server`), its event id the task's and the version's."""
    from hyperbatch.core import arrays, exits, tasks  # here: qsub imports this module, and tasks imports typing

    started, ended = tasks.moved_tasks(old, new)
    if not started and not ended:
        return []
    spec = arrays.parse_array(new["array"])
    out = []
    for pos, chunk in started:
        out.append(_task_notice(new, spec.index_at(pos), BEGIN, JobState.QUEUED.value, JobState.RUNNING.value,
                                None, "", float(chunk.get("started") or now)))
    for _, row in ended:
        state, status = JobState(row["state"]), row["exit_status"]
        if state not in FINAL:
            continue  # back in the queue for a retry: nothing ended
        cancelled = state is JobState.CANCELLED
        event = ABORT if cancelled or (status or 0) < 0 else END
        reason = "task deleted" if cancelled else exits.describe(status) if event == ABORT else ""
        out.append(_task_notice(new, row["index"], event, JobState.RUNNING.value, state.value, status, reason, now))
    return out


def _task_notice(new: dict, index: int, event: str, old_state: str, new_state: str, status: int | None,
                 reason: str, at: float) -> Notice:
    return Notice(
        event_id=f"{new['id']}[{index}].{new.get('version', 0)}", event=event, job_id=display_id(new, index),
        name=new["name"], owner=new["owner"], queue=new["queue"], old_state=old_state, new_state=new_state,
        exit_status=status, reason=reason, time=at)


def notice_of(event: str, old: dict | None, new: dict) -> Notice:
    at = new.get("finished_at") if event != BEGIN else new.get("started_at")
    return Notice(
        event_id=f"{new['id']}.{new.get('version', 0)}", event=event, job_id=display_id(new), name=new["name"],
        owner=new["owner"], queue=new["queue"], old_state=old["state"] if old else None, new_state=new["state"],
        exit_status=new.get("exit_status"), reason=new.get("reason") or "",
        time=float(at if at is not None else new.get("submitted_at") or 0.0))


def mail_to(doc: dict) -> list[str]:
    """Where a job's mail goes: `-M`'s users, else its owner; a name without `@` is at the submit host
    (PBS_O_HOST; with none known, it is left out)."""
    host = (doc.get("env") or {}).get("PBS_O_HOST")
    users = [u.strip() for u in (doc.get("mail_users") or "").split(",") if u.strip()]
    if not users:
        owner = doc.get("owner") or ""
        users = [owner.rsplit("/", 1)[-1]] if owner else []  # an IAM principal's ARN ends in its name
    return [u if "@" in u else f"{u}@{host}" for u in users if "@" in u or host]


# ---- webhooks ----------------------------------------------------------------------------------

def check_url(text: object) -> str:
    """A `--notify` URL: http or https with a host. SpecError in one line otherwise."""
    url = str(text).strip()
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname
        parts.port  # noqa: B018 (read for its ValueError: a port that is no number, or out of range)
    except ValueError:  # a bracketed host left open, a bad port
        scheme, host = "", None
    if scheme not in ("http", "https") or not host or len(url) > MAX_URL or any(c.isspace() for c in url):
        raise SpecError(f"illegal --notify value '{url[:80]}': give an http:// or https:// URL")
    return url


def check_urls(value: object) -> list[str]:
    values = [value] if isinstance(value, str) else list(value or []) if isinstance(value, (list, tuple)) else [value]
    if len(values) > 5:
        raise SpecError("--notify: at most 5 URLs a job")
    return [check_url(v) for v in values]


def signature(secret: bytes, body: bytes) -> str:
    """The `X-HyperBatch-Signature` header's value: `sha256=` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


# ---- EventBridge -------------------------------------------------------------------------------

def state_change_detail(new: dict, old_state: str | None) -> dict:
    """An EventBridge event's detail for a job's new state, shaped like AWS Batch's "Batch Job State Change"."""
    detail: dict[str, object] = {
        "jobName": new["name"], "jobId": display_id(new), "jobQueue": new["queue"], "status": new["state"],
        "previousStatus": old_state, "statusReason": new.get("reason") or "", "owner": new["owner"],
        "createdAt": _millis(new.get("submitted_at")), "startedAt": _millis(new.get("started_at")),
        "stoppedAt": _millis(new.get("finished_at")) if new["state"] in {s.value for s in FINAL} else None,
        "attempts": new.get("run_count", 0), "container": {"exitCode": new.get("exit_status")},
        "eventId": f"{new['id']}.{new.get('version', 0)}",
    }
    if new.get("array") is not None:
        from hyperbatch.core.model import ARRAY_COUNTERS  # here: qsub imports this module, and model imports typing

        detail["arrayProperties"] = {"size": new.get("total"), "statusSummary": {
            k.upper(): new.get(k, 0) for k in ARRAY_COUNTERS}}
    return detail


def _millis(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)

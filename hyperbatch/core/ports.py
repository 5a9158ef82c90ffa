"""The narrow ports the core talks through (docs/architecture.md §2).

Every port has a local adapter (SQLite, files, subprocesses) and an AWS
adapter (DynamoDB, SQS, CloudWatch Logs, AWS Batch); the contract tests in
tests/contract run the same assertions against both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

from hyperbatch.core.model import Change, Expect


@dataclass(frozen=True)
class Page:
    items: list[dict]
    next: str | None


@dataclass(frozen=True)
class Event:
    """A job's state changed (what DynamoDB Streams or the local events table carry)."""

    job_id: str
    old_state: str | None
    new_state: str
    queue: str


@dataclass(frozen=True)
class PendingEvent:
    """An event not handled yet, as the local events table keeps it: its place and its failed tries so far."""

    seq: int
    event: Event
    tries: int


class EventLog(Protocol):
    """The local events table (DynamoDB Streams' twin): events stay until their handling has committed.

    On AWS the stream's event source mapping keeps the same promise with its
    checkpoint, retries and the release-failures queue (hyperbatch.services.stream_release).
    """

    def due_events(self, now: float, limit: int = 1000) -> list[PendingEvent]:
        """Unhandled, unparked events whose try is due, oldest first."""

    def events_done(self, seqs: list[int]) -> None:
        """Remove events whose handling has committed."""

    def event_failed(self, seq: int, error: str, retry_at: float, park: bool) -> None:
        """Record a failed try: due again at `retry_at`, or parked (kept, shown, not tried again)."""

    def parked_events(self) -> int:
        """How many events are parked."""


class JobStore(Protocol):
    def reserve_ids(self, n: int) -> int:
        """Reserve n consecutive job sequence numbers no one else will get; returns the first
        (hyperbatch.core.ids: one conditional write, whatever n)."""

    def create(self, docs: list[dict], edges: list[tuple[str, str]], workflow: dict | None = None) -> None:
        """Insert new jobs and their (parent, child) dependency edges; all or nothing (Conflict if an id exists).

        Ids come from `reserve_ids`; the jobs of one submit have consecutive ids (hyperbatch.core.ids).
        `workflow`: the record of the workflow these jobs are ({"owner", "name", "created_at", "steps":
        step -> job id}), written with them, all or nothing; it replaces the owner's record of that name.
        """

    def workflow(self, owner: str, name: str) -> dict:
        """The record of `owner`'s workflow `name` (the newest submitted); raises NotFound."""

    def workflows(self, owner: str) -> list[dict]:
        """The records of `owner`'s workflows (the newest of each name), newest first."""

    def add_edges(self, edges: list[tuple[str, str]]) -> None:
        """More (parent, child) dependency edges for existing jobs (qalter -W depend)."""

    def get(self, job_id: str, consistent: bool = True) -> dict:
        """The job document; raises NotFound. `consistent=False`: a read that may lag the last writes by
        a moment, at half the price on AWS (a running job's looks for qdel and qsig)."""

    def get_many(self, job_ids: Iterable[str]) -> dict[str, dict]:
        """Documents of the ids that exist."""

    def update(self, job_id: str, expect: Expect, change: Change) -> dict:
        """Conditional write; returns the new document; raises StaleTransition or NotFound."""

    def query(
        self, *, owner: str | None = None, queue: str | None = None,
        states: Iterable[str] | None = None, limit: int = 100, next: str | None = None,
    ) -> Page:
        """Jobs newest first (highest id first), by owner and/or queue+state, through indexes (never a scan).

        `next` is the last id of the previous page: the listing goes on below it.
        """

    def dependents(self, parent_id: str) -> list[str]:
        """Ids of the jobs that depend on `parent_id`."""

    def counts(self, queue: str) -> dict[str, int]:
        """Jobs per state in a queue (arrays count once, by their derived state)."""

    def beat(self, job_id: str, run: str, at: float) -> None:
        """Record that run `run` of the job (an array chunk's id) was alive at `at`: kept apart from the
        job's document, so a beat neither writes nor grows it. Unconditional: a run taken back beats
        under its own id, which no one reads any more."""

    def beats(self, job_id: str) -> dict[str, float]:
        """The job's runs' last beats, run -> time (read strongly consistent)."""

    def script(self, doc: dict) -> str | None:
        """The job's script text (None for a command). A store may keep large scripts apart from the
        document (the AWS store: in the files bucket) and fetch them here; only a worker needs them."""


class RunRegister(Protocol):
    """Runs that outlast a third of their claim's lease on AWS, one entry per worker (hyperbatch.core.cadence).

    An entry is {"host", "job_id", "attempt", "chunk" (an array chunk's id, else ""), "queue",
    "item" (the work item's id), "receipt" (its message's), "at", "lease"}: worker `host` promises
    to run that run until `at + lease` at least (it kills its job before). The reconciler lists
    them all, each minute, to take back the runs of workers that are gone.
    """

    def hold(self, entry: dict) -> None:
        """Write the worker's entry (unconditionally: a worker runs one run at a time)."""

    def entry(self, host: str) -> dict | None:
        """Worker `host`'s entry, if it has one."""

    def entries(self) -> list[dict]:
        """Every entry (read eventually consistent: a moment old at most)."""

    def drop(self, host: str, at: float) -> None:
        """Remove `host`'s entry if it still says `at` (a newer registration stays)."""


class Census(Protocol):
    """Which workers are known to be gone: their container or machine stopped, so nothing of theirs
    runs. A worker it cannot tell about is not gone (its run's promised lease decides then)."""

    def gone(self, hosts: set[str]) -> set[str]:
        """The subset of `hosts` (exec_host names, `region/worker`) known to have stopped."""


@dataclass(frozen=True)
class WorkItem:
    """A claimed piece of work: a job, or positions [lo, hi) of an array, under a lease."""

    id: str
    queue: str
    job_id: str
    lo: int
    hi: int
    attempt: int
    receipt: str  # what ack/extend/release need to name this lease
    # True when the queue delivered this item before and its lease ran out (SQS:
    # ApproximateReceiveCount > 1, or a copy that `release` made of such an item).
    # A lease table reports lost leases through `expired()` instead and always
    # leaves this False. A worker that claims a redelivered item hands it to
    # `Dispatcher.recover_lost` rather than running it.
    redelivered: bool = False
    gpus: str = ""  # the GPUs this lease holds, as CUDA_VISIBLE_DEVICES names them ("0,1"; local placement)

    @property
    def size(self) -> int:
        return self.hi - self.lo


class WorkQueue(Protocol):
    def send(self, queue: str, job_id: str, lo: int, hi: int, attempt: int, priority: int = 0) -> None:
        """Make work visible to workers of `queue`."""

    def send_many(self, items: list[tuple[str, str, int, int, int, int]]) -> None:
        """Batch send of (queue, job_id, lo, hi, attempt, priority)."""

    def reprioritise(self, job_id: str, priority: int) -> None:
        """Items of this job still waiting to be claimed move to `priority` (qalter -p). A queue
        without priorities (SQS) does nothing."""

    def claim(self, queue: str, worker: str, max_tasks: int, lease_seconds: float) -> WorkItem | None:
        """Lease the next item, split so that it holds at most `max_tasks` array positions.

        `max_tasks` is how much work the worker takes at once: a queue may also
        receive up to that many items in one call and hand them out in turn.
        """

    def wait(self, queue: str, timeout: float) -> bool:
        """An idle worker's pause between claims that found nothing: until work may have been sent to
        `queue` (True) or `timeout` passed (False). The local queue wakes its waiters when work is
        committed; SQS long-polls in `claim` instead, and this only sleeps."""

    def extend(self, item: WorkItem, lease_seconds: float) -> bool:
        """Heartbeat: push the lease out; False if the lease was lost."""

    def ack(self, item: WorkItem) -> None:
        """Delete the item: its work has a final state in the store (SQS buffers it for a batch: see `flush`)."""

    def flush(self) -> None:
        """Carry out acks still buffered (a worker going idle or stopping calls this); a no-op where ack is immediate."""

    def release(self, item: WorkItem, lo: int | None = None, delay: float = 0.0) -> None:
        """Give back positions [lo, hi) of the item (all of it if lo is None), visible after `delay`."""

    def split(self, item: WorkItem, lo: int, hi: int) -> WorkItem:
        """Keep [lo, hi) under this lease; [hi, item.hi) goes back for other workers."""

    def requeue(self, item: WorkItem, lo: int, attempt: int) -> None:
        """Make the item's work claimable again from `lo` at `attempt` (a worker giving it back, or its
        recovery after the worker was lost); the item itself is gone."""

    def expired(self, now: float) -> list[WorkItem]:
        """Items whose lease ran out (their worker is gone).

        A queue that redelivers lost work by itself (SQS) returns [] here and
        marks the redelivered item's `redelivered` instead.
        """

    def backlog(self, queue: str) -> int:
        """Array positions and jobs waiting in `queue`, not leased.

        SQS can only count messages (one job, or a range of array positions,
        each), so the AWS adapter answers in messages, not positions.
        """

    def in_flight(self, queue: str) -> int:
        """Items of `queue` under a lease (being run)."""

    def jobs_with_work(self, job_ids: list[str]) -> set[str]:
        """Which of these jobs have an item in the queue (for the reconciler's gap check).

        Only a queue that can be searched (the local lease table) answers; SQS
        raises NotImplementedError (on AWS the table's stream sends the work, see hyperbatch.adapters.aws.sqs).
        """


class LogSink(Protocol):
    """Where a running job's stdout and stderr go while it runs."""

    stdout: int  # file descriptors handed to the child process
    stderr: int

    def close(self, kept: bool = True, lingering: bool = False) -> None:
        """The run is over. `kept` False: it did not run to its end for the run's sake (its worker stopped
        it, or its lease was lost), so it has no result and a store need not keep its output. `lingering`:
        processes the run started outlived it and may still write; a store that reuses its files for the
        next run must give that run fresh ones."""


class LogStore(Protocol):
    def sink(self, job_id: str, index: int | None, attempt: int) -> LogSink: ...

    def read(self, job_id: str, index: int | None, stream: str, offset: int, limit: int) -> tuple[bytes, int]:
        """Up to `limit` bytes from byte `offset`, exactly as the job wrote them, and the offset after them."""


class Compute(Protocol):
    def start(self, region: str, queue: str, definition: str, count: int) -> int:
        """Start workers; returns how many were started."""

    def running(self) -> dict[tuple[str, str], int]:
        """Workers alive per (region, queue)."""

    def running_in(self, region: str) -> dict[str, int]:
        """Workers alive in one region, per queue. Raises when that region cannot be asked; the
        scaler then leaves the region out of its run and carries on with the others."""

    def stop_all(self) -> None: ...


class WorkerRegistry(Protocol):
    """The records of workers on your own machines (hyperbatch.core.onprem), kept by the workers themselves.

    A record is {"name", "queue", "definition", "ncpus", "mem_mib", "ngpus", "host", "started_at",
    "seen_at", "instance"}; `instance` tells this run of a worker from another process that claims
    the same name.
    """

    def register(self, record: dict) -> None:
        """Write `record` (again). Raises Conflict when a live worker of another instance holds its name."""

    def forget(self, name: str, instance: str) -> None:
        """Delete the record of `name` if `instance` still holds it."""

    def workers(self) -> list[dict]:
        """Every record, live or not (hyperbatch.core.onprem.live picks the live ones)."""


@dataclass(frozen=True)
class StagedFile:
    """A file staged out: `path` in the job's directory, where it went (`dest`: a path or an s3://
    URI) and its size in bytes. A directory staged out is one entry, its size the sum of its files'."""

    path: str
    dest: str
    size: int

    def record(self) -> dict:
        """As the job document keeps it (`stageout_files`, hyperbatch.core.staging)."""
        return {"path": self.path, "dest": self.dest, "size": self.size}


@dataclass(frozen=True)
class Staged:
    """What a stage-in or stage-out did: the files copied, and one line for each that failed
    (`LOCAL@REMOTE: why`). No failures: all went."""

    files: tuple[StagedFile, ...] = ()
    failures: tuple[str, ...] = ()


class Stager(Protocol):
    """Copies a job's files in before it starts and out after it ends (hyperbatch.core.staging: the
    pairs, their syntax and PBS's rules). The agent calls it for each run, with the directory the run
    starts in (its home directory, or PBS_JOBDIR with -W sandbox=PRIVATE); `index` is an array
    task's (its `^array_index^`), else None. Local mode copies on this machine; on AWS the worker
    copies from and to S3."""

    def stage_in(self, job: dict, index: int | None, directory: Path) -> Staged:
        """Copy the job's stage-in files into `directory`. Any failure: the files already copied
        are removed again and the job must not run (the agent fails it, staging.STAGEIN_FAILED)."""

    def stage_out(self, job: dict, index: int | None, directory: Path) -> Staged:
        """After the run, whatever its exit status: copy what each stage-out pair matches to its
        destination, removing each file from `directory` once copied (PBS); then remove the files
        staged in. A failure leaves its file where it is and does not stop the others."""


class FileBucket(Protocol):
    """The API's side of a deployment's files bucket (hyperbatch.core.bucket): presigned URLs, so the
    API stays the only door and users need no S3 permissions. AWS only (adapters/aws/files.S3Files);
    local mode reads stage-in files where they are and writes outputs to the submit directory."""

    bucket: str

    def upload(self, owner: str, files: list[tuple[str, int | None]], upload_id: str | None = None) -> dict:
        """Files (relative path, size if known) of a new upload of `owner`, or more of their upload
        `upload_id`: {"prefix": its s3:// URI, "upload": its id, "urls": {path: PUT URL}, "multipart":
        {path: {"upload_id", "part_size", "parts"}} for large files, "expires_in"}."""

    def part_urls(self, owner: str, uri: str, upload_id: str, first: int, count: int) -> list[dict]:
        """UploadPart URLs ({"number", "url"}) of `owner`'s multipart upload at `uri`."""

    def complete(self, owner: str, uri: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        """`owner`'s multipart upload at `uri` made one object of its parts (number, ETag)."""

    def abort(self, owner: str, uri: str, upload_id: str) -> None:
        """`owner`'s multipart upload at `uri` dropped, with its parts."""

    def missing(self, uris: list) -> list:
        """Which of these S3Uris of the bucket (objects, or prefixes ending in '/') hold nothing."""

    def job_files(self, job_id: str) -> list[dict]:
        """The files a job's runs left: {"name", "size", "url"} (a GET URL) each."""

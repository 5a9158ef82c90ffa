"""JobStore, WorkQueue and the events table on one SQLite database in WAL mode.

The daemon and every worker process open the same file; each thread gets its
own connection. Writes run in `BEGIN IMMEDIATE` transactions so a conditional
update reads and writes under one lock, the way a DynamoDB conditional write
does. A state change appends to `events` in the same transaction: the local
twin of DynamoDB Streams, tailed by the daemon. An event stays in the table
until its handling has committed (`events_done`); one whose handling failed
waits for its retry (`next_at`), and after the last try it is parked there
(`parked`), counted by `hyper local status`, never dropped
(hyperbatch.services.release.release_events). The same transaction appends
the mail and webhooks the change makes (hyperbatch.core.notices) to `notices`,
the outbox the daemon's notify thread delivers from.

Job ids are sequence numbers from the one-row `sequence` table
(`reserve_ids`: one write transaction per reservation, so ids are unique and,
with the daemon the only process that submits, strictly increasing). Listings
cost what they list, not what the history holds: unfinished jobs are in
partial indexes of their own (`jobs_active`, `jobs_active_owner`), which a
query for active states uses, and jobs per queue and state are counters in
`queue_counts`, kept in the same transactions as the jobs (bench/listing.py).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from hyperbatch.core.errors import Conflict, NotFound, StorageFull
from hyperbatch.core.ids import check_reservation, valid_job_id
from hyperbatch.core.model import Change, Expect, apply
from hyperbatch.core import notices, resources
from hyperbatch.adapters.local.wake import Waiter, Wakeups
from hyperbatch.core.ports import Event, Page, PendingEvent, WorkItem
from hyperbatch.core.resources import Amount, Candidate
from hyperbatch.core.tasks import BEAT_KEPT_SECONDS

if TYPE_CHECKING:
    from hyperbatch.adapters.local.machine import Machine

SCHEMA_VERSION = 2  # 2: numeric job ids (hyperbatch.core.ids), the sequence, active-job indexes, queue counts,
# events kept until handled (tries, next_at, parked)
ACTIVE = ("HELD", "QUEUED", "RUNNING", "WAITING")
# Written out, not bound: SQLite uses a partial index only for a query whose WHERE holds its very term.
ACTIVE_TERM = "state IN ('HELD', 'QUEUED', 'RUNNING', 'WAITING')"

# One transaction, so that another process opening the file meanwhile sees all of it or none.
SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, owner TEXT NOT NULL, queue TEXT NOT NULL, state TEXT NOT NULL, doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, id);
CREATE INDEX IF NOT EXISTS jobs_queue_state ON jobs (queue, state, id);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, id);
-- Unfinished jobs apart from the history: listing them reads only them (qstat, qselect).
CREATE INDEX IF NOT EXISTS jobs_active ON jobs (id) WHERE {ACTIVE_TERM};
CREATE INDEX IF NOT EXISTS jobs_active_owner ON jobs (owner, id) WHERE {ACTIVE_TERM};
CREATE TABLE IF NOT EXISTS sequence (name TEXT PRIMARY KEY, last INTEGER NOT NULL);
-- Jobs per queue and state, kept in the same transactions as the jobs (GET /queues reads no job).
CREATE TABLE IF NOT EXISTS queue_counts (
    queue TEXT NOT NULL, state TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (queue, state)
);
-- Array chunks' heartbeats, apart from the jobs (JobStore.beat); a beat older than a day is forgotten.
CREATE TABLE IF NOT EXISTS beats (job_id TEXT NOT NULL, run TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (job_id, run));
CREATE INDEX IF NOT EXISTS beats_at ON beats (at);
CREATE TABLE IF NOT EXISTS edges (parent TEXT NOT NULL, child TEXT NOT NULL, PRIMARY KEY (parent, child));
-- Workflows (hyperbatch.core.workflows): an owner's newest of each name, written with its jobs.
CREATE TABLE IF NOT EXISTS workflows (owner TEXT NOT NULL, name TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (owner, name));
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, queue TEXT NOT NULL,
    old_state TEXT, new_state TEXT NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL DEFAULT 0, parked INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
-- Notices to deliver (mail, webhooks: hyperbatch.core.notices), written with the change that makes them.
CREATE TABLE IF NOT EXISTS notices (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, target TEXT NOT NULL, notice TEXT NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL DEFAULT 0, error TEXT
);
CREATE TABLE IF NOT EXISTS work (
    id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, job_id TEXT NOT NULL,
    lo INTEGER NOT NULL, hi INTEGER NOT NULL, attempt INTEGER NOT NULL, priority INTEGER NOT NULL,
    visible_at REAL NOT NULL, lease_until REAL, worker TEXT
);
CREATE INDEX IF NOT EXISTS work_ready ON work (queue, priority DESC, id) WHERE lease_until IS NULL;
-- Queued work of every queue in start order: a claim's placement walks it and stops at the first that fits.
CREATE INDEX IF NOT EXISTS work_start ON work (priority DESC, id) WHERE lease_until IS NULL;
CREATE INDEX IF NOT EXISTS work_leased ON work (lease_until) WHERE lease_until IS NOT NULL;
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY, pid INTEGER NOT NULL, region TEXT NOT NULL, queue TEXT NOT NULL,
    definition TEXT NOT NULL, started_at REAL NOT NULL
);
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""


class StaleState(RuntimeError):
    """The state database was written by an older HyperBatch whose layout this one cannot read."""


class Database:
    """One SQLite file, one connection per thread."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()
        conn = self.conn
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        has_jobs = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'").fetchone()
        if has_jobs and version != SCHEMA_VERSION:
            raise StaleState(
                f"{self.path} was written by an older HyperBatch (job ids were not numeric then); "
                f"stop its daemon (hyper local down) and move the file away to start afresh"
            )
        conn.executescript(SCHEMA)
        self._add_columns(conn)

    @staticmethod
    def _add_columns(conn: sqlite3.Connection) -> None:
        """Columns added since the layout's version: what a lease holds of the machine (cpus, mem in
        bytes, the GPUs' names), for SqliteWorkQueue's placement. Older files gain them, empty."""
        have = {row[1] for row in conn.execute("PRAGMA table_info(work)")}
        missing = [c for c in ("cpus INTEGER", "mem INTEGER", "gpus TEXT") if c.split()[0] not in have]
        if missing:
            conn.execute("BEGIN IMMEDIATE")
            have = {row[1] for row in conn.execute("PRAGMA table_info(work)")}  # another process may have been first
            for column in missing:
                if column.split()[0] not in have:
                    conn.execute(f"ALTER TABLE work ADD COLUMN {column}")
            conn.execute("COMMIT")

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self):
        """One write transaction. A full disk (or a store that may grow no more) is StorageFull, which the
        API answers 507: the write did not happen, and the caller is told why in words.

        Inside `together` it is a savepoint of that transaction instead: all or nothing of it
        stays, and it is committed with the rest."""
        conn = self.conn
        if getattr(self._local, "after", None) is not None:
            conn.execute("SAVEPOINT one_write")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK TO one_write")
                    conn.execute("RELEASE one_write")
                raise
            conn.execute("RELEASE one_write")
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back already (it does on a full disk)
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL:  # the primary code, whatever the extended one
                raise StorageFull(f"the job store's disk is full ({exc}): nothing was changed; "
                                  f"free some space on it and try again") from None
            raise

    @contextmanager
    def together(self):
        """The writes made in it (this thread's, by the store and the queue alike) as one transaction:
        a group commit, all of it or none of it, whatever stops the process half way. What is to happen
        once they are committed (`after_commit`: waking idle workers) waits for the commit."""
        if getattr(self._local, "after", None) is not None:
            yield  # already inside one: part of it
            return
        after: list = []
        try:
            with self.write():  # begins the transaction; the writes inside join it (savepoints)
                self._local.after = after
                yield
        finally:
            self._local.after = None
        for call in after:
            call()

    def after_commit(self, call) -> None:
        """Call `call` once what this thread writes now is committed: at once outside `together`."""
        after = getattr(self._local, "after", None)
        if after is None:
            call()
        else:
            after.append(call)


class SqliteJobStore:
    def __init__(self, db: Database):
        self.db = db

    def reserve_ids(self, n: int) -> int:
        """n consecutive sequence numbers from the one counter row; returns the first."""
        with self.db.write() as conn:
            row = conn.execute("SELECT last FROM sequence WHERE name = 'jobs'").fetchone()
            first = (row[0] if row else 0) + 1
            check_reservation(first, n)
            conn.execute(
                "INSERT INTO sequence (name, last) VALUES ('jobs', ?) "
                "ON CONFLICT (name) DO UPDATE SET last = excluded.last",
                (first + n - 1,),
            )
        return first

    def create(self, docs: list[dict], edges: list[tuple[str, str]], workflow: dict | None = None) -> None:
        with self.db.write() as conn:
            if workflow is not None:
                conn.execute("INSERT OR REPLACE INTO workflows (owner, name, doc) VALUES (?, ?, ?)",
                             (workflow["owner"], workflow["name"], json.dumps(workflow)))
            try:
                conn.executemany(
                    "INSERT INTO jobs (id, owner, queue, state, doc) VALUES (?, ?, ?, ?, ?)",
                    [(int(d["id"]), d["owner"], d["queue"], d["state"], json.dumps(d)) for d in docs],
                )
            except sqlite3.IntegrityError:
                raise Conflict("a job with one of these ids exists already") from None
            conn.executemany("INSERT OR IGNORE INTO edges (parent, child) VALUES (?, ?)", edges)
            conn.executemany(
                "INSERT INTO events (job_id, queue, old_state, new_state) VALUES (?, ?, NULL, ?)",
                [(d["id"], d["queue"], d["state"]) for d in docs],
            )
            _notices(conn, [n for d in docs for n in notices.of_change(None, d)])
            tally: dict[tuple[str, str], int] = {}
            for d in docs:
                tally[(d["queue"], d["state"])] = tally.get((d["queue"], d["state"]), 0) + 1
            _count(conn, tally)

    def workflow(self, owner: str, name: str) -> dict:
        row = self.db.conn.execute("SELECT doc FROM workflows WHERE owner = ? AND name = ?", (owner, name)).fetchone()
        if row is None:
            raise NotFound(f"no workflow {name} of {owner}")
        return json.loads(row[0])

    def workflows(self, owner: str) -> list[dict]:
        rows = self.db.conn.execute("SELECT doc FROM workflows WHERE owner = ?", (owner,))
        return sorted((json.loads(doc) for (doc,) in rows), key=lambda r: r["created_at"], reverse=True)

    def add_edges(self, edges: list[tuple[str, str]]) -> None:
        with self.db.write() as conn:
            conn.executemany("INSERT OR IGNORE INTO edges (parent, child) VALUES (?, ?)", edges)

    def get(self, job_id: str, consistent: bool = True) -> dict:
        row = self.db.conn.execute("SELECT doc FROM jobs WHERE id = ?", (_key(job_id),)).fetchone()
        if row is None:
            raise NotFound(f"Unknown Job Id {job_id}")
        return json.loads(row[0])

    def beat(self, job_id: str, run: str, at: float) -> None:
        with self.db.write() as conn:
            conn.execute("INSERT INTO beats (job_id, run, at) VALUES (?, ?, ?) "
                         "ON CONFLICT (job_id, run) DO UPDATE SET at = excluded.at", (job_id, run, at))
            conn.execute("DELETE FROM beats WHERE at < ?", (at - BEAT_KEPT_SECONDS,))

    def beats(self, job_id: str) -> dict[str, float]:
        return dict(self.db.conn.execute("SELECT run, at FROM beats WHERE job_id = ?", (job_id,)).fetchall())

    def script(self, doc: dict) -> str | None:
        return doc["script"]  # kept in the document: SQLite has no item size limit to mind

    def get_many(self, job_ids: Iterable[str]) -> dict[str, dict]:
        ids = [k for k in dict.fromkeys(_key(j) for j in job_ids) if k is not None]
        out: dict[str, dict] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for (doc,) in self.db.conn.execute(f"SELECT doc FROM jobs WHERE id IN ({marks})", chunk):
                d = json.loads(doc)
                out[d["id"]] = d
        return out

    def update(self, job_id: str, expect: Expect, change: Change) -> dict:
        with self.db.write() as conn:
            row = conn.execute("SELECT doc FROM jobs WHERE id = ?", (_key(job_id),)).fetchone()
            if row is None:
                raise NotFound(f"Unknown Job Id {job_id}")
            old = json.loads(row[0])
            new = apply(old, expect, change)
            conn.execute(
                "UPDATE jobs SET state = ?, queue = ?, doc = ? WHERE id = ?",
                (new["state"], new["queue"], json.dumps(new), int(job_id)),
            )
            if (new["state"], new["queue"]) != (old["state"], old["queue"]):
                conn.execute(
                    "INSERT INTO events (job_id, queue, old_state, new_state) VALUES (?, ?, ?, ?)",
                    (job_id, new["queue"], old["state"], new["state"]),
                )
                _count(conn, {(old["queue"], old["state"]): -1, (new["queue"], new["state"]): 1})
            _notices(conn, notices.of_change(old, new))  # an array's tasks too (-m j), which change no state
        return new

    def query(self, *, owner=None, queue=None, states=None, limit=100, next=None) -> Page:
        """Newest first. A listing of unfinished jobs only goes through the partial indexes of active
        jobs, so it reads what it lists however many finished jobs the table holds."""
        where, args = [], []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if queue is not None:
            where.append("queue = ?")
            args.append(queue)
        if states:
            states = sorted(set(states))
            if set(states) <= set(ACTIVE):
                where.append(ACTIVE_TERM)
            if set(states) != set(ACTIVE):
                where.append(f"state IN ({','.join('?' * len(states))})")
                args.extend(states)
        if next:
            before = _key(next)
            if before is None:
                return Page([], None)
            where.append("id < ?")
            args.append(before)
        sql = "SELECT doc FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self.db.conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit + 1)).fetchall()
        docs = [json.loads(r[0]) for r in rows[:limit]]
        return Page(docs, docs[-1]["id"] if len(rows) > limit else None)

    def dependents(self, parent_id: str) -> list[str]:
        rows = self.db.conn.execute("SELECT child FROM edges WHERE parent = ?", (parent_id,))
        return [r[0] for r in rows]

    def counts(self, queue: str) -> dict[str, int]:
        """Jobs per state in `queue`, from the counters kept with every write (no job is read)."""
        rows = self.db.conn.execute("SELECT state, n FROM queue_counts WHERE queue = ? AND n > 0", (queue,))
        return dict(rows.fetchall())

    # The local Events adapter: what DynamoDB Streams is on AWS (hyperbatch.core.ports.EventLog).
    def events_after(self, seq: int, limit: int = 1000) -> list[tuple[int, Event]]:
        """Every event after `seq`, handled or not (tests read the changes a flow made)."""
        rows = self.db.conn.execute(
            "SELECT seq, job_id, old_state, new_state, queue FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [(r[0], Event(r[1], r[2], r[3], r[4])) for r in rows]

    def due_events(self, now: float, limit: int = 1000) -> list[PendingEvent]:
        """Events not yet handled whose (next) try is due, oldest first; parked ones are left out."""
        rows = self.db.conn.execute(
            "SELECT seq, job_id, old_state, new_state, queue, tries FROM events "
            "WHERE parked = 0 AND next_at <= ? ORDER BY seq LIMIT ?",
            (now, limit),
        )
        return [PendingEvent(r[0], Event(r[1], r[2], r[3], r[4]), r[5]) for r in rows]

    def events_done(self, seqs: list[int]) -> None:
        """Delete events whose handling has committed."""
        if seqs:
            with self.db.write() as conn:
                conn.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in seqs])

    def event_failed(self, seq: int, error: str, retry_at: float, park: bool) -> None:
        """Count a failed try of an event: due again at `retry_at`, or parked."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE events SET tries = tries + 1, next_at = ?, parked = ?, error = ? WHERE seq = ?",
                (retry_at, int(park), error[:1000], seq),
            )

    def parked_events(self) -> int:
        return int(self.db.conn.execute("SELECT COUNT(*) FROM events WHERE parked = 1").fetchone()[0])

    def unpark_events(self) -> int:
        """Give every parked event a fresh round of tries (the daemon does at start); returns how many."""
        with self.db.write() as conn:
            return conn.execute("UPDATE events SET parked = 0, tries = 0, next_at = 0 WHERE parked = 1").rowcount

    # The local outbox of notices (mail, webhooks), delivered by the daemon (hyperbatch.services.notify).
    def due_notices(self, now: float, limit: int = 100) -> list[tuple[int, notices.Delivery, int]]:
        """(seq, delivery, failed tries) of the notices whose (next) try is due, oldest first."""
        rows = self.db.conn.execute(
            "SELECT seq, channel, target, notice, tries FROM notices WHERE next_at <= ? ORDER BY seq LIMIT ?",
            (now, limit))
        return [(r[0], notices.Delivery(r[1], r[2], notices.Notice(**json.loads(r[3]))), r[4]) for r in rows]

    def notice_done(self, seq: int) -> None:
        """Forget a notice: delivered, or given up on."""
        with self.db.write() as conn:
            conn.execute("DELETE FROM notices WHERE seq = ?", (seq,))

    def notice_failed(self, seq: int, error: str, retry_at: float) -> None:
        with self.db.write() as conn:
            conn.execute("UPDATE notices SET tries = tries + 1, next_at = ?, error = ? WHERE seq = ?",
                         (retry_at, error[:1000], seq))


def _notices(conn: sqlite3.Connection, deliveries: list[notices.Delivery]) -> None:
    if not deliveries:
        return  # most writes: nothing to tell, and no statement to run
    conn.executemany("INSERT INTO notices (channel, target, notice) VALUES (?, ?, ?)",
                     [(d.channel, d.target, json.dumps(asdict(d.notice))) for d in deliveries])


def _key(job_id: object) -> int | None:
    """The jobs table's key of an id; None for text that is no job id (so it matches nothing)."""
    return int(str(job_id)) if valid_job_id(job_id) else None


def _count(conn: sqlite3.Connection, deltas: dict[tuple[str, str], int]) -> None:
    conn.executemany(
        "INSERT INTO queue_counts (queue, state, n) VALUES (?, ?, ?) "
        "ON CONFLICT (queue, state) DO UPDATE SET n = n + excluded.n",
        [(q, st, d) for (q, st), d in deltas.items() if d],
    )


PLACEMENT_WINDOW = 256  # queued items a claim looks through, in start order, for one that fits


class SqliteWorkQueue:
    """A lease table: claiming sets `lease_until`; an item is deleted only by `ack`.

    `clock` (wall-clock seconds, time.time by default) times leases and delays; a test passes a fake one.
    `wakeups` (hyperbatch.adapters.local.wake): every change that makes work claimable wakes the
    queue's waiting workers once it has committed (under placement by resources, a lease that ends
    wakes every queue's: work that did not fit may fit now); without it `wait` sleeps its whole timeout.
    """

    def __init__(self, db: Database, clock=time.time, machine: Machine | None = None,
                 wakeups: Wakeups | None = None):
        self.db, self.clock, self.wakeups = db, clock, wakeups
        self.machine = machine  # what jobs may use at once: claims place work by resources (None: one at a time each)
        self._local = threading.local()  # a waiter per thread and queue (tests run agents as threads)

    def send(self, queue, job_id, lo, hi, attempt, priority=0):
        self.send_many([(queue, job_id, lo, hi, attempt, priority)])

    def send_many(self, items):
        now = self.clock()
        with self.db.write() as conn:
            conn.executemany(
                "INSERT INTO work (queue, job_id, lo, hi, attempt, priority, visible_at) VALUES (?,?,?,?,?,?,?)",
                [(*item, now) for item in items],
            )
        for queue in {item[0] for item in items}:
            self._wake(queue)

    def _wake(self, queue: str, freed: bool = False) -> None:
        """Wake the waiters of `queue` once the change is committed; when a lease ended (`freed`) under
        placement by resources, those of every queue, since what the lease held may now let another
        queue's work fit."""
        wakeups = self.wakeups
        if wakeups is None:
            return
        if freed and self.machine is not None:
            self.db.after_commit(wakeups.wake_all)
        else:
            self.db.after_commit(lambda: wakeups.wake(queue))

    def wait(self, queue: str, timeout: float) -> bool:
        """Until work is sent to `queue` (True) or `timeout` passes (False), and no later than when an
        item given back with a delay becomes claimable. The first wait makes the FIFO and returns at once."""
        if self.wakeups is None:
            time.sleep(timeout)
            return False
        waiters: dict[str, Waiter] = self._local.__dict__.setdefault("waiters", {})
        waiter = waiters.get(queue)
        if waiter is None:
            waiters[queue] = self.wakeups.waiter(queue)
            return True
        row = self.db.conn.execute(
            "SELECT MIN(visible_at) FROM work WHERE queue = ? AND lease_until IS NULL AND visible_at > ?",
            (queue, self.clock()),
        ).fetchone()
        if row[0] is not None:
            timeout = min(timeout, max(0.0, row[0] - self.clock()))
        return waiter.wait(timeout)

    def reprioritise(self, job_id: str, priority: int) -> None:
        with self.db.write() as conn:
            conn.execute("UPDATE work SET priority = ? WHERE job_id = ? AND lease_until IS NULL", (priority, job_id))

    def claim(self, queue, worker, max_tasks, lease_seconds):
        now = self.clock()
        # Idle workers poll often: look without the write lock first.
        if self.db.conn.execute(
            "SELECT 1 FROM work WHERE queue = ? AND lease_until IS NULL AND visible_at <= ? LIMIT 1", (queue, now)
        ).fetchone() is None:
            return None
        with self.db.write() as conn:
            if self.machine is None:
                row = conn.execute(
                    "SELECT id, job_id, lo, hi, attempt, priority FROM work "
                    "WHERE queue = ? AND lease_until IS NULL AND visible_at <= ? "
                    "ORDER BY priority DESC, id LIMIT 1",
                    (queue, now),
                ).fetchone()
                held, gpus = Amount(0), ""
            else:
                row, held, gpus = self._place(conn, self.machine, queue, now)
            if row is None:
                return None
            item_id, job_id, lo, hi, attempt, priority = row
            until = now + lease_seconds
            if hi - lo > max_tasks:
                # Take the head of the range; the rest stays visible for other workers.
                conn.execute("UPDATE work SET lo = ? WHERE id = ?", (lo + max_tasks, item_id))
                hi = lo + max_tasks
                item_id = conn.execute(
                    "INSERT INTO work (queue, job_id, lo, hi, attempt, priority, visible_at, lease_until, worker, "
                    "cpus, mem, gpus) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (queue, job_id, lo, hi, attempt, priority, now, until, worker, held.cpus, held.mem, gpus),
                ).lastrowid
            else:
                conn.execute("UPDATE work SET lease_until = ?, worker = ?, cpus = ?, mem = ?, gpus = ? WHERE id = ?",
                             (until, worker, held.cpus, held.mem, gpus, item_id))
        return WorkItem(str(item_id), queue, job_id, lo, hi, attempt, receipt=worker, gpus=gpus)

    @staticmethod
    def _place(conn: sqlite3.Connection, machine: Machine, queue: str, now: float):
        """(the row to claim, what it holds of the machine, its GPUs) or (None, ...) when no queued
        work of `queue` fits what the leases in force leave free (hyperbatch.core.resources.pick:
        work in start order across all queues, so one that has starved holds back the rest)."""
        used = conn.execute(
            "SELECT COALESCE(SUM(cpus), 0), COALESCE(SUM(mem), 0), group_concat(gpus) FROM work "
            "WHERE lease_until IS NOT NULL"
        ).fetchone()
        taken = {g for g in (used[2] or "").split(",") if g}
        free_gpus = [g for g in machine.gpus if g not in taken]
        free = machine.amount.minus(Amount(used[0], used[1], 0))._replace(gpus=len(free_gpus))
        # Stepped through lazily, in the order of the work_start index: a claim reads (and decodes the
        # request of) only the items before the one it takes, not the whole backlog.
        rows = conn.execute(
            "SELECT w.id, w.job_id, w.lo, w.hi, w.attempt, w.priority, w.queue, w.visible_at, "
            "json_extract(j.doc, '$.resources') FROM work w INDEXED BY work_start "
            "LEFT JOIN jobs j ON j.id = CAST(w.job_id AS INTEGER) "
            "WHERE w.lease_until IS NULL AND w.visible_at <= ? ORDER BY w.priority DESC, w.id LIMIT ?",
            (now, PLACEMENT_WINDOW),
        )
        candidates = (
            Candidate(r, resources.request_of(json.loads(r[8]) if r[8] else None), now - r[7], r[6] == queue)
            for r in rows
        )
        chosen = resources.pick(candidates, free, machine.starve_after, machine.amount)
        rows.close()  # done with the walk before the claim writes to the table it walks
        if chosen is None:
            return None, Amount(0), ""
        request = chosen.request
        gpus = ",".join(resources.assign_gpus(free_gpus, request.gpus))
        return chosen.key[:6], request, gpus

    # A lease is named by (item id, worker): once the reconciler has taken an item
    # back, its old worker can neither extend nor delete it.
    def extend(self, item, lease_seconds):
        with self.db.write() as conn:
            cur = conn.execute(
                "UPDATE work SET lease_until = ? WHERE id = ? AND worker = ?",
                (self.clock() + lease_seconds, int(item.id), item.receipt),
            )
        return cur.rowcount == 1

    def ack(self, item):
        with self.db.write() as conn:
            conn.execute("DELETE FROM work WHERE id = ? AND worker IS ?", (int(item.id), item.receipt))
        if self.machine is not None:
            self._wake(item.queue, freed=True)

    def flush(self) -> None:
        """Nothing is buffered here: `ack` deletes at once."""

    def split(self, item: WorkItem, lo: int, hi: int) -> WorkItem:
        """Keep [lo, hi) under this lease and put [hi, item.hi) back for other workers."""
        with self.db.write() as conn:
            conn.execute("UPDATE work SET lo = ?, hi = ? WHERE id = ?", (lo, hi, int(item.id)))
            if hi < item.hi:
                conn.execute(
                    "INSERT INTO work (queue, job_id, lo, hi, attempt, priority, visible_at) "
                    "SELECT queue, job_id, ?, ?, attempt, priority, ? FROM work WHERE id = ?",
                    (hi, item.hi, self.clock(), int(item.id)),
                )
        if hi < item.hi:
            self._wake(item.queue)
        return WorkItem(item.id, item.queue, item.job_id, lo, hi, item.attempt, item.receipt)

    def release(self, item, lo=None, delay=0.0):
        with self.db.write() as conn:
            conn.execute(
                "UPDATE work SET lo = ?, lease_until = NULL, worker = NULL, visible_at = ? WHERE id = ? AND worker = ?",
                (item.lo if lo is None else lo, self.clock() + delay, int(item.id), item.receipt),
            )
        if not delay or self.machine is not None:
            self._wake(item.queue, freed=True)

    def requeue(self, item: WorkItem, lo: int, attempt: int) -> None:
        """Make a lost item claimable again from position `lo` with a new attempt number."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE work SET lo = ?, attempt = ?, lease_until = NULL, worker = NULL, visible_at = ? WHERE id = ?",
                (lo, attempt, self.clock(), int(item.id)),
            )
        self._wake(item.queue, freed=True)

    def expired(self, now):
        rows = self.db.conn.execute(
            "SELECT id, queue, job_id, lo, hi, attempt, worker FROM work WHERE lease_until < ?", (now,)
        )
        return [WorkItem(str(r[0]), r[1], r[2], r[3], r[4], r[5], receipt=r[6]) for r in rows]

    def in_flight(self, queue):
        row = self.db.conn.execute(
            "SELECT COUNT(*) FROM work WHERE queue = ? AND lease_until IS NOT NULL", (queue,)
        ).fetchone()
        return int(row[0])

    def jobs_with_work(self, job_ids: list[str]) -> set[str]:
        marks = ",".join("?" * len(job_ids))
        rows = self.db.conn.execute(f"SELECT DISTINCT job_id FROM work WHERE job_id IN ({marks})", job_ids)
        return {r[0] for r in rows}

    def backlog(self, queue):
        row = self.db.conn.execute(
            "SELECT COALESCE(SUM(hi - lo), 0) FROM work WHERE queue = ? AND lease_until IS NULL", (queue,)
        ).fetchone()
        return int(row[0])

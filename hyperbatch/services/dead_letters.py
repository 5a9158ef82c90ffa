"""The reconciler on AWS, where the queue (SQS) can neither list lost leases nor be searched.

Local mode's reconciler (hyperbatch.services.lease_recovery) asks the lease table for
expired leases and for jobs with no work item. On AWS neither question is
needed, and no index is searched for them: sends come from the table's
stream (hyperbatch.services.stream_release), so no store write can lose its send, and
every RUNNING job or chunk always has a message that comes back to check on
it (a redelivered message whose worker still beats is released again with a
delay of one lease, not deleted: `Dispatcher.recover_lost`), so a worker
that dies is found by SQS redelivery. Each run (the reconciler function,
once a minute) does two things:

1. Dead letters. A message received MAX_RECEIVE_COUNT times without being
   deleted lands in the queue's DLQ (a poison message: whatever handles it
   keeps crashing). Its job is marked FAILED, exit status -1, reason
   "dead-lettered after 5 receives" (for an array: the tasks the message
   carried and nothing else), unless the job moved on since (the letter is
   a leftover) or its worker still beats: then a fresh copy of the letter
   goes back to the queue, visible after one lease (at most 900 s), to check
   on the job again, as the redelivered message would have. Then the letter
   is deleted.

2. Parked stream batches. A batch of the table's stream that the release
   function kept failing on (its retries exhausted) is parked by the event
   source mapping as a message on the release-failures queue naming the
   records (shard and sequence numbers). They are read back from the stream
   (kept 24 hours) and handled again exactly as the release function would:
   dependency release, sends, job counters. A batch that fails again is
   parked again from its first failed record; one the stream no longer has
   is logged as lost and dropped.

3. Registered runs (hyperbatch.core.cadence). A run that outlasts half its
   claim's lease is registered by its worker, and from then on its message
   stays hidden for hours: SQS no longer watches it, this does. An entry
   whose worker is gone (`Census`: its Batch job ended, its on-premises
   record went stale) or whose promised lease has passed has its run taken
   back as a lost worker's (`Dispatcher._recover_job`, `_recover_chunk`:
   the PBS rerun rules, `lost_runs`), if the store still gives the run to
   that worker, and its message deleted (the entry holds its receipt);
   then the entry is dropped. A live worker's entry costs nothing here but
   its share of the one Query.

Costs per run: one ReceiveMessage per queue's DLQ and one on the
release-failures queue, one Query of the registered runs (eventually
consistent: half a read unit per 4 KB, about twenty entries) and DescribeJobs
(no charge); nothing else when there is nothing to repair (a
dead letter costs a GetItem and an UpdateItem or a SendMessage; a parked
batch a GetShardIterator, a GetRecords and what the release function would
have spent on it).
"""

from __future__ import annotations

import logging
import time

from hyperbatch.core import exits
from hyperbatch.services.dispatch import Dispatcher
from hyperbatch.core.errors import NotFound, StaleTransition
from hyperbatch.services.metrics import JobMetrics
from hyperbatch.services.release import release_due
from hyperbatch.core.model import Change, Expect, is_array
from hyperbatch.core.ports import Census, RunRegister, WorkItem
from hyperbatch.services.scheduler import Scheduler
from hyperbatch.core.states import JobState
from hyperbatch.core.tasks import fail_tasks, update_array
from hyperbatch.services.stream_release import redrive

log = logging.getLogger("hyperbatch.reconcile")

MAX_DEAD_LETTERS = 1000  # per queue and run; the rest wait for the next run
MAX_PARKED_BATCHES = 20  # per run (each up to the mapping's batch size of records)

FAILED, WATCHED, LEFTOVER = "failed", "watched", "leftover"
WORKER_STOPPED = "its container or machine stopped"


def dead_letter_reason(receives: int) -> str:
    return f"dead-lettered after {receives} receives"


class Reconciler:
    """`scheduler` and `dispatcher` hold the stream-sent queue (their store writes send through the
    stream); `queue` is the SqsWorkQueue itself (dead letters, copies of letters, re-driven sends).
    `parked` reads the release-failures queue and the stream (None: no re-drive), `decode` reads one of
    its records (hyperbatch.adapters.aws.stream: ParkedBatches, decode_record). `runs` are the
    registered runs and `census` says which of their workers are gone (None: no such step)."""

    def __init__(self, scheduler: Scheduler, dispatcher: Dispatcher, queue, parked=None, decode=None,
                 runs: RunRegister | None = None, census: Census | None = None, notices=None):
        self.scheduler, self.dispatcher = scheduler, dispatcher
        self.store, self.queue, self.parked, self.decode = scheduler.store, queue, parked, decode
        self.runs, self.census = runs, census
        self.notices = notices  # where re-driven state changes are told (hyperbatch.services.stream_release)
        self.metrics = JobMetrics()  # of the records re-driven by the last run

    def run_once(self) -> dict[str, int]:
        out = {"dead_lettered": 0, "watched": 0, "redriven": 0}
        for pool in self.scheduler.config.pools:  # every work queue has a dead-letter queue of its own
            found = self.dead_letters(pool.name)
            out["dead_lettered"] += found[FAILED]
            out["watched"] += found[WATCHED]
        self.metrics = JobMetrics()
        out["deferred_released"] = release_due(self.scheduler)  # qsub -a jobs whose time has come
        if self.parked is not None:
            out["redriven"] = self.redrive()["records"]
        if self.runs is not None:
            out["runs_taken_back"] = self.registered_runs()
        return out

    # ---- 1. dead letters --------------------------------------------------------------------
    def dead_letters(self, queue: str) -> dict[str, int]:
        """Handle the queue's dead letters: {"failed": jobs or chunks failed, "watched": copies sent back, ...}."""
        found = {FAILED: 0, WATCHED: 0, LEFTOVER: 0}
        handled = 0
        while handled < MAX_DEAD_LETTERS:
            letters = self.queue.dead_letters(queue, max_messages=min(100, MAX_DEAD_LETTERS - handled))
            if not letters:
                break
            for item, receipt in letters:
                handled += 1
                if item is None:  # not a work item: left for a human (hidden for a while, then back)
                    log.warning("unreadable dead letter in queue %s", queue)
                    continue
                verdict = self._judge(item)
                if verdict == WATCHED:
                    self._watch(item)
                found[verdict] += 1
                self.queue.drop_dead_letter(queue, receipt)
        return found

    def _watch(self, item: WorkItem) -> None:
        """A fresh copy of the letter, visible after one lease, that comes back to check on the live worker.

        It is a copy of a redelivered item (`copy_of` its id, as `SqsWorkQueue.release` makes one): it
        comes back as a redelivered item with the letter's id, so it goes to `Dispatcher.recover_lost`
        (put back again while the worker beats, recovered once it stopped), and an array chunk, keyed
        by the id, is still found.
        """
        delay = min(float(self.dispatcher.lease_seconds), float(self.queue.max_delay_seconds))
        self.queue._send(item.queue, item.job_id, item.lo, item.hi, item.attempt, getattr(item, "priority", 0),
                         delay, copy_of=item.id)

    def _judge(self, item: WorkItem) -> str:
        try:
            doc = self.store.get(item.job_id)
        except NotFound:
            return LEFTOVER
        if is_array(doc):
            return self._fail_tasks(item)
        state = doc["state"]
        if doc["attempt"] != item.attempt or state not in (JobState.QUEUED.value, JobState.RUNNING.value):
            return LEFTOVER  # moved on since
        if state == JobState.RUNNING.value and self.dispatcher.job_alive(doc):
            return WATCHED  # its worker still runs it and will record the result
        change = Change(set={"state": JobState.FAILED, "finished_at": time.time(),
                             "exit_status": exits.SCHEDULER_FAILURE, "reason": dead_letter_reason(self.queue.max_receive_count)})
        try:
            self.store.update(doc["id"], Expect.move(JobState.FAILED, state, attempt=item.attempt), change)
        except StaleTransition:
            return LEFTOVER
        return FAILED

    def _fail_tasks(self, item: WorkItem) -> str:
        """Fail what the letter carried (`tasks.fail_tasks`): its chunk if one ran and stopped beating,
        its retry, or the positions of its range that were never handed out."""
        verdict = {}

        def decide(doc: dict) -> Change | None:
            if item.id in doc["chunks"] and self.dispatcher.chunk_alive(doc, item.id):
                verdict["last"] = WATCHED
                return None
            change = fail_tasks(doc, item.id, item.lo, item.hi, item.attempt, exits.SCHEDULER_FAILURE)
            verdict["last"] = LEFTOVER if change is None else FAILED
            if change is not None:
                change.set["reason"] = f"tasks {dead_letter_reason(self.queue.max_receive_count)}"
            return change

        update_array(self.store, item.job_id, decide)
        return verdict.get("last", LEFTOVER)

    # ---- 3. registered runs -----------------------------------------------------------------
    def registered_runs(self) -> int:
        """Take back the registered runs whose worker is gone or whose promise passed; returns how many."""
        assert self.runs is not None
        entries = self.runs.entries()
        if not entries:
            return 0
        gone = self.census.gone({e["host"] for e in entries}) if self.census is not None else set()
        now, taken = time.time(), 0
        for entry in entries:
            if entry["host"] in gone:
                why = WORKER_STOPPED
            elif now >= entry["at"] + entry["lease"]:
                why = f"no renewal for {entry['lease']:g}s"
            else:
                continue  # its worker runs and renews: nothing to do
            if self.dispatcher.take_back(entry, why):
                taken += 1
                log.warning("took back job %s %s: worker %s lost (%s)", entry["job_id"], entry["chunk"] or "",
                            entry["host"], why)
            self.runs.drop(entry["host"], entry["at"])
        self.queue.flush()
        return taken

    # ---- 2. parked stream batches -----------------------------------------------------------
    def redrive(self) -> dict[str, int]:
        """Stream batches the release function gave up on, handled again (hyperbatch.services.stream_release.redrive)."""
        return redrive(self.parked, self.scheduler, self.queue, self.store, self.decode, most=MAX_PARKED_BATCHES,
                       metrics=self.metrics, notices=self.notices)

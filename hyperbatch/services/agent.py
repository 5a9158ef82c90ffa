"""The worker agent: claim work, run it in series, report, and exit when idle.

`worker_image/start.sh` runs it in a loop (`python -m hyperbatch.wiring.worker`, which builds it).
Exit codes tell start.sh what to do next: 0 idle (stop), 3 misconfigured (stop),
anything else a crash (restart).

Two threads watch the current run: the heartbeat thread renews its lease and
learns of cancels and of a lease taken back, at the cadence of
hyperbatch.core.cadence (a beat a second locally; on AWS reads that grow
apart with the run's age and a registration once it outlasts half its
claim's lease); the supervisor, which does no
I/O (a store that hangs cannot hold it up), enforces walltime, stop requests
and the lease (`Lease`: fencing) by killing the job's process group. The main
thread only starts processes and waits for them, so a tiny task costs little
more than its fork and exec.

Acks may be buffered by the queue (SQS deletes in batches): the agent flushes
them when it goes idle, after each heartbeat (so a long job does not hold back
the acks of the jobs before it) and when it stops, whatever stops it, so a
worker that exits leaves no acknowledged message behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
from queue import Queue
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from hyperbatch.core import environment, exits, isolation, limits, outputs, resources, staging
from hyperbatch.core.cadence import Cadence
from hyperbatch.core.errors import NotFound, why
from hyperbatch.core.ids import display_id
from hyperbatch.core.signals import number as signal_number
from hyperbatch.support import spawn
from hyperbatch.support.files import atomic_write
from hyperbatch.support.processes import (STARTING, JobRecord, JobUser, group_alive, group_rss, record_bytes,
                                          signal_group)
from hyperbatch.services.dispatch import Dispatcher, Outcome, Run, Signals
from hyperbatch.core.ports import LogStore, Staged, Stager, WorkQueue

if TYPE_CHECKING:
    from hyperbatch.services.slots import Room

log = logging.getLogger("hyperbatch.agent")

EXIT_IDLE, EXIT_MISCONFIGURED = 0, 3
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
TARGET_CHUNK_SECONDS = 1.0  # array chunks grow until one takes about this long
SUPERVISOR_POLL = 0.05  # seconds between the supervisor's looks (at most a quarter of the heartbeat)
MEM_POLL = 0.2  # seconds between looks at a job's resident memory (only jobs that ask for -l mem)
STILL_NS = 50_000_000  # a TMPDIR unchanged this long is known empty by its modification time (`_reset`)


@dataclass
class Settings:
    queue: str
    idle_timeout: float
    lease_seconds: float
    heartbeat_seconds: float
    chunk_size: int
    work_root: Path
    definition_env: dict
    pid_file: Path | None = None  # the job file (hyperbatch.support.processes): the running job's group and run
    job_user: str | None = None  # run jobs as this user (HYPER_JOB_USER), not as the agent's
    # Writes a finished run's stream to its file (stream, path, mode): local mode's output delivery.
    deliver: Callable[[str, int | None, str, str, int], None] | None = None
    # Copies a job's files in before each run and out after it (core/staging.py); None: this worker
    # cannot stage, and a job that asks for staging fails before it runs rather than run without its files.
    stager: Stager | None = None
    host: str = field(default_factory=socket.gethostname)
    assigns_gpus: bool = False  # claims hand out GPUs (local mode on a machine with some): CUDA_VISIBLE_DEVICES
    poll_min: float = 0.002
    # The longest pause between an idle worker's claims (`WorkQueue.wait`): a queue that wakes its
    # waiters on work (local mode) makes this a slow fallback; elsewhere an idle poll is one cheap read.
    poll_max: float = 0.02


class Lease:
    """The worker's side of fencing: until when the current run may go on, by this worker's own clock.

    A run is renewed when its worker's start, then each heartbeat, reaches
    the store: at creation and by `renew(sent)`, with the monotonic time
    taken *before* that request went out, so a renewal never counts from
    later than the moment the store recorded it. `expired()` once `lease - margin` seconds have
    passed since the last renewal, the margin being the cadence's (`Cadence.margin`, half a
    heartbeat): the supervisor then kills the job, and the main thread
    starts nothing more for the run.

    The timing argument. Let r be when the last successful renewal was sent.
    The beat the store recorded, b, was stamped after r. Another worker (or
    the reconciler) takes the run back only when its own clock is past
    b + lease (Dispatcher.alive), and (but for a duplicate SQS delivery) only
    once the queue's lease, renewed after r, ran out: not before r + lease.
    This worker's supervisor kills the job's process group (SIGKILL) at
    r + lease - margin, plus at most one look (SUPERVISOR_POLL, at most a
    quarter of the heartbeat). So the job is dead at least a quarter of a
    heartbeat before any other run of it can start, provided the two
    machines' clocks differ by less than that and the supervisor gets the CPU
    at all. Beats start a heartbeat apart (`Heartbeat`), and the
    configuration keeps the heartbeat at most a third of the lease, so a
    worker gives up only after two beats in a row did not come back in time.

    On AWS a run that registers (hyperbatch.core.cadence) is renewed with
    the long run lease instead (`renew(sent, run_lease)`), and may then also
    be taken back when its worker is gone: its container stopped, so its job
    with it. A registration is never sent once the lease has lapsed
    (`lapsed_at`): it would promise more time to a job being killed.

    A worker whose agent cannot run (SIGSTOP) cannot fence itself: in local
    mode the daemon kills its job before taking the run back (Dispatcher's
    `fence`); on AWS a frozen machine freezes its job with it, and once it
    runs again the supervisor finds the deadline passed and kills the job at
    its first look, while the main thread checks the lease before it starts
    anything. A run that comes back after it was taken records nothing (its
    writes are conditional: hyperbatch.services.dispatch).
    """

    def __init__(self, cadence: Cadence, clock=time.monotonic):
        self.margin, self.clock = cadence.margin, clock
        self.budget = cadence.claim_lease - self.margin
        self.renewed = clock()

    def renew(self, sent: float, lease_seconds: float | None = None) -> None:
        """A renewal sent at `sent` (this clock, read before the request) succeeded; `lease_seconds`:
        the lease it promised, when that is not the one before (a run registered: hyperbatch.core.cadence)."""
        if lease_seconds is not None:
            self.budget = lease_seconds - self.margin
        self.renewed = max(self.renewed, sent)

    def lapsed_at(self, sent: float) -> bool:
        """Whether the lease had run out by `sent`: a promise sent after that must not revive it."""
        return sent - self.renewed >= self.budget

    def expired(self) -> bool:
        return self.clock() - self.renewed >= self.budget


class Current:
    """What the supervisor watches: the process running now and why it should stop."""

    def __init__(self, signal_job=signal_group):
        self.signal_job = signal_job  # (process group, signal): JobUser.signal when jobs run as their own user
        self.lock = threading.Lock()
        self.proc: spawn.Child | subprocess.Popen | None = None
        self.index: int | None = None
        self.deadline: float | None = None
        self.killed_for: str | None = None  # "walltime", "mem", "cancel", "rerun", "lease" or "stop"
        self.killed_at = 0.0
        self.mem_limit = 0  # bytes the job asked for (-l mem); 0: not watched
        self.mem_peak = 0  # the most its process group held, as the supervisor saw it

    def set(self, proc, index, deadline, mem_limit: int = 0):
        with self.lock:
            self.proc, self.index, self.deadline, self.killed_for = proc, index, deadline, None
            self.mem_limit, self.mem_peak = mem_limit, 0

    def clear(self):
        with self.lock:
            self.proc = None

    def kill(self, why: str) -> None:
        """Stop the job's process group: SIGTERM, then SIGKILL after KILL_GRACE (`escalate`); a job whose
        lease ran out gets SIGKILL at once, since it must be dead before the lease ends (`Lease`)."""
        with self.lock:
            if self.proc is None or self.killed_for:
                return
            self.killed_for, self.killed_at = why, time.time()
            self.signal_job(self.proc.pid, signal.SIGKILL if why == "lease" else signal.SIGTERM)

    def signal(self, signum: int, index: int | None) -> None:
        """qsig: the signal to the running job's process group (to the task `index` only, if given)."""
        with self.lock:
            if self.proc is not None and (index is None or index == self.index):
                self.signal_job(self.proc.pid, signum)

    def escalate(self) -> None:
        with self.lock:
            if self.proc is not None and self.killed_for and time.time() - self.killed_at > KILL_GRACE:
                self.signal_job(self.proc.pid, signal.SIGKILL)


class Supervisor(threading.Thread):
    """Watches the current run: stop requests, walltime and the lease. Never waits on I/O.

    Its companion thread (`Heartbeat`) renews the lease; this one only looks
    at clocks and flags and kills, so a heartbeat that hangs on the store
    cannot keep it from killing a job whose lease runs out.
    """

    def __init__(self, dispatcher: Dispatcher, current: Current, heartbeat_seconds: float, stopping, flush=None):
        super().__init__(daemon=True, name="supervisor")
        self.current, self.stopping = current, stopping
        self.poll = min(SUPERVISOR_POLL, heartbeat_seconds / 4)
        self.run_: Run | None = None
        self.lease: Lease | None = None
        self.cancelled_all = False
        self.cancelled: frozenset[int] = frozenset()
        self.lease_lost = False
        self.heartbeat = Heartbeat(self, dispatcher, heartbeat_seconds, flush)
        self._halted = threading.Event()

    def start(self) -> None:
        super().start()
        self.heartbeat.start()

    def halt(self) -> None:
        """End both threads (their agent has stopped serving)."""
        self._halted.set()
        self.heartbeat.halt()

    def watch(self, run: Run | None, lease: Lease | None = None) -> None:
        self.run_, self.lease = run, lease
        self.cancelled_all, self.cancelled, self.lease_lost = False, frozenset(), False
        self.heartbeat.restart()

    def lost(self) -> bool:
        """Whether the run may no longer go on: taken back, or its lease ran out on this worker's clock."""
        lease = self.lease
        if lease is not None and lease.expired():
            self.lease_lost = True
        return self.lease_lost

    def run(self) -> None:
        next_mem = 0.0
        while not self._halted.wait(self.poll):
            current = self.current
            if self.stopping():
                current.kill("stop")  # asked for by a signal handler, which only sets a flag
            if self.run_ is None:
                continue
            if current.deadline is not None and current.proc is not None and time.time() > current.deadline:
                current.kill("walltime")
            proc = current.proc
            if current.mem_limit and proc is not None and time.monotonic() >= next_mem:
                # As PBS MoM polls: the group's resident memory, killed once over its -l mem.
                next_mem = time.monotonic() + MEM_POLL
                used = group_rss(proc.pid)
                current.mem_peak = max(current.mem_peak, used)
                if used > current.mem_limit:
                    current.kill("mem")
            if self.lost():
                current.kill("lease")
            current.escalate()


class Heartbeat(threading.Thread):
    """Beats for the watched run and acts on what the store answers (hyperbatch.core.cadence).

    Fine-grained (local mode, a dispatcher with no cadence): a renewal
    (`Dispatcher.heartbeat`) every `every` seconds. On AWS (the dispatcher's
    cadence registers runs): checks (`Dispatcher.check`, a read) that grow
    apart with the run's age, and the run's registration a third of the way through
    its claim's lease, renewed each half run lease (`Dispatcher.register`);
    a failed one is tried again a heartbeat later, never once the lease has
    run out on this worker's clock (the job is being killed then).

    Beats are due at fixed times, however long each one takes (a slow store
    does not stretch the interval, which the lease's margin counts on); one
    that takes longer delays only the next.
    """

    def __init__(self, supervisor: Supervisor, dispatcher: Dispatcher, every: float, flush=None):
        super().__init__(daemon=True, name="heartbeat")
        self.supervisor, self.dispatcher, self.every = supervisor, dispatcher, every
        self.flush = flush  # called after each heartbeat: sends acks the queue still buffers
        self._wake = threading.Event()
        self._halted = threading.Event()

    def halt(self) -> None:
        self._halted.set()
        self._wake.set()

    def restart(self) -> None:
        """A new run (or none) is watched: its first beat comes one interval from now."""
        self._wake.set()

    def run(self) -> None:
        cadence = self.dispatcher.cadence
        registers = cadence is not None and cadence.registers
        began = time.monotonic()
        check_at: float | None = None  # when the next check (a beat, fine-grained) is due; None: none yet
        renew_at: float | None = None  # when the run's next registration is due (AWS)
        registered = False
        while not self._halted.is_set():
            due = min((t for t in (check_at, renew_at) if t is not None), default=None)
            if self._wake.wait(self.every if due is None else max(0.0, due - time.monotonic())):
                self._wake.clear()
                began = time.monotonic()  # woken for a new run (or to end): its beats count from now
                check_at, registered = began + self.every, False
                renew_at = began + cadence.register_at if registers and cadence is not None else None
                continue
            supervisor = self.supervisor
            run, lease = supervisor.run_, supervisor.lease
            if run is None:
                check_at = renew_at = None
                continue
            now = time.monotonic()
            if check_at is None:
                check_at = now + self.every
                continue
            if registers and cadence is not None and renew_at is not None and now >= renew_at:
                renew_at, done = self._register(run, lease, cadence, registered)
                registered = registered or done
            if now < check_at:
                continue
            if registers and cadence is not None:
                check_at = now + cadence.check_gap(now - began)
                beat = self.dispatcher.check
            else:
                check_at = now + self.every
                beat = self.dispatcher.heartbeat
            sent = lease.clock() if lease is not None else 0.0
            try:
                signals = beat(run)
            except Exception as exc:  # a store hiccup must not kill the job; the next beat retries
                log.warning("heartbeat failed: %s", exc)
                continue
            if self.flush is not None:
                try:
                    self.flush()
                except Exception as exc:  # those messages come back and are acked again: never fatal
                    log.warning("flushing acks failed: %s", exc)
            if supervisor.run_ is not run:
                continue  # that run ended while we were beating: the answer is about work that is done
            if signals.lease_lost:
                supervisor.lease_lost = True
            elif lease is not None and not registers:
                lease.renew(sent)
            self._act(signals)

    def _register(self, run: Run, lease: Lease | None, cadence: Cadence, again: bool) -> tuple[float | None, bool]:
        """Register the run (or renew its registration): (when the next one is due, whether this one was made)."""
        sent = lease.clock() if lease is not None else 0.0
        if lease is not None and lease.lapsed_at(sent):
            return None, False  # the supervisor kills the job: nothing may promise it more time
        try:
            self.dispatcher.register(run, first=not again)
        except Exception as exc:  # tried again a heartbeat later, while the lease lasts
            log.warning("registering the run failed: %s", exc)
            return time.monotonic() + self.every, False
        if lease is not None and self.supervisor.run_ is run:
            lease.renew(sent, cadence.run_lease)
        return time.monotonic() + cadence.renew_every, True

    def _act(self, signals: Signals) -> None:
        """Kill, stop tasks, deliver qsig: what a beat's answer asks of the running job."""
        supervisor = self.supervisor
        supervisor.cancelled_all |= signals.cancel_all
        supervisor.cancelled = signals.cancelled_indices
        current = supervisor.current
        for name, index in signals.deliver:  # qsig
            current.signal(signal_number(name), index)
        if signals.lease_lost:
            current.kill("lease")
        elif signals.cancel_all or (current.index is not None and current.index in signals.cancelled_indices):
            current.kill("cancel")
        elif signals.rerun:
            current.kill("rerun")  # qrerun: the run ends here, and its end re-queues the job


class Agent:
    def __init__(self, dispatcher: Dispatcher, queue: WorkQueue, logs: LogStore, settings: Settings):
        self.dispatcher, self.queue, self.logs, self.settings = dispatcher, queue, logs, settings
        self.job_user = JobUser(settings.job_user)
        self.current = Current(self.job_user.signal)
        self.supervisor = Supervisor(dispatcher, self.current, settings.heartbeat_seconds, lambda: self.stopping,
                                     flush=self.flush)
        try:  # where a job whose submitter's home is unknown starts: the job user's, else the agent's
            user = pwd.getpwnam(settings.job_user) if settings.job_user else pwd.getpwuid(os.getuid())
            self._home: str | None = user.pw_dir
        except KeyError:
            self._home = None
        self._inherited = isolation.inherited(os.environ)  # what a job may take of the worker's environment
        self.places: dict | None = None  # the claimed item's TMPDIR, PBS_NODEFILE and home (`_item_places`)
        self.places_error: str | None = None  # why they could not be made
        self.chunk = 1  # work taken per claim: grows while it is quick (`_adapt`), so long work is not hoarded
        self.stopping: bool = False
        self._pid_fd: int | None = None  # the job file, while serving
        # Set when this agent is one slot of a worker that runs several jobs at once (hyperbatch.services.slots).
        self.room: Room | None = None
        self._room_gpus: list[str] = []  # the GPUs the current run holds of the room
        self._prepared: tuple[tuple, spawn.Program] | None = None  # the current item's program (`_program`)
        self._each: _Each | None = None  # what every run of the current item shares (`_prepare`)
        self._undelivered: list[tuple[dict, int | None, str]] = []  # runs whose output files are to write (`_deliver`)
        self._deliveries: Queue | None = None  # what the delivery thread is to write (`_hand_over`)
        # How its runs renew and fence (AWS: the dispatcher's; locally a renewal every heartbeat).
        self._cadence = dispatcher.cadence or Cadence.fine(settings.lease_seconds, settings.heartbeat_seconds)

    def serve(self) -> int:
        """Claim and run work until idle for `idle_timeout` (or stopped); the exit code for start.sh.

        Signal handlers are installed only from the main thread (Python allows
        no other); an agent served from another thread is stopped with `stop()`.
        """
        self._kill_orphan()
        self._take_back_orphan()
        self._pid_fd = os.open(self.settings.pid_file, os.O_RDWR | os.O_CREAT, 0o600) if self.settings.pid_file else None
        self.supervisor.start()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._stop)
            signal.signal(signal.SIGINT, self._stop)
        try:
            return self._serve()
        finally:
            self.supervisor.halt()
            try:
                self.flush()  # idle, stopped by a signal or crashing: no acknowledged message is left behind
            except Exception as exc:  # not worth a crash: those messages come back and are acked again
                log.warning("flushing acks failed: %s", exc)
            if self._pid_fd is not None:
                os.close(self._pid_fd)
                self._pid_fd = None

    def flush(self) -> None:
        """Send the acks the queue still buffers (the dispatcher's queue too, should it be another object)."""
        self.queue.flush()
        if self.dispatcher.queue is not self.queue:
            self.dispatcher.queue.flush()

    def _serve(self) -> int:
        idle_since, poll = time.time(), self.settings.poll_min
        busy = False  # worked since the last empty claim
        while not self.stopping:
            if self.room is not None and not self.room.has_a_cpu():
                self.room.wait(self.settings.poll_max * 50)  # the other slots hold every CPU: not idle, waiting
                idle_since = time.time()
                continue
            item = self.queue.claim(self.settings.queue, self.dispatcher.worker, self.chunk, self.settings.lease_seconds)
            if item is None:
                if busy:  # just gone idle: what was acknowledged is deleted now, not when the worker exits
                    self.flush()
                    busy = False
                if time.time() - idle_since > self.settings.idle_timeout:
                    return EXIT_IDLE
                woken = self.queue.wait(self.settings.queue, poll)
                poll = self.settings.poll_min if woken else min(poll * 2, self.settings.poll_max)
                continue
            busy = True
            if item.redelivered:
                # Its lease ran out once (SQS redelivery): recover the lost work, never run it as it is.
                self.dispatcher.recover_lost(item)
            else:
                held = self._hold_room(item)
                if held is not None:
                    try:
                        lease = Lease(self._cadence)  # from before
                        run = self.dispatcher.start(item)  # the start, which stamps the run's first beat
                        if run is not None:
                            self.execute(run, lease)
                    finally:
                        if self.room is not None:
                            self.room.give(held, self._room_gpus)
            idle_since, poll = time.time(), self.settings.poll_min
        return EXIT_IDLE

    def _hold_room(self, item) -> resources.Amount | None:
        """A slot's share of its worker's room for the work claimed (what it asks for), held until
        the work is done; waits, keeping the work unstarted under a renewed lease, until the other
        slots leave room for it. None: the worker is stopping (the work went back untouched)."""
        if self.room is None:
            return resources.Amount(0, 0, 0)
        try:
            request = resources.request_of(self.dispatcher.store.get(item.job_id).get("resources"))
        except NotFound:
            request = resources.Amount(0, 0, 0)  # the start finds it gone and acknowledges the work
        renewed = time.monotonic()
        while True:
            gpus = self.room.take(request)
            if gpus is not None:
                self._room_gpus = gpus
                return request
            if self.stopping:
                self.queue.release(item)
                return None
            if time.monotonic() - renewed > self.settings.heartbeat_seconds:
                self.queue.extend(item, self.settings.lease_seconds)
                renewed = time.monotonic()
            self.room.wait(self.settings.heartbeat_seconds / 2)

    def _kill_orphan(self) -> None:
        """A crashed agent's last job may still run: stop it before its work is handed out again."""
        try:
            pgid = int(self.settings.pid_file.read_text().split()[0]) if self.settings.pid_file else 0
        except (FileNotFoundError, ValueError, IndexError):
            return
        self.job_user.signal(pgid, signal.SIGKILL)

    def _take_back_orphan(self) -> None:
        """The run a crashed agent of this name had registered (AWS): taken back, its job killed above."""
        try:
            if self.dispatcher.take_back_own():
                log.warning("took back the run the agent before this one left")
        except Exception as exc:  # the reconciler takes it back once its promise has passed
            log.warning("could not take back the run the agent before this one left: %s", exc)

    def _stop(self, signum, frame) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop after handing back the current work, so nothing waits for a lease to run out.

        Safe in a signal handler, twice over: it takes no lock; the supervisor
        kills the running job when it sees the flag.
        """
        self.stopping = True

    def execute(self, run: Run, lease: Lease | None = None) -> None:
        """Run what `run` holds and record it, unless the run was lost or the worker is stopping.

        `lease` counts from the run's last renewal (`Lease`); None: a lease that never runs out.
        """
        self.supervisor.watch(run, lease)
        self.places = None
        try:
            if run.is_array and not run.positions:
                # Never run an array item as a plain job: with no index it would run the script once
                # more, outside the array's %limit. The claim settles such items; this is the guard.
                log.warning("refused an item of array %s with no tasks to run", run.job["id"])
                self.dispatcher.finish_tasks(run, {})
                return
            try:
                self._prepare(run)
            except OSError as exc:  # the disk is full, say: this worker cannot run the work, so it fails
                self._fail_all(run, Outcome(exits.SCHEDULER_FAILURE, f"the worker could not write the job's files "
                                                                     f"({why(exc)})"))
                return
            if run.is_array:
                self._run_tasks(run)
            else:
                started = time.time()
                outcome = self._run_one(run, None)
                self._deliver()
                if outcome is None:
                    self._abandon(run)
                else:
                    self.dispatcher.finish_job(run, outcome)
                    self._adapt(started, 1)
        finally:
            self._clean_item()
            self.supervisor.watch(None)

    def _fail_all(self, run: Run, outcome: Outcome) -> None:
        """Record `outcome` for all of the run (the job, or every position of the chunk), as a run would."""
        if run.positions:
            self.dispatcher.finish_tasks(run, {pos: outcome for pos in run.positions})
        else:
            self.dispatcher.finish_job(run, outcome)

    def _prepare(self, run: Run) -> None:
        """Once per claimed item: the work directory, the argv and the places the tasks share."""
        job = run.job
        self.workdir = self.settings.work_root / job["id"]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.job_user.share(self.workdir)
        self.argv = job["command"] or self._script_argv(job, self.workdir)
        self._each = _Each.of(run)
        self.places_error = None
        try:
            self.places = self._item_places(run)
        except OSError as exc:
            self.places_error = f"could not prepare the job's directories: {exc.strerror or exc}"

    def _run_tasks(self, run: Run) -> None:
        """Run a chunk's tasks in order, noting each one's end on the Run (its heartbeat records that).

        Stopping (SIGTERM, `hyper local down`): the task running is stopped, and
        the chunk reports what finished; the rest goes back untouched, so that a
        graceful stop neither loses a task nor runs a finished one again. Lease
        lost: nothing is recorded, the work is someone else's now.

        A task's output files are written by the delivery thread
        (`_hand_over`), handed to it once the next task has started: making
        files in the submit directory is the most a tiny task costs beyond its
        fork and exec, and it waits on the file system (the longer the busier
        the machine), which must not hold up the next start. That thread notes
        the task done only once they are written, so a task is never recorded
        finished before its files are there; the chunk's results are recorded
        once it has written them all (`_delivered`).
        """
        spec = run.spec
        started = time.time()
        ended: list[tuple[int, Outcome]] = []  # ran to their end, not handed to the delivery thread yet

        def note() -> None:
            self._hand_over(run, ended)

        for pos in run.positions:
            index = spec.index_at(pos)
            if self.supervisor.cancelled_all or self.stopping or self.supervisor.lease_lost:
                break
            if index in self.supervisor.cancelled:
                note()
                self._delivered()
                run.passed(pos)  # this task alone was cancelled (qdel ID[index]): the rest of the chunk still runs
                continue
            outcome = self._run_one(run, index, meanwhile=note)
            if outcome is None:
                break  # stopped half way: no result, it goes back (or, lease lost, stays with its new owner)
            ended.append((pos, outcome))
        note()
        self._delivered()
        if self.supervisor.lease_lost:
            return
        self.dispatcher.finish_tasks(run, dict(run.results))
        self._adapt(started, len(run.results))

    def _adapt(self, started: float, done: int) -> None:
        """Size the next claim: double it while work is quick, down to what fits TARGET_CHUNK_SECONDS.

        A claim takes up to this many array tasks, or (on SQS) receives up to
        this many messages at once (at most ten), so long work is never hoarded.
        """
        per_task = (time.time() - started) / max(1, done)
        fitting = int(TARGET_CHUNK_SECONDS / per_task) if per_task > 0 else self.settings.chunk_size
        self.chunk = max(1, min(self.settings.chunk_size, self.chunk * 2, fitting))

    def _abandon(self, run: Run) -> None:
        """Lease lost or worker stopping: hand the work back, unless the lease was lost.

        A lost lease (the store took the run back, or it ran out on this
        worker's clock) records nothing: whoever takes the run back settles it.
        """
        if not self.supervisor.lease_lost:
            self.dispatcher.give_back(run)

    def _run_one(self, run: Run, index: int | None, meanwhile: Callable[[], None] | None = None) -> Outcome | None:
        """Run the job (or the task `index`) once; None if it was not run to its end for the run's sake:
        the worker is stopping, or the lease was lost (it is then checked before the start, and again
        right after it, for a worker stopped in between). `meanwhile` is called once its process started."""
        if self.stopping or self.supervisor.lost():
            return None
        job, argv = run.job, self.argv
        try:
            places = self._task_places(job, index)
        except OSError as exc:
            return Outcome(exits.JOB_EXEC_FAIL1, str(exc.strerror or exc))
        each = self._each
        assert each is not None  # `_prepare` made it for the item
        not_staged = self._stage_in(job, index, places) if each.stages else None
        if not_staged is not None:
            self._reset(places)
            return not_staged
        self.current.set(None, index, None)  # nothing of the last run's ending carries over
        try:
            sink = self.logs.sink(job["id"], index, run.attempt)
        except OSError as exc:  # the disk is full, say: running it would lose its output unseen
            self._reset(places)
            return Outcome(exits.SCHEDULER_FAILURE, f"the worker could not write the job's output ({why(exc)})")
        # -j oe: stderr into the output stream (as PBS does it, so the two stay in order); -j eo the other way.
        out_fd, err_fd = sink.stdout, sink.stderr
        if job.get("join") == "oe":
            err_fd = out_fd
        elif job.get("join") == "eo":
            out_fd = err_fd
        proc: spawn.Child | subprocess.Popen | None = None
        killed_for, started, cpu, returncode = None, time.time(), 0.0, 0
        limit_kill: Outcome | None = None
        mem_limit = each.mem_limit
        lingering = False
        try:
            run_text = each.run_text if index is None else f"{each.run_text} {index}"
            self._record(STARTING, run_text)  # a fence that finds this kills the worker's session's jobs
            try:
                program = self._program(run, index, places)
                argv = program.argv
                proc = program.start(environment.task_variables(job, index), out_fd, err_fd)
            except (OSError, ValueError) as exc:
                # ValueError: a NUL byte or an '=' in a name. The API refuses both (core.limits); a job
                # stored before it did still fails with the true reason, not a worker crash.
                self._record(IDLE)
                reason = f"could not start {argv[0]!r}: {why(exc)}"
                with contextlib.suppress(OSError):
                    os.write(err_fd, f"hyperbatch: cannot start {argv[0]!r}: {why(exc)}\n".encode())
            if proc is not None:
                deadline = time.time() + each.walltime if each.walltime else None
                self.current.set(proc, index, deadline, mem_limit)
                self._record(proc.pid, run_text)
                if self.supervisor.lost():  # stopped between the check above and the start: it must not run on
                    self.current.kill("lease")
                if meanwhile is not None:
                    meanwhile()
                returncode, usage = _wait(proc)
                lingering = group_alive(proc.pid)  # its background processes may still write its output
                self._record(IDLE)  # never kill a recycled pid later
                killed_for = self.current.killed_for
                self.current.clear()
                cpu = usage.ru_utime + usage.ru_stime
                # The most it held: as the supervisor saw the group, or its largest process at its peak
                # (a burst between two looks is not stopped, but it is not let pass either).
                peak = max(self.current.mem_peak, usage.ru_maxrss * 1024)
                if killed_for == "walltime":
                    kill = exits.limit_exceeded("walltime", int(time.time() - started), job["walltime"])
                elif mem_limit and (killed_for == "mem" or (killed_for is None and peak > mem_limit)):
                    kill = exits.limit_exceeded("mem", f"{peak >> 10}kb", f"{mem_limit >> 10}kb")
                else:
                    kill = None
                if kill is not None:
                    status, comment, line = kill
                    limit_kill = Outcome(status, comment)
                    with contextlib.suppress(OSError):
                        os.write(err_fd, line.encode())  # as MoM writes it into the job's stderr
        finally:
            # Not run to its end: no result, nothing delivered, no output kept. A lost lease records
            # nothing whatever the job did; a stop that came after the job had exited on its own (its
            # exit status is its own, not a signal's) found it finished, and its result stands: run
            # again, it would run twice.
            interrupted = killed_for == "lease" or (killed_for == "stop" and returncode < 0)
            sink.close(kept=not interrupted, lingering=lingering)
        if proc is None:  # its stderr says why; delivered like any output
            return self._ended(run, index, places, Outcome(exits.EXEC_FAILED, reason))
        if interrupted:
            self._reset(places)
            return None
        if limit_kill is not None:
            outcome = Outcome(limit_kill.exit_status, limit_kill.reason, cpu_seconds=cpu)
        elif killed_for == "cancel":
            outcome = Outcome(exits.from_returncode(returncode), "cancelled", cancelled=True, cpu_seconds=cpu)
        elif killed_for == "rerun":
            outcome = Outcome(exits.RERUN, "rerun", rerun=True, cpu_seconds=cpu)
        else:
            status = exits.from_returncode(returncode)
            outcome = Outcome(status, exits.describe(status), cpu_seconds=cpu)
        return self._ended(run, index, places, outcome)

    def _item_places(self, run: Run) -> dict:
        """TMPDIR and PBS_NODEFILE, made once per claimed item (an array's tasks in it take turns
        with them: TMPDIR is emptied after each), and the home directory the job starts in.

        A home that does not exist on this worker (a job submitted from a laptop to AWS) is this
        worker's user's own, else the job's work directory."""
        job = run.job
        first = run.spec.index_at(run.positions[0]) if run.positions else None
        run_id = display_id(job, first)
        tmpdir = self.settings.work_root / "tmp" / f"pbs.{run_id}"
        aux = self.settings.work_root.parent / "aux"
        try:
            os.mkdir(tmpdir)  # one call, as a rule: its parents are there from the item before
            os.stat(aux)
        except OSError:
            tmpdir.mkdir(parents=True, exist_ok=True)
            aux.mkdir(parents=True, exist_ok=True)
        nodefile = aux / run_id
        nodefile.write_text(environment.nodefile(job.get("resources") or {}, self.settings.host))
        home = environment.home_of(job, self._home)
        if not os.path.isdir(home):
            home = self._home if self._home and os.path.isdir(self._home) else str(self.workdir)
        return {"tmpdir": tmpdir, "nodefile": nodefile, "home": home}

    def _task_places(self, job: dict, index: int | None) -> dict:
        """The item's places plus PBS_JOBDIR and where the run starts: the home directory, or with
        -W sandbox=PRIVATE a fresh directory removed when the run ends."""
        item = self.places
        if item is None:
            raise OSError(self.places_error)
        if job.get("sandbox") == "PRIVATE":
            jobdir = self.workdir / (f"jobdir.{index}" if index is not None else "jobdir")
            jobdir.mkdir(parents=True, exist_ok=True)
            return {**item, "jobdir": jobdir, "private": jobdir, "cwd": jobdir if jobdir.is_dir() else self.workdir}
        if "cwd" not in item:  # the same for every task of the item: looked at once
            home = Path(item["home"])
            item.update(jobdir=home, private=None, cwd=home if home.is_dir() else self.workdir)
        return item

    def _program(self, run: Run, index: int | None, places: dict) -> spawn.Program:
        """What starts the run's process: its argv, environment, directory and umask, made once for
        the tasks of an item that share their places (all but those of -W sandbox=PRIVATE, whose
        PBS_JOBDIR is the task's own); each task adds its own variables (environment.task_variables)."""
        key = (run.item.id, run.attempt, str(places["jobdir"]), str(places["cwd"]))
        if self._prepared is None or self._prepared[0] != key:
            self._prepared = None
            argv, env, as_user = self.job_user.popen(self.argv, self._environment(run, index, places))
            for name in environment.task_variables(run.job, index):
                env.pop(name, None)
            umask = int(run.job.get("umask") or "077", 8)
            self._prepared = (key, spawn.Program(argv, env, str(places["cwd"]), umask, as_user))
        return self._prepared[1]

    def _environment(self, run: Run, index: int | None, places: dict) -> dict:
        """The run's whole environment (core/environment.py): nothing of the worker's own but the
        region's name (hyperbatch.core.isolation: no credentials, no scheduler settings)."""
        return environment.job_environment(
            run.job, index, run.attempt, definition_env={**self._inherited, **self.settings.definition_env},
            host=self.settings.host,
            nodefile_path=str(places["nodefile"]), tmpdir=str(places["tmpdir"]), jobdir=str(places["jobdir"]),
            home=places["home"], fallback_home=self._home, region=self.dispatcher.region, worker=self.dispatcher.worker,
            gpus=self._gpus_of(run),
        )

    def _gpus_of(self, run: Run) -> str | None:
        """CUDA_VISIBLE_DEVICES for the run: the GPUs its claim (local mode) or its slot's room gave it;
        None where nothing hands GPUs out (the variable is left as the worker's definition sets it)."""
        if self.room is not None and self.room.gpus:
            return ",".join(self._room_gpus)
        return run.item.gpus if self.settings.assigns_gpus else None

    def _stage_in(self, job: dict, index: int | None, places: dict) -> Outcome | None:
        """Before the run: its stage-in files copied into the directory it starts in. An Outcome when
        they could not all be (PBS: the job does not run, and says why), else None."""
        if not (job.get(staging.STAGEIN) or job.get(staging.STAGEOUT)):
            return None
        if self.settings.stager is None:
            failures: tuple[str, ...] = ("this worker cannot stage files",)
        else:
            try:
                failures = self.settings.stager.stage_in(job, index, Path(places["cwd"])).failures
            except (OSError, ValueError) as exc:  # a stager's own fault: the job must not run without its files
                failures = (why(exc),)
        if not failures:
            return None
        note = f"{staging.STAGEIN_COMMENT}: {'; '.join(failures)}"
        return Outcome(staging.STAGEIN_FAILED, note, staging_note=note)

    def _stage_out(self, job: dict, index: int | None, places: dict, outcome: Outcome) -> Outcome:
        """After the run, whatever its exit status: its stage-out files copied out, the outcome
        telling which went (stageout_files) and which could not (comment, tracejob)."""
        if self.settings.stager is None or not (job.get(staging.STAGEIN) or job.get(staging.STAGEOUT)):
            return outcome
        try:
            done = self.settings.stager.stage_out(job, index, Path(places["cwd"]))
        except (OSError, ValueError) as exc:
            done = Staged(failures=(why(exc),))
        note = f"{staging.STAGEOUT_COMMENT}: {'; '.join(done.failures)}" if done.failures else ""
        return replace(outcome, staged_out=done.files if job.get(staging.STAGEOUT) else None, staging_note=note)

    def _ended(self, run: Run, index: int | None, places: dict, outcome: Outcome) -> Outcome:
        """After a run that has a result: its files staged out, its output files to write (locally:
        `_deliver`), its scratch places removed."""
        if self._each is not None and self._each.stages:
            outcome = self._stage_out(run.job, index, places, outcome)
        if self.settings.deliver is not None:
            self._undelivered.append((run.job, index, places["home"]))
        self._reset(places)
        return outcome

    def _hand_over(self, run: Run, ended: list[tuple[int, Outcome]]) -> None:
        """Hand the output files of the runs that ended since the last call to the delivery thread,
        and the tasks of `ended` (emptied) to note done on `run` once those are written."""
        pending, self._undelivered = self._undelivered, []
        done, ended[:] = list(ended), []
        if not pending and not done:
            return
        if self._deliveries is None:
            self._deliveries = Queue()
            threading.Thread(target=self._deliver_forever, daemon=True, name="deliver").start()
        self._deliveries.put((pending, run, done))

    def _delivered(self) -> None:
        """Wait until the delivery thread has written all it was handed, and noted those tasks done."""
        if self._deliveries is not None:
            self._deliveries.join()

    def _deliver_forever(self) -> None:
        assert self._deliveries is not None
        while True:
            pending, run, done = self._deliveries.get()
            try:
                self._write_outputs(pending)
            except Exception:  # never leave the chunk waiting: its tasks ran, whatever became of their files
                log.exception("writing output files failed")
            finally:
                for pos, outcome in done:
                    run.done(pos, outcome)
                self._deliveries.task_done()

    def _deliver(self) -> None:
        """Write the output files of the runs that ended since the last call, on this thread."""
        pending, self._undelivered = self._undelivered, []
        self._write_outputs(pending)

    def _write_outputs(self, pending: list[tuple[dict, int | None, str]]) -> None:
        """Write the output files of `pending` runs (job, index, home): hyperbatch.core.outputs."""
        deliver = self.settings.deliver
        if deliver is None:
            return
        for job, index, home in pending:
            mode = outputs.file_mode(job.get("umask"))
            for stream, path in outputs.destinations(job, index, home):
                try:
                    deliver(job["id"], index, stream, path, mode)
                except (OSError, ValueError) as exc:  # ValueError: a NUL byte in a path stored before the API refused it
                    print(f"{display_id(job, index)}: cannot deliver {stream} to {path}: "
                          f"{why(exc)}", file=sys.stderr, flush=True)

    @staticmethod
    def _reset(places: dict) -> None:
        """After a run: its TMPDIR emptied for the next task, its private job directory removed.

        A TMPDIR whose modification time is the one it had when last seen empty is not listed (one
        stat, not four calls): that time is trusted only once it lay STILL_NS in the past when it was
        read, so that any entry made or removed since moved it, however coarse the file system's clock."""
        tmpdir = places["tmpdir"]
        try:
            if places.get("tmp_still") is None or os.stat(tmpdir).st_mtime_ns != places["tmp_still"]:
                places["tmp_still"] = None
                with os.scandir(tmpdir) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            shutil.rmtree(entry.path, ignore_errors=True)
                        else:
                            os.unlink(entry.path)
                still = os.stat(tmpdir).st_mtime_ns
                if time.time_ns() - still > STILL_NS:
                    places["tmp_still"] = still
        except OSError:
            pass
        if places["private"] is not None:
            shutil.rmtree(places["private"], ignore_errors=True)

    def _clean_item(self) -> None:
        """After the item: TMPDIR and PBS_NODEFILE removed."""
        self._prepared = self._each = None
        if self.places is None:
            return
        try:
            os.rmdir(self.places["tmpdir"])  # emptied after each task (`_reset`): one call, as a rule
        except OSError:
            shutil.rmtree(self.places["tmpdir"], ignore_errors=True)
        try:
            self.places["nodefile"].unlink()
        except FileNotFoundError:
            pass
        self.places = None

    def _record(self, pgid: int | bytes, run_text: str = "") -> None:
        """Write the job file: which process group runs which run, and which task of it (`run_text`:
        JobRecord.run_text), read by the daemon's fence and by qsig in local mode
        (hyperbatch.adapters.local.compute); IDLE: none."""
        if self._pid_fd is not None:
            os.pwrite(self._pid_fd, pgid if isinstance(pgid, bytes) else record_bytes(pgid, run_text), 0)

    def _script_argv(self, job: dict, workdir: Path) -> list[str]:
        """The script runs as itself when it starts with `#!`, else under -S or the submitter's shell."""
        path = workdir / f".hyperbatch-script-{job['attempt']}"
        if not path.exists():
            atomic_write(path, self.dispatcher.store.script(job) or "", mode=0o700)  # a large one: fetched
            self.job_user.share(path)
        with open(path) as f:
            shebang = f.read(2) == "#!"
        return [str(path)] if shebang else [environment.shell_of(job), str(path)]


IDLE = record_bytes(0)  # the job file's record while no job runs


@dataclass(frozen=True)
class _Each:
    """What every run of a claimed item shares, looked up once per item rather than once per task."""

    run_text: str  # the job file's run part (JobRecord.run_text) but the array index
    mem_limit: int  # bytes the job asked for (-l mem); 0: not watched
    walltime: float | None  # seconds it may run (-l walltime, at most limits.MAX_WALLTIME_SECONDS)
    stages: bool  # it stages files in or out (core/staging.py)

    @classmethod
    def of(cls, run: Run) -> "_Each":
        job = run.job
        return cls(run_text=JobRecord(0, job["id"], str(run.item.id), run.attempt).run_text(),
                   mem_limit=resources.request_of(job.get("resources")).mem,
                   walltime=min(job["walltime"], limits.MAX_WALLTIME_SECONDS) if job["walltime"] else None,
                   stages=bool(job.get(staging.STAGEIN) or job.get(staging.STAGEOUT)))


def _wait(proc: spawn.Child | subprocess.Popen) -> tuple[int, resource.struct_rusage]:
    """Wait for the job's process: its returncode (as Popen gives it) and its own resource usage (its
    CPU time and peak memory, with those of the children it waited for)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage


"""The worker agent: claim work, run it in series, report, and exit when idle.

`worker_image/start.sh` runs it in a loop (`python -m hyperbatch.wiring.worker`, which builds it).
Exit codes tell start.sh what to do next: 0 idle (stop), 3 misconfigured (stop),
anything else a crash (restart).

One supervisor thread heart-beats the current lease, enforces walltime and kills
the job's process group on cancel; the main thread only starts processes and
waits for them, so a tiny task costs little more than its fork and exec.

Acks may be buffered by the queue (SQS deletes in batches): the agent flushes
them when it goes idle, after each heartbeat (so a long job does not hold back
the acks of the jobs before it) and when it stops, whatever stops it, so a
worker that exits leaves no acknowledged message behind.
"""

from __future__ import annotations

import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hyperbatch.core import environment, exits, outputs
from hyperbatch.support.processes import signal_group
from hyperbatch.services.dispatch import Dispatcher, Outcome, Run
from hyperbatch.core.ports import LogStore, WorkQueue

EXIT_IDLE, EXIT_MISCONFIGURED = 0, 3
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
TARGET_CHUNK_SECONDS = 1.0  # array chunks grow until one takes about this long


@dataclass
class Settings:
    queue: str
    idle_timeout: float
    lease_seconds: float
    heartbeat_seconds: float
    chunk_size: int
    work_root: Path
    definition_env: dict
    pid_file: Path | None = None  # holds the running job's process group, for clean-up after a crash
    # Writes a finished run's stream to its file (stream, path, mode): local mode's output delivery.
    deliver: Callable[[str, int | None, str, str, int], None] | None = None
    host: str = field(default_factory=socket.gethostname)
    poll_min: float = 0.002
    poll_max: float = 0.02  # an idle poll is one indexed read: cheap enough to keep pickup latency low


class Current:
    """What the supervisor watches: the process running now and why it should stop."""

    def __init__(self):
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.index: int | None = None
        self.deadline: float | None = None
        self.killed_for: str | None = None  # "walltime", "cancel" or "lease"
        self.killed_at = 0.0

    def set(self, proc, index, deadline):
        with self.lock:
            self.proc, self.index, self.deadline, self.killed_for = proc, index, deadline, None

    def clear(self):
        with self.lock:
            self.proc = None

    def kill(self, why: str) -> None:
        with self.lock:
            if self.proc is None or self.killed_for:
                return
            self.killed_for, self.killed_at = why, time.time()
            signal_group(self.proc.pid, signal.SIGTERM)

    def escalate(self) -> None:
        with self.lock:
            if self.proc is not None and self.killed_for and time.time() - self.killed_at > KILL_GRACE:
                signal_group(self.proc.pid, signal.SIGKILL)


class Supervisor(threading.Thread):
    def __init__(self, dispatcher: Dispatcher, current: Current, heartbeat_seconds: float, stopping, flush=None):
        super().__init__(daemon=True, name="supervisor")
        self.dispatcher, self.current, self.every, self.stopping = dispatcher, current, heartbeat_seconds, stopping
        self.flush = flush  # called after each heartbeat: sends acks the queue still buffers
        self.run_: Run | None = None
        self.cancelled_all = False
        self.cancelled: frozenset[int] = frozenset()
        self.lease_lost = False
        self._last = 0.0
        self._wake = threading.Event()
        self._halted = threading.Event()

    def halt(self) -> None:
        """End the thread (its agent has stopped serving)."""
        self._halted.set()
        self._wake.set()

    def watch(self, run: Run | None) -> None:
        self.run_, self.cancelled_all, self.cancelled, self.lease_lost = run, False, frozenset(), False
        self._last = time.time()

    def run(self) -> None:
        while not self._halted.is_set():
            self._wake.wait(0.05)
            current, run = self.current, self.run_
            if self.stopping():
                current.kill("stop")  # asked for by a signal handler, which only sets a flag
            if run is None:
                continue
            if current.deadline is not None and current.proc is not None and time.time() > current.deadline:
                current.kill("walltime")
            current.escalate()
            if time.time() - self._last >= self.every:
                self._last = time.time()
                try:
                    signals = self.dispatcher.heartbeat(run)
                except Exception as exc:  # a store hiccup must not kill the job; the next beat retries
                    print(f"heartbeat failed: {exc}", file=sys.stderr, flush=True)
                    continue
                if self.flush is not None:
                    try:
                        self.flush()
                    except Exception as exc:  # those messages come back and are acked again: never fatal
                        print(f"flushing acks failed: {exc}", file=sys.stderr, flush=True)
                if self.run_ is not run:
                    continue  # that run ended while we were beating: the answer is about work that is done
                self.lease_lost |= signals.lease_lost
                self.cancelled_all |= signals.cancel_all
                self.cancelled = signals.cancelled_indices
                if signals.lease_lost:
                    current.kill("lease")
                elif signals.cancel_all or (current.index is not None and current.index in signals.cancelled_indices):
                    current.kill("cancel")


class Agent:
    def __init__(self, dispatcher: Dispatcher, queue: WorkQueue, logs: LogStore, settings: Settings):
        self.dispatcher, self.queue, self.logs, self.settings = dispatcher, queue, logs, settings
        self.current = Current()
        self.supervisor = Supervisor(dispatcher, self.current, settings.heartbeat_seconds, lambda: self.stopping,
                                     flush=self.flush)
        try:
            self._home = pwd.getpwuid(os.getuid()).pw_dir  # where a job whose submitter's home is unknown starts
        except KeyError:
            self._home = None
        self.chunk = 1  # work taken per claim: grows while it is quick (`_adapt`), so long work is not hoarded
        self.stopping = False

    def serve(self) -> int:
        """Claim and run work until idle for `idle_timeout` (or stopped); the exit code for start.sh.

        Signal handlers are installed only from the main thread (Python allows
        no other); an agent served from another thread is stopped with `stop()`.
        """
        self._kill_orphan()
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
                print(f"flushing acks failed: {exc}", file=sys.stderr, flush=True)
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
            item = self.queue.claim(self.settings.queue, self.dispatcher.worker, self.chunk, self.settings.lease_seconds)
            if item is None:
                if busy:  # just gone idle: what was acknowledged is deleted now, not when the worker exits
                    self.flush()
                    busy = False
                if time.time() - idle_since > self.settings.idle_timeout:
                    return EXIT_IDLE
                time.sleep(poll)
                poll = min(poll * 2, self.settings.poll_max)
                continue
            busy = True
            if item.redelivered:
                # Its lease ran out once (SQS redelivery): recover the lost work, never run it as it is.
                self.dispatcher.recover_lost(item)
            else:
                run = self.dispatcher.start(item)
                if run is not None:
                    self.execute(run)
            idle_since, poll = time.time(), self.settings.poll_min
        return EXIT_IDLE

    def _kill_orphan(self) -> None:
        """A crashed agent's last job may still run: stop it before its work is handed out again."""
        try:
            pgid = int(self.settings.pid_file.read_text().split()[0]) if self.settings.pid_file else 0
        except (FileNotFoundError, ValueError, IndexError):
            return
        signal_group(pgid, signal.SIGKILL)

    def _stop(self, signum, frame) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop after handing back the current work, so nothing waits for a lease to run out.

        Safe in a signal handler, twice over: it takes no lock; the supervisor
        kills the running job when it sees the flag.
        """
        self.stopping = True

    def execute(self, run: Run) -> None:
        self.supervisor.watch(run)
        self.places = None
        try:
            self._prepare(run)
            if run.positions:
                self._run_tasks(run)
            else:
                started = time.time()
                outcome = self._run_one(run, None)
                if self.current.killed_for in ("lease", "stop"):
                    self._abandon(run)
                else:
                    self.dispatcher.finish_job(run, outcome)
                    self._adapt(started, 1)
        finally:
            self._clean_item()
            self.supervisor.watch(None)

    def _prepare(self, run: Run) -> None:
        """Once per claimed item: the work directory, the argv and the places the tasks share."""
        job = run.job
        self.workdir = self.settings.work_root / job["id"]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.argv = job["command"] or self._script_argv(job, self.workdir)
        self.places_error = None
        try:
            self.places = self._item_places(run)
        except OSError as exc:
            self.places_error = f"could not prepare the job's directories: {exc.strerror or exc}"

    def _run_tasks(self, run: Run) -> None:
        spec, results = run.spec, {}
        started = time.time()
        for pos in run.positions:
            index = spec.index_at(pos)
            if self.supervisor.cancelled_all or index in self.supervisor.cancelled:
                break
            if self.stopping or self.supervisor.lease_lost:
                break
            results[pos] = self._run_one(run, index)
            if self.current.killed_for in ("lease", "stop"):
                del results[pos]
                break
        if self.supervisor.lease_lost or (self.stopping and not self.supervisor.cancelled_all):
            self._abandon(run)
            return
        self.dispatcher.finish_tasks(run, results)
        self._adapt(started, len(results))

    def _adapt(self, started: float, done: int) -> None:
        """Size the next claim: double it while work is quick, down to what fits TARGET_CHUNK_SECONDS.

        A claim takes up to this many array tasks, or (on SQS) receives up to
        this many messages at once (at most ten), so long work is never hoarded.
        """
        per_task = (time.time() - started) / max(1, done)
        fitting = int(TARGET_CHUNK_SECONDS / per_task) if per_task > 0 else self.settings.chunk_size
        self.chunk = max(1, min(self.settings.chunk_size, self.chunk * 2, fitting))

    def _abandon(self, run: Run) -> None:
        """Lease lost or worker stopping: hand the work back (unless the reconciler already took it)."""
        if not self.supervisor.lease_lost:
            self.dispatcher.give_back(run)

    def _run_one(self, run: Run, index: int | None) -> Outcome:
        job, argv = run.job, self.argv
        try:
            if self.places is None:
                raise OSError(self.places_error)
            places = self._task_places(job, index)
        except OSError as exc:
            return Outcome(exits.JOB_EXEC_FAIL1, str(exc.strerror or exc))
        sink = self.logs.sink(job["id"], index, run.attempt)
        # -j oe: stderr into the output stream (as PBS does it, so the two stay in order); -j eo the other way.
        out_fd, err_fd = sink.stdout, sink.stderr
        if job.get("join") == "oe":
            err_fd = out_fd
        elif job.get("join") == "eo":
            out_fd = err_fd
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        killed_for, started, proc = None, time.time(), None
        try:
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=out_fd, stderr=err_fd, cwd=places["cwd"],
                    env=self._environment(run, index, places), process_group=0,
                    umask=int(job.get("umask") or "077", 8),
                )
            except OSError as exc:
                reason = f"could not start {argv[0]}: {exc.strerror}"
                os.write(err_fd, f"hyperbatch: cannot start {argv[0]}: {exc.strerror}\n".encode())
            if proc is not None:
                deadline = time.time() + job["walltime"] if job["walltime"] else None
                self.current.set(proc, index, deadline)
                if self._pid_fd is not None:
                    os.pwrite(self._pid_fd, b"%-12d\n" % proc.pid, 0)
                returncode = proc.wait()
                if self._pid_fd is not None:
                    os.pwrite(self._pid_fd, b"0           \n", 0)  # never kill a recycled pid later
                killed_for = self.current.killed_for
                self.current.clear()
                if killed_for == "walltime":
                    used = int(time.time() - started)
                    status, comment, line = exits.limit_exceeded("walltime", used, job["walltime"])
                    os.write(err_fd, line.encode())  # as MoM writes it into the job's stderr
        finally:
            sink.close()
        if proc is None:  # its stderr says why; delivered like any output
            return self._ended(run, index, places, Outcome(exits.EXEC_FAILED, reason))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if killed_for in ("lease", "stop"):  # handed back: no result, nothing delivered
            self._reset(places)
            return Outcome(exits.from_returncode(returncode), "stopped", cpu_seconds=cpu)
        if killed_for == "walltime":
            outcome = Outcome(status, comment, cpu_seconds=cpu)
        elif killed_for == "cancel":
            outcome = Outcome(exits.from_returncode(returncode), "cancelled", cancelled=True, cpu_seconds=cpu)
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
        run_id = outputs.task_id(job["id"], first)
        tmpdir = self.settings.work_root / "tmp" / f"pbs.{run_id}"
        tmpdir.mkdir(parents=True, exist_ok=True)
        aux = self.settings.work_root.parent / "aux"
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
        if job.get("sandbox") == "PRIVATE":
            jobdir = self.workdir / (f"jobdir.{index}" if index is not None else "jobdir")
            jobdir.mkdir(parents=True, exist_ok=True)
            private = jobdir
        else:
            jobdir, private = Path(self.places["home"]), None
        cwd = jobdir if jobdir.is_dir() else self.workdir
        return {**self.places, "jobdir": jobdir, "private": private, "cwd": cwd}

    def _environment(self, run: Run, index: int | None, places: dict) -> dict:
        """The run's whole environment (core/environment.py): nothing of the worker's own."""
        return environment.job_environment(
            run.job, index, run.attempt, definition_env=self.settings.definition_env, host=self.settings.host,
            nodefile_path=str(places["nodefile"]), tmpdir=str(places["tmpdir"]), jobdir=str(places["jobdir"]),
            home=places["home"], fallback_home=self._home, region=self.dispatcher.region, worker=self.dispatcher.worker,
        )

    def _ended(self, run: Run, index: int | None, places: dict, outcome: Outcome) -> Outcome:
        """After a run that has a result: deliver its output files (locally), remove its scratch places."""
        if self.settings.deliver is not None:
            job = run.job
            mode = outputs.file_mode(job.get("umask"))
            for stream, path in outputs.destinations(job, index, places["home"]):
                try:
                    self.settings.deliver(job["id"], index, stream, path, mode)
                except OSError as exc:
                    print(f"{outputs.task_id(job['id'], index)}: cannot deliver {stream} to {path}: "
                          f"{exc.strerror or exc}", file=sys.stderr, flush=True)
        self._reset(places)
        return outcome

    @staticmethod
    def _reset(places: dict) -> None:
        """After a run: its TMPDIR emptied for the next task, its private job directory removed."""
        try:
            with os.scandir(places["tmpdir"]) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)
        except OSError:
            pass
        if places["private"] is not None:
            shutil.rmtree(places["private"], ignore_errors=True)

    def _clean_item(self) -> None:
        """After the item: TMPDIR and PBS_NODEFILE removed."""
        if self.places is None:
            return
        shutil.rmtree(self.places["tmpdir"], ignore_errors=True)
        try:
            self.places["nodefile"].unlink()
        except FileNotFoundError:
            pass
        self.places = None

    def _script_argv(self, job: dict, workdir: Path) -> list[str]:
        """The script runs as itself when it starts with `#!`, else under -S or the submitter's shell."""
        path = workdir / f".hyperbatch-script-{job['attempt']}"
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=workdir)
            with os.fdopen(fd, "w") as f:
                f.write(job["script"])
            os.chmod(tmp, 0o700)
            os.replace(tmp, path)
        return [str(path)] if job["script"].startswith("#!") else [environment.shell_of(job), str(path)]

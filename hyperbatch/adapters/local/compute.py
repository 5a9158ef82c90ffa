"""Compute as local subprocesses: each worker is worker_image/start.sh, as in the container.

Each worker's start.sh leads a session of its own; its agent runs each job in a
process group of its own within that session and names it in the worker's job
file (`workers/<worker>.job`, hyperbatch.support.processes). So the daemon can
stop a worker's job without the worker: when the worker died (`running`), when
it stops (`stop_all`), and when it went silent and its run is taken back (`fence`).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

from hyperbatch.core.arrays import parse_array
from hyperbatch.core.signals import number as signal_number
from hyperbatch.support.processes import (
    STARTING, read_job_record, signal_group, signal_session_jobs, started_with,
)
from hyperbatch.adapters.local.sqlite import Database

# worker_image/start.sh, installed as package data (hyperbatch.worker_image) so an installed copy finds it.
START_SH = Path(str(resources.files("hyperbatch.worker_image") / "start.sh"))


class LocalCompute:
    def __init__(self, db: Database, home: Path, config_dir: Path, machine_env: dict[str, str] | None = None):
        self.db, self.home, self.config_dir = db, Path(home), Path(config_dir)
        self.machine_env = machine_env or {}  # the machine as the daemon sees it (hyperbatch.adapters.local.machine)
        self._children: dict[int, subprocess.Popen] = {}

    def start(self, region: str, queue: str, definition: str, count: int) -> int:
        for _ in range(count):
            worker = f"w-{secrets.token_hex(3)}"
            env = {
                **os.environ,
                "HYPER_BACKEND": "local",
                "HYPERBATCH_HOME": str(self.home),
                "HYPER_CONFIG_DIR": str(self.config_dir),
                "HYPER_QUEUE": queue,
                "HYPER_DEFINITION": definition,
                "HYPER_REGION": region,
                "HYPER_WORKER_ID": worker,
                "HYPER_PYTHON": sys.executable,
                **self.machine_env,
            }
            log = open(self.home / "workers" / f"{worker}.log", "ab")
            proc = subprocess.Popen(
                ["bash", str(START_SH)], env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.home,
            )
            log.close()
            self._children[proc.pid] = proc
            with self.db.write() as conn:
                conn.execute(
                    "INSERT INTO workers (id, pid, region, queue, definition, started_at) VALUES (?,?,?,?,?,?)",
                    (worker, proc.pid, region, queue, definition, time.time()),
                )
        return count

    def running(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        gone = []
        for worker, pid, region, queue in self.db.conn.execute("SELECT id, pid, region, queue FROM workers"):
            if self._alive(worker, pid):
                out[(region, queue)] = out.get((region, queue), 0) + 1
            else:
                gone.append(worker)
        for worker in gone:
            self._kill_job_of(worker)
        if gone:
            with self.db.write() as conn:
                conn.executemany("DELETE FROM workers WHERE id = ?", [(w,) for w in gone])
        return out

    def running_in(self, region: str) -> dict[str, int]:
        return {queue: n for (r, queue), n in self.running().items() if r == region}

    def workers(self) -> list[dict]:
        """The live workers (pbsnodes): id, region, queue, definition, started_at. Read only: the scaler's
        `running` is what forgets dead workers."""
        rows = self.db.conn.execute("SELECT id, pid, region, queue, definition, started_at FROM workers ORDER BY id")
        out = []
        for worker, pid, region, queue, definition, started_at in rows:
            if not self._alive(worker, pid):
                continue
            out.append({"id": worker, "region": region, "queue": queue, "definition": definition,
                        "started_at": started_at})
        return out

    def _alive(self, worker: str, pid: int) -> bool:
        """Whether `pid` is still worker `worker`'s start.sh (a worker of an earlier daemon counts while it
        lives; a pid the system has given to another process since does not)."""
        child = self._children.get(pid)
        if child is not None:
            if child.poll() is None:
                return True
            del self._children[pid]
            return False
        return started_with(pid, "HYPER_WORKER_ID", worker)

    def _kill_job_of(self, worker: str) -> None:
        """A worker that died hard leaves its job running: stop it, as a dying container would."""
        record = read_job_record(self._job_file(worker))
        if record is not None:
            signal_group(record.pgid, signal.SIGKILL)  # 0 (no job running) is refused there

    def _job_file(self, worker: str) -> Path:
        return self.home / "workers" / f"{worker}.job"

    def fence(self, host: str, job_id: str, item_id: str, attempt: int) -> None:
        """Kill the job that worker `host` ("region/worker") runs for this run, if it still runs it.

        The dispatcher calls this before it takes back the run of a worker
        that has been silent for a whole lease (hyperbatch.services.dispatch:
        `Dispatcher.fence`). A worker that is alive fenced itself a heartbeat
        earlier; one whose agent cannot act (stopped by SIGSTOP, starved) did
        not, and its job would run on beside the next run of the same work.
        The job file says which run the worker is on: another run (or none)
        means that this one's job has ended already, and nothing is killed; a
        run being started has no process group written yet, so every job
        process of the worker's session is killed.
        """
        worker = host.rpartition("/")[2]
        record = read_job_record(self._job_file(worker))
        if record is None or not record.names(job_id, item_id, attempt):
            return
        if record.pgid != STARTING:
            signal_group(record.pgid, signal.SIGKILL)
            return
        row = self.db.conn.execute("SELECT pid FROM workers WHERE id = ?", (worker,)).fetchone()
        if row is not None and self._alive(worker, row[0]):
            signal_session_jobs(row[0], signal.SIGKILL)  # start.sh leads the worker's session

    def signal_job(self, doc: dict, signame: str, index: int | None) -> bool:
        """qsig in local mode: send the signal to the job's process group at once. True when it went to
        the process its worker runs for this very job (or task); False leaves it to the worker's next
        heartbeat (an array's tasks are signalled one at a time only through there, when no index is given)."""
        if doc.get("array") is not None:
            if index is None:
                return False
            spec = parse_array(doc["array"])
            pos = spec.position_of(index)
            hosts = [c["worker"] for c in doc["chunks"].values() if pos is not None and c["lo"] <= pos < c["hi"]]
        else:
            hosts = [doc.get("exec_host")]
        if len(hosts) != 1 or not hosts[0]:
            return False
        record = read_job_record(self._job_file(str(hosts[0]).rsplit("/", 1)[-1]))
        if record is None or record.pgid <= 0 or record.job_id != doc["id"] or record.index != index:
            return False
        try:
            os.killpg(record.pgid, signal_number(signame))
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def stop_all(self, grace: float = 5.0) -> None:
        """Stop every worker (and the job it runs) this home's daemons started."""
        workers = [(w, pid) for w, pid in self.db.conn.execute("SELECT id, pid FROM workers") if self._alive(w, pid)]
        for _, pid in workers:
            # start.sh alone: it passes the request on to its agent, which hands back its work.
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace
        while time.time() < deadline and any(self._alive(w, pid) for w, pid in workers):
            time.sleep(0.05)
        for worker, pid in workers:
            if self._alive(worker, pid):
                signal_group(pid, signal.SIGKILL)
                self._kill_job_of(worker)
        with self.db.write() as conn:
            conn.execute("DELETE FROM workers")

"""Compute as local subprocesses: each worker is worker_image/start.sh, as in the container."""

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
from hyperbatch.core.ids import display_id
from hyperbatch.core.signals import number as signal_number
from hyperbatch.support.processes import signal_group
from hyperbatch.adapters.local.sqlite import Database

# worker_image/start.sh, installed as package data (hyperbatch.worker_image) so an installed copy finds it.
START_SH = Path(str(resources.files("hyperbatch.worker_image") / "start.sh"))


class LocalCompute:
    def __init__(self, db: Database, home: Path, config_dir: Path):
        self.db, self.home, self.config_dir = db, Path(home), Path(config_dir)
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
            if self._alive(pid):
                out[(region, queue)] = out.get((region, queue), 0) + 1
            else:
                gone.append(worker)
        for worker in gone:
            self._kill_job_of(worker)
        if gone:
            with self.db.write() as conn:
                conn.executemany("DELETE FROM workers WHERE id = ?", [(w,) for w in gone])
        return out

    def workers(self) -> list[dict]:
        """The live workers (pbsnodes): id, region, queue, definition, started_at. Read only: the scaler's
        `running` is what forgets dead workers."""
        rows = self.db.conn.execute("SELECT id, pid, region, queue, definition, started_at FROM workers ORDER BY id")
        out = []
        for worker, pid, region, queue, definition, started_at in rows:
            try:
                os.kill(pid, 0)
            except (ProcessLookupError, PermissionError):
                continue
            out.append({"id": worker, "region": region, "queue": queue, "definition": definition,
                        "started_at": started_at})
        return out

    def _alive(self, pid: int) -> bool:
        child = self._children.get(pid)
        if child is not None:
            if child.poll() is None:
                return True
            del self._children[pid]
            return False
        try:
            os.kill(pid, 0)  # a worker from an earlier daemon still counts while it lives
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def _kill_job_of(self, worker: str) -> None:
        """A worker that died hard leaves its job running: stop it, as a dying container would."""
        try:
            pgid = int((self.home / "workers" / f"{worker}.job").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return
        signal_group(pgid, signal.SIGKILL)  # 0 (no job running) is refused there

    def signal_job(self, doc: dict, signame: str, index: int | None) -> bool:
        """qsig in local mode: send the signal to the job's process group at once. True when it went to
        the process its worker runs for this very job (or task); False leaves it to the worker's next
        heartbeat (an array's tasks are signalled one at a time only through there, when no index is given)."""
        if doc.get("array") is not None and index is None:
            return False
        if doc.get("array") is not None:
            spec = parse_array(doc["array"])
            pos = spec.position_of(index)
            hosts = [c["worker"] for c in doc["chunks"].values() if pos is not None and c["lo"] <= pos < c["hi"]]
        else:
            hosts = [doc.get("exec_host")]
        if len(hosts) != 1 or not hosts[0]:
            return False
        worker = str(hosts[0]).rsplit("/", 1)[-1]
        try:
            pgid_text, _, label = (self.home / "workers" / f"{worker}.job").read_text().strip().partition(" ")
            pgid = int(pgid_text)
        except (FileNotFoundError, ValueError):
            return False
        if pgid <= 0 or label.strip() != display_id(doc, index):
            return False
        try:
            os.killpg(pgid, signal_number(signame))
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def stop_all(self, grace: float = 5.0) -> None:
        """Stop every worker (and the job it runs) this home's daemons started."""
        workers = self.db.conn.execute("SELECT id, pid FROM workers").fetchall()
        for _, pid in workers:
            # start.sh alone: it passes the request on to its agent, which hands back its work.
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace
        while time.time() < deadline and any(self._alive(pid) for _, pid in workers):
            time.sleep(0.05)
        for worker, pid in workers:
            if self._alive(pid):
                signal_group(pid, signal.SIGKILL)
                self._kill_job_of(worker)
        with self.db.write() as conn:
            conn.execute("DELETE FROM workers")

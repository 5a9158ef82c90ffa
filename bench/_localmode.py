"""Shared by the benchmarks: a throw-away local-mode HyperBatch in a temp HYPERBATCH_HOME.

    with LocalMode(workers=2, chunk_size=256) as hb:
        hb.warm_up()                       # every worker started and idle
        status, job = hb.api("POST", "/jobs", {"command": ["true"]})
        hb.cli("qsub", "--", "true")

The configuration is a temp copy of configurations/ reduced to one compute
region (us-east-1, local_max_workers = workers) and one queue (batch) whose
definition has jobs_to_workers_ratio 1 and max_workers = workers, so any
backlog >= workers starts exactly `workers` worker processes. Everything
(daemon, workers, temp directories) is cleaned up on exit, even on error or
SIGTERM/SIGINT.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
if not (BIN / "qsub").exists():
    BIN = REPO / ".venv" / "bin"
FINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def install_signal_cleanup() -> None:
    """Turn SIGTERM/SIGINT into SystemExit, so `finally` and `__exit__` clean up."""
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGINT, _raise_exit)


class LocalMode:
    def __init__(self, workers: int = 2, chunk_size: int = 256, idle_timeout: float = 600.0,
                 daemon_env: dict | None = None, settings_local: dict | None = None, base_dir: str | None = None):
        self.workers, self.chunk_size, self.idle_timeout = workers, chunk_size, idle_timeout
        self.daemon_env = daemon_env or {}
        self.settings_local = settings_local or {}
        self.base_dir = base_dir  # where the temp root goes (default: the system temp dir)
        self.root: Path | None = None
        self._conn: http.client.HTTPConnection | None = None

    # ---- set-up and tear-down -------------------------------------------------------------
    def __enter__(self) -> "LocalMode":
        self.root = Path(tempfile.mkdtemp(prefix="hb-bench-", dir=self.base_dir))
        try:
            self.home = self.root / "home"
            self.config_dir = self.root / "configurations"
            self.workdir = self.root / "work"
            self.workdir.mkdir()
            self._write_config()
            self.env = {**os.environ, "HYPERBATCH_HOME": str(self.home), **self.daemon_env}
            self.env.pop("HYPERBATCH_HOST", None)
            self.env.pop("HYPERBATCH_CONFIG", None)
            out = self.cli("hyper", "local", "up", "--port", "0", "--config", str(self.config_dir), check=True)
            state = json.loads((self.home / "daemon.json").read_text())
            self.url, self.port, self.daemon_pid = state["url"], int(state["port"]), int(state["pid"])
            self.token = (self.home / "token").read_text().strip()
            self.up_message = out.stdout.strip()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.root is None:
            return
        try:
            if (self.root / "home" / "daemon.json").exists():
                self.cli("hyper", "local", "down", timeout=60)
        except Exception as err:  # go on: the sweep below still stops what we started
            print(f"# warning: hyper local down failed: {err}", file=sys.stderr)
        self._kill_leftovers()
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def _kill_leftovers(self) -> None:
        """Processes started for this home (daemon, start.sh, agents, jobs) that outlived `down`."""
        needle = f"HYPERBATCH_HOME={self.root / 'home'}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                continue

    def _write_config(self) -> None:
        shutil.copytree(REPO / "configurations", self.config_dir)
        settings = json.loads((self.config_dir / "settings.json").read_text())
        settings["local"] = {"max_workers": self.workers, **settings.get("local", {}), **self.settings_local}
        main = settings["main_region"]
        regions = [r for r in json.loads((self.config_dir / "regions.json").read_text()) if r["name"] == main]
        regions[0].update(compute=True, local_max_workers=self.workers)
        definitions = json.loads((self.config_dir / "definitions.json").read_text())[:1]
        definitions[0].update(jobs_to_workers_ratio=1, max_workers=self.workers, chunk_size=self.chunk_size,
                              idle_timeout_seconds=self.idle_timeout)
        queues = [{"name": "batch", "cluster": "default", "definition": definitions[0]["name"], "priority": 10}]
        clusters = json.loads((self.config_dir / "clusters.json").read_text())[:1]
        clusters[0].pop("regions", None)
        for kind, data in (("settings", settings), ("regions", regions), ("definitions", definitions),
                           ("queues", queues), ("clusters", clusters)):
            (self.config_dir / f"{kind}.json").write_text(json.dumps(data, indent=2) + "\n")
        self.config = {"region": main, "local_max_workers": self.workers, "max_workers": self.workers,
                       "jobs_to_workers_ratio": 1, "chunk_size": self.chunk_size,
                       "idle_timeout_seconds": self.idle_timeout, "settings.local": self._effective_local()}

    def _effective_local(self) -> dict:
        """settings.local with the defaults filled in, as the daemon will read it."""
        try:
            from hyperbatch import config as config_models

            return config_models.load(self.config_dir).settings.local.model_dump()
        except Exception as err:  # the daemon will report a bad configuration itself
            return {"unreadable": str(err)}

    # ---- talking to it --------------------------------------------------------------------
    def cli(self, *argv: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(BIN / argv[0]), *argv[1:]], env=self.env, cwd=self.workdir,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def api(self, method: str, path: str, body=None) -> tuple[int, object]:
        """One request on a kept-alive connection (reconnects once if the server closed it)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self._conn.request(method, path, body=data, headers=headers)
                resp = self._conn.getresponse()
                raw = resp.read()
                if resp.will_close:
                    self._conn.close()
                    self._conn = None
                return resp.status, (json.loads(raw) if raw else None)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._conn.close()
                self._conn = None
                if attempt or method == "POST":
                    raise
        raise AssertionError("unreachable")

    def job(self, job_id: str) -> dict:
        status, body = self.api("GET", f"/jobs/{job_id}")
        if status != 200:
            raise RuntimeError(f"GET /jobs/{job_id}: {status} {body}")
        return body

    def submit(self, request: dict) -> dict:
        status, body = self.api("POST", "/jobs", request)
        if status != 201:
            raise RuntimeError(f"POST /jobs: {status} {body}")
        return body

    def wait_final(self, job_ids, timeout: float = 120.0, interval: float = 0.05) -> dict[str, dict]:
        pending, done = list(job_ids), {}
        deadline = time.monotonic() + timeout
        while pending:
            for job_id in list(pending):
                job = self.job(job_id)
                if job["state"] in FINAL:
                    done[job_id] = job
                    pending.remove(job_id)
            if pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"jobs {pending} not final after {timeout:g}s")
                time.sleep(interval)
        return done

    def workers_running(self) -> int:
        _, body = self.api("GET", "/queues")
        return sum(n for q in body["queues"] for n in q["workers"].values())

    def worker_pids(self) -> list[int]:
        """Pids of the agent processes (python -m hyperbatch.wiring.worker) of this home."""
        needle = f"HYPERBATCH_HOME={self.home}".encode()
        out = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                if b"hyperbatch.wiring.worker" in cmdline and needle in (entry / "environ").read_bytes().split(b"\0"):
                    out.append(int(entry.name))
            except OSError:
                continue
        return out

    def warm_up(self, rounds: int = 5) -> None:
        """Start every worker and leave it idle: `workers` single jobs of `sleep 1` until each ran on its own worker.

        Single jobs are claimed one per worker, and one second is longer than a
        worker takes to start, so after a round every worker has run one.
        """
        for _ in range(rounds):
            ids = [self.submit({"command": ["sleep", "1"], "name": "warmup"})["id"] for _ in range(self.workers)]
            done = self.wait_final(ids, timeout=60)
            hosts = {j["exec_host"] for j in done.values()}
            if len(hosts) >= self.workers and len(self.worker_pids()) == self.workers:
                break
        else:
            raise RuntimeError(f"warm-up: wanted {self.workers} workers, have {len(self.worker_pids())}")
        time.sleep(0.5)  # let the agents go back to polling


TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> tuple[float, float]:
    """(own user+sys seconds, reaped children's user+sys seconds) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / TICK, (cutime + cstime) / TICK


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank-with-interpolation percentile (p in 0..100)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)

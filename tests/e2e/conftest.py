"""End-to-end fixtures: a real local daemon per test module, driven through the real CLI.

Every test module gets its own daemon (module-scoped fixture `hb`) in a fresh
HYPERBATCH_HOME with a tmp copy of configurations/ tuned for speed (short
lease, heartbeat and idle timeout). Tests run the installed console scripts
(qsub, qstat, ...) as subprocesses with `hb.run(...)` and wait for states with
`hb.wait_state(...)`; every wait is bounded.

A module can adjust its configuration by defining

    def e2e_configure(config: dict) -> None:   # config["settings"], config["queues"], ...
        ...

which edits the parsed JSON files before the daemon starts.

Modules mark themselves with `pytest.mark.e2e` and `pytest.mark.xdist_group(<module>)`
so that `pytest -n 2 --dist loadgroup` keeps one daemon's tests in one xdist worker
(see `pytest_collection_modifyitems` below for why that needs help under pytest 9.2).

Teardown runs `hyper local down`, then kills whatever process still carries this
module's HYPERBATCH_HOME in its environment (daemon, start.sh, agents, jobs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterable

import pytest

from tests import polling

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
if not (BIN / "qsub").exists():
    BIN = REPO / ".venv" / "bin"
CONFIG_SRC = REPO / "configurations"
FINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
ID_RE = re.compile(r"[1-9][0-9]*(\[\])?\.[A-Za-z0-9_][A-Za-z0-9_.-]*")  # 1234.server, 1234[].server
DEFAULT_TIMEOUT = 30.0
MAX_WAIT = 60.0

# Faster than the shipped defaults, so that leases, cancels and idle workers show within seconds.
LOCAL_SETTINGS = {
    "lease_seconds": 3,
    "heartbeat_seconds": 0.5,
    "scaler_interval_seconds": 0.25,
    "reconciler_interval_seconds": 0.5,
}
IDLE_TIMEOUT_SECONDS = 3


# ---------------------------------------------------------------------------------------------
# helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def children(pid: int) -> list[int]:
    """Direct children of `pid` (what `pgrep -P pid` prints)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(entry.name))
    return out


def processes_with_env(key: str, value: str, prefix: bool = False) -> list[int]:
    """Pids of live processes whose environment holds key=value (key=value... with `prefix`)."""
    needle = f"{key}={value}".encode()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        entries = environ.split(b"\0")
        found = any(e.startswith(needle) for e in entries) if prefix else needle in entries
        if found and pid_alive(int(entry.name)):
            out.append(int(entry.name))
    return out


def wait_for(predicate, timeout: float = DEFAULT_TIMEOUT, interval: float = 0.2, what: str = "condition"):
    """Poll `predicate` until it returns something truthy (returned); AssertionError after `timeout`."""
    assert timeout <= MAX_WAIT, f"waits are bounded by {MAX_WAIT}s"
    return polling.wait_for(predicate, timeout, interval, what)


def task_id(array_id: str, index: int) -> str:
    """`12[7].server` of the array `12[].server`."""
    return array_id.replace("[]", f"[{index}]", 1)


def one_line(stderr: str) -> str:
    """The single line a failing command must print on stderr (asserts there is exactly one)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {stderr!r}"
    return lines[0]


# ---------------------------------------------------------------------------------------------
# the daemon under test


class Daemon:
    """One HYPERBATCH_HOME, its configuration and the local daemon serving it."""

    def __init__(self, root: Path, configure=None):
        self.root = root
        self.home = root / "home"
        self.config_dir = root / "configurations"
        self.workdir = root / "work"  # where job scripts are written; the commands' default cwd
        self.workdir.mkdir(parents=True)
        self.user_home = root / "userhome"
        self.user_home.mkdir()
        self.cwd = self.workdir
        self.port = free_port()
        self.submitted: list[str] = []  # every id `submit` saw accepted, for no-job-lost checks
        self._write_config(configure)
        self.env = self._environment()

    # -- setup ------------------------------------------------------------------------------

    def _write_config(self, configure) -> None:
        shutil.copytree(CONFIG_SRC, self.config_dir)
        config = {p.stem: json.loads(p.read_text()) for p in self.config_dir.glob("*.json")}
        config["settings"].setdefault("local", {}).update(LOCAL_SETTINGS, port=self.port)
        for definition in config["definitions"]:
            definition["idle_timeout_seconds"] = IDLE_TIMEOUT_SECONDS
        if configure is not None:
            configure(config)
        for name, data in config.items():
            (self.config_dir / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")

    def _environment(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("HYPERBATCH_", "HYPER_", "PBS_")) and k not in ("PYTEST_CURRENT_TEST",)
        }
        env["HYPERBATCH_HOME"] = str(self.home)
        env["HOME"] = str(self.user_home)  # the submitter's home: where jobs start (PBS_O_HOME)
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"
        if not _package_importable_outside_repo():
            # The venv's editable install predates hyperbatch/__init__.py, so outside the repo
            # `python -m hyperbatch.wiring.daemon` imports hyperbatch as a namespace package and
            # fails (no __version__). Re-running `pip install -e .` fixes it; until then, point
            # the daemon and workers at the repo explicitly.
            warnings.warn(
                "the editable install in .venv is stale (hyperbatch imports as a namespace package "
                "outside the repo); re-run `.venv/bin/pip install -e .` — using PYTHONPATH meanwhile",
                stacklevel=1,
            )
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        return env

    # -- running commands -------------------------------------------------------------------

    def run(self, *args: Any, check: bool = True, input: str | None = None,
            timeout: float = DEFAULT_TIMEOUT, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a console script (`qsub`, `hyper`, ...) with this daemon's environment (or `env`)."""
        argv = [str(a) for a in args]
        argv[0] = str(BIN / argv[0]) if (BIN / argv[0]).exists() else argv[0]
        proc = subprocess.run(
            argv, env=env or self.env, cwd=cwd or self.cwd, input=input, capture_output=True, text=True,
            timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def popen(self, *args: Any, **kwargs) -> subprocess.Popen:
        argv = [str(a) for a in args]
        argv[0] = str(BIN / argv[0]) if (BIN / argv[0]).exists() else argv[0]
        return subprocess.Popen(
            argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, **kwargs,
        )

    def script(self, text: str, name: str = "job.sh") -> Path:
        """Write a job script into the work directory and return its path."""
        path = self.workdir / name
        path.write_text(text)
        return path

    def submit(self, *args: Any, input: str | None = None) -> str:
        """`qsub ARGS`; asserts it printed the id alone and returns the id."""
        proc = self.run("qsub", *args, input=input)
        assert ID_RE.fullmatch(proc.stdout.strip()), f"qsub printed {proc.stdout!r}, not a job id"
        assert proc.stdout == proc.stdout.strip() + "\n", f"qsub printed more than the id: {proc.stdout!r}"
        job_id = proc.stdout.strip()
        self.submitted.append(job_id)
        return job_id

    # -- looking at jobs --------------------------------------------------------------------

    def jobs(self, *ids: str) -> list[dict]:
        """`qstat -x --json [ID...]`: every job (or the named ones) as the API shows them."""
        return json.loads(self.run("qstat", "-x", "--json", *ids).stdout)

    def job(self, job_id: str) -> dict:
        [job] = self.jobs(job_id)
        return job

    def full(self, job_id: str) -> dict[str, str]:
        """`qstat -f -x ID` as {attribute: value} (-x: finished jobs too; -w: one line per attribute)."""
        out = self.run("qstat", "-fxw", job_id).stdout
        assert out.startswith(f"Job Id: {job_id}\n"), out
        attrs = {}
        for line in out.splitlines()[1:]:
            key, sep, value = line.strip().partition(" = ")
            if sep:
                attrs[key] = value
        return attrs

    def wait_state(self, job_id: str, states: str | Iterable[str], timeout: float = DEFAULT_TIMEOUT) -> dict:
        """Poll `qstat -x --json ID` until the job is in one of `states`; returns the job."""
        wanted = {states} if isinstance(states, str) else set(states)
        seen: dict = {}

        def check():
            seen["job"] = self.job(job_id)
            return seen["job"] if seen["job"]["state"] in wanted else None

        try:
            return wait_for(check, timeout, interval=0.25, what=f"{job_id} to be {'/'.join(sorted(wanted))}")
        except AssertionError as exc:
            job = seen.get("job") or {}
            raise AssertionError(
                f"{exc}; last seen {job.get('state')} ({job.get('reason')!r})\n{self.diagnostics()}"
            ) from None

    def wait_all_final(self, ids: Iterable[str], timeout: float = DEFAULT_TIMEOUT) -> list[dict]:
        ids = list(ids)
        box: dict = {}

        def check():
            box["jobs"] = self.jobs(*ids)
            return box["jobs"] if all(j["state"] in FINAL for j in box["jobs"]) else None

        try:
            return wait_for(check, timeout, interval=0.5, what=f"{len(ids)} jobs to finish")
        except AssertionError as exc:
            states: dict[str, int] = {}
            for j in box.get("jobs") or []:
                states[j["state"]] = states.get(j["state"], 0) + 1
            raise AssertionError(f"{exc}; states {states}\n{self.diagnostics()}") from None

    # -- the daemon -------------------------------------------------------------------------

    @property
    def state(self) -> dict | None:
        try:
            return json.loads((self.home / "daemon.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    @property
    def token(self) -> str:
        return (self.home / "token").read_text().strip()

    @property
    def server(self) -> str:
        """The PBS server name in job ids (`1.<server>`): this host's short name in local mode."""
        return socket.gethostname().split(".", 1)[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[dict]:
        """Rows of the `workers` table (id, pid, region, queue) in the daemon's SQLite store."""
        conn = sqlite3.connect(f"file:{self.home / 'state.db'}?mode=ro", uri=True, timeout=10)
        try:
            rows = conn.execute("SELECT id, pid, region, queue FROM workers").fetchall()
        finally:
            conn.close()
        return [dict(zip(("id", "pid", "region", "queue"), row)) for row in rows]

    def up(self) -> subprocess.CompletedProcess:
        proc = self.run("hyper", "local", "up", "--port", self.port, "--config", self.config_dir, timeout=40)
        assert self.state is not None, f"hyper local up printed {proc.stdout!r} but wrote no daemon.json"
        self.daemon_pids = getattr(self, "daemon_pids", []) + [int(self.state["pid"])]
        return proc

    def down(self, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("hyper", "local", "down", check=check, timeout=40)

    def leftovers(self) -> list[int]:
        """Live processes started for this home (daemon and workers by HYPERBATCH_HOME; jobs, whose clean
        environment has none of the daemon's, by their PBS_NODEFILE under it)."""
        found = set(processes_with_env("HYPERBATCH_HOME", str(self.home)))
        if self.env["HYPERBATCH_HOME"] != str(self.home):  # a test gave the home as a relative path
            found.update(processes_with_env("HYPERBATCH_HOME", self.env["HYPERBATCH_HOME"]))
        found.update(processes_with_env("PBS_NODEFILE", f"{self.home.resolve()}/", prefix=True))
        return sorted(found)

    def kill_everything(self) -> list[int]:
        """Safety net: SIGKILL whatever this home's daemon, workers and jobs left behind."""
        killed = []
        for pid in getattr(self, "daemon_pids", []):
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        for _ in range(3):
            found = self.leftovers()
            if not found:
                break
            for pid in found:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        return killed

    def diagnostics(self, lines: int = 25) -> str:
        parts = []
        log = self.home / "daemon.log"
        if log.exists():
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append("daemon.log:\n  " + "\n  ".join(tail))
        for worker_log in sorted((self.home / "workers").glob("*.log"))[-4:]:
            tail = worker_log.read_text(errors="replace").splitlines()[-6:]
            if tail:
                parts.append(f"{worker_log.name}:\n  " + "\n  ".join(tail))
        return "\n".join(parts)


_IMPORT_CHECK: dict[str, bool] = {}


def _package_importable_outside_repo() -> bool:
    """Does `python -m hyperbatch...` work from a directory other than the repo (as the daemon runs)?"""
    if "ok" not in _IMPORT_CHECK:
        proc = subprocess.run(
            [str(BIN / "python"), "-c", "import hyperbatch; hyperbatch.__version__"],
            cwd="/", capture_output=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
        _IMPORT_CHECK["ok"] = proc.returncode == 0
    return _IMPORT_CHECK["ok"]


# ---------------------------------------------------------------------------------------------
# xdist: keep each module (one daemon) in one worker


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Make `--dist loadgroup` group these tests again under pytest >= 9.2.

    pytest-xdist (3.8) tells the scheduler a test's group by appending `@group` to
    `item._nodeid`, but pytest 9.2 keeps node ids in `item._id` (a NodeId), so the suffix
    is lost and grouped tests are spread over all workers (pytest-xdist issue #1386):
    every worker then starts its own daemon for every module. Where xdist's suffix did
    not take, add it here, the way xdist would; with a pytest/xdist pair that works, this
    does nothing.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    here = Path(__file__).resolve().parent
    for item in items:
        if here not in Path(str(item.path)).resolve().parents:
            continue
        nodeid = item.nodeid
        if nodeid.rfind("@") > nodeid.rfind("]"):
            continue  # xdist's own suffix is there
        groups = sorted(
            {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
        )
        if not groups or not hasattr(item, "_id"):
            continue
        try:
            from _pytest.nodeid import NodeId
        except ImportError:  # an older pytest: xdist's own mechanism applies
            return
        item._id = NodeId.parse(f"{nodeid}@{'_'.join(groups)}")


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def hb(request, tmp_path_factory) -> Daemon:
    """A running local daemon for this test module; stopped (and anything left killed) afterwards."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    daemon = Daemon(tmp_path_factory.mktemp(name), getattr(request.module, "e2e_configure", None))
    try:
        daemon.up()
        yield daemon
    finally:
        try:
            daemon.down(check=False)
        except subprocess.TimeoutExpired:
            pass
        killed = daemon.kill_everything()
        if killed:
            warnings.warn(f"{name}: killed {len(killed)} processes left after `hyper local down`: {killed}")


@pytest.fixture(scope="module")
def run(hb):
    """run(*args, check=True, input=None, timeout=30) -> CompletedProcess, against this module's daemon."""
    return hb.run


@pytest.fixture(scope="module")
def wait_state(hb):
    """wait_state(job_id, states, timeout=30) -> the job once `qstat -x --json` shows one of `states`."""
    return hb.wait_state

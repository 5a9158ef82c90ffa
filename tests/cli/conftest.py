"""HyperBatch APIs on 127.0.0.1 and helpers that run the real console scripts against them.

`api` is a fake that follows the API contract closely enough for qsub and
qlog: it stores jobs in memory, records every request, and lets a test script
state changes (`api.progress`), log chunks (`api.logs`) and canned answers
(`api.override`). `server` is the real API application over a real SQLite
store (no workers): tests move its jobs through their states with the
dispatcher, as a worker would, and the PBS commands read them as users do.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

# The venv's bin, where qsub & co. are installed as console scripts.
BIN = Path(sys.executable).parent
if not (BIN / "qsub").exists():
    BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
TOKEN = "test-token-0123456789"
USER = "alice"
FINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}
SERVER = "testhost"  # the PBS server name both APIs give their jobs (1.testhost)


def job_defaults(job_id: str, **fields: Any) -> dict[str, Any]:
    job = {
        "id": job_id,
        "name": "job",
        "owner": USER,
        "queue": "default",
        "definition": "default",
        "state": "QUEUED",
        "attempt": 1,
        "run_count": 0,
        "max_attempts": 1,
        "priority": 0,
        "exit_status": None,
        "reason": "",
        "submitted_at": 1_700_000_000.0,
        "started_at": None,
        "finished_at": None,
        "exec_host": None,
        "walltime": None,
        "env": {},
        "resources": {},
        "depend": "",
        "command": None,
        "script_name": None,
        "array": None,
        "cpu_seconds": None,
    }
    job.update(fields)
    return job


def log_chunk(data: bytes, offset: int, final: bool, state: str) -> dict[str, Any]:
    """A GET /jobs/ID/log answer, as the API gives it: the bytes in base64, byte offsets."""
    return {"data": base64.b64encode(data).decode(), "encoding": "base64", "offset": offset + len(data),
            "final": final, "state": state}


class FakeApi:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, list[dict[str, Any]]] = {}
        self.logs: dict[tuple[str, str, Any], list[tuple[str | bytes, bool]]] = {}
        self.progress: dict[str, list[dict[str, Any]]] = {}
        self.overrides: dict[tuple[str, str], Callable[..., tuple[int, Any]] | tuple[int, Any]] = {}
        self.page_size = 2
        self._counter = 0
        self._lock = threading.Lock()
        self.url = ""

    # -- test helpers ---------------------------------------------------------------------

    def new_id(self) -> str:
        self._counter += 1
        return f"{self._counter}.{SERVER}"

    def add(self, **fields: Any) -> dict[str, Any]:
        job = job_defaults(fields.pop("id", None) or self.new_id(), **fields)
        self.jobs[job["id"]] = job
        return job

    def override(self, method: str, path: str, answer: Callable[..., tuple[int, Any]] | tuple[int, Any]) -> None:
        self.overrides[(method, path)] = answer

    def calls(self, method: str | None = None, path_prefix: str = "") -> list[dict[str, Any]]:
        return [
            r
            for r in self.requests
            if (method is None or r["method"] == method) and r["path"].startswith(path_prefix)
        ]

    # -- the API ----------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        key = (method, path)
        if key in self.overrides:
            answer = self.overrides[key]
            return answer(query, body) if callable(answer) else answer
        if headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, {"error": "Unauthorized", "message": "missing or bad bearer token"}
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts == ["health"]:
            return 200, {"status": "ok", "version": "test"}
        if parts == ["jobs"] and method == "POST":
            return self._submit(body)
        if parts == ["jobs"] and method == "GET":
            return self._list(query)
        if len(parts) >= 2 and parts[0] == "jobs":
            job = self.jobs.get(parts[1]) or self.jobs.get(f"{parts[1]}.{SERVER}")
            if job is None:
                known = parts[1] if "." in parts[1] else f"{parts[1]}.{SERVER}"
                return 404, {"error": "NotFound", "message": f"Unknown Job Id {known}", "pbs_errno": 15001,
                             "job_id": known}
            rest = parts[2:]
            if not rest and method == "GET":
                patches = self.progress.get(job["id"])
                if patches:
                    job.update(patches.pop(0))
                return 200, job
            if not rest and method == "DELETE":
                if "index" in query:  # one array task
                    return 200, job
                if job["state"] in FINAL:
                    return 409, {"error": "JobFinished", "message": f"job {job['id']} has already finished",
                                 "pbs_errno": 15139, "job_id": job["id"]}
                job.update(state="CANCELLED", reason="cancelled by qdel")
                return 200, job
            if rest == ["hold"] and method == "POST":
                job["state"] = "HELD"
                return 200, job
            if rest == ["release"] and method == "POST":
                if job["state"] != "HELD":
                    return 409, {"error": "Conflict", "message": f"job {job['id']} is not held",
                                 "pbs_errno": 15016, "job_id": job["id"]}
                job["state"] = "QUEUED"
                return 200, job
            if rest == ["tasks"] and method == "GET":
                if not job.get("array"):
                    return 409, {"error": "Conflict", "message": f"job {job['id']} is not an array"}
                tasks = self.tasks.get(job["id"], [])
                offset, limit = int(query.get("offset", 0)), int(query.get("limit", 1000))
                page = tasks[offset : offset + limit]
                nxt = offset + limit if offset + limit < len(tasks) else None
                return 200, {"tasks": page, "next": nxt}
            if rest == ["log"] and method == "GET":
                index = int(query["index"]) if "index" in query else None
                chunks = self.logs.get((job["id"], query.get("stream", "stdout"), index))
                offset = int(query.get("offset", 0))
                if not chunks:
                    return 200, log_chunk(b"", offset, job["state"] in FINAL, job["state"])
                data, final = chunks.pop(0)
                if not chunks:
                    chunks.append(("", final))  # the last chunk is served once, then only its finality
                raw = data.encode() if isinstance(data, str) else data
                return 200, log_chunk(raw, offset, final, job["state"])
        return 404, {"error": "NotFound", "message": f"no route {method} {path}"}

    def _submit(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            return 400, {"error": "BadRequest", "message": "body must be a JSON object"}
        if "jobs" in body:
            return 201, {"jobs": [self._submit(one)[1] for one in body["jobs"]]}
        job = self.add(
            name=body.get("name") or body.get("script_name") or "job",
            queue=body.get("queue") or "default",
            state="HELD" if body.get("hold") else "QUEUED",
            command=body.get("command"),
            script_name=body.get("script_name"),
            env=body.get("env") or {},
            resources=body.get("resources") or {},
            depend=body.get("depend") or "",
            max_attempts=body.get("max_attempts") or 1,
            priority=body.get("priority") or 0,
        )
        return 201, job

    def _list(self, query: dict[str, str]) -> tuple[int, Any]:
        jobs = list(self.jobs.values())
        if query.get("state"):
            wanted = set(query["state"].split(","))
            jobs = [j for j in jobs if j["state"] in wanted]
        owner = query.get("owner")
        if owner != "*":
            jobs = [j for j in jobs if j["owner"] == (owner or USER)]
        jobs.sort(key=lambda j: int(j["id"].split(".")[0].split("[")[0]), reverse=True)  # newest first
        start = int(query.get("next") or 0)
        page = jobs[start : start + self.page_size]
        nxt = str(start + self.page_size) if start + self.page_size < len(jobs) else None
        return 200, {"jobs": page, "next": nxt}


def _handler_for(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stalls

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with api._lock:
                api.requests.append(
                    {
                        "method": self.command,
                        "path": parts.path,
                        "raw_path": self.path,
                        "query": query,
                        "body": body,
                        "raw_body": raw,
                        "headers": headers,
                    }
                )
                status, payload = api.handle(self.command, parts.path, query, body, headers)
            out = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def api() -> Any:
    fake = FakeApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def home(tmp_path: Path, api: FakeApi) -> Path:
    """$HYPERBATCH_HOME with one local host pointing at the fake API."""
    state = tmp_path / "hbhome"
    state.mkdir()
    token = state / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    hosts = {"selected": "local", "hosts": {"local": {"kind": "local", "url": api.url, "token_file": str(token)}}}
    (state / "hosts.json").write_text(json.dumps(hosts))
    return state


@pytest.fixture
def cli(home: Path, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """cli("qsub", "-N", "x", "--", "true", input=None, env={...}) runs the installed console script
    (binary=True: stdout and stderr as bytes)."""
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)

    def run(
        command: str, *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 15,
        binary: bool = False,
    ) -> subprocess.CompletedProcess:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("HYPERBATCH_")}
        full_env.update(HYPERBATCH_HOME=str(home), LOGNAME=USER, USER=USER, LC_ALL="C.UTF-8")
        full_env.update(env or {})
        return subprocess.run(
            [str(BIN / command), *args],
            input=(input or "").encode() if binary else input if input is not None else "",
            capture_output=True,
            text=not binary,
            env=full_env,
            cwd=workdir,
            timeout=timeout,
        )

    run.workdir = workdir  # type: ignore[attr-defined]
    return run


@pytest.fixture
def inproc(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """inproc("qsub", "-N", "x", "--", "true", env={...}) -> (exit code, stdout, stderr), in this process.

    For the many option-parsing cases where a fresh interpreter per case would only cost time;
    the `cli` fixture covers the installed console scripts themselves.
    """
    import importlib

    modules = COMMANDS

    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)

    def run(command: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        with monkeypatch.context() as m:
            for key in [k for k in os.environ if k.startswith("HYPERBATCH_")]:
                m.delenv(key)
            m.setenv("HYPERBATCH_HOME", str(home))
            m.setenv("LOGNAME", USER)
            for key, value in (env or {}).items():
                m.setenv(key, value)
            m.chdir(workdir)
            capsys.readouterr()
            module = importlib.import_module(f"hyperbatch.cli.pbs.{modules[command]}")
            code = getattr(module, f"{command}_main")(list(args))
            out, err = capsys.readouterr()
        return code, out, err

    run.workdir = workdir  # type: ignore[attr-defined]
    return run


# ---------------------------------------------------------------------------------------------
# the real API over a real store, without workers


COMMANDS = {  # command -> module of hyperbatch.cli.pbs with its `<command>_main`
    "qsub": "qsub", "qstat": "qstat", "qlog": "qlog", "qdel": "control", "qhold": "control", "qrls": "control",
    "qselect": "qselect", "qalter": "qalter", "qrerun": "simple", "qsig": "simple", "qmove": "simple",
    "tracejob": "tracejob", "pbsnodes": "pbsnodes",
}


class RealServer:
    """The API application (hyperbatch.api) over a SQLite store in a tmp dir, served on 127.0.0.1.

    No daemon loops and no workers: `start` and `finish` move a job as a worker would
    (hyperbatch.services.dispatch), `deliver` releases dependents as the daemon's event loop does.
    """

    def __init__(self, root: Path):
        from hyperbatch import config
        from hyperbatch.adapters.local import open_local
        from hyperbatch.adapters.local.http import make_server
        from hyperbatch.api import build_app
        from hyperbatch.core.resources import Amount
        from hyperbatch.services.dispatch import Dispatcher
        from hyperbatch.services.scheduler import Caller, Scheduler

        self.backend = open_local(root / "state")
        self.config = config.load(Path(__file__).resolve().parents[2] / "configurations")
        # A machine like local mode's, larger than the shipped definition, so jobs may ask for 4 CPUs.
        machine = Amount(8, 16 << 30, 0)
        self.scheduler = Scheduler(self.config, self.backend.store, self.backend.queue, self.backend.logs,
                                   server=SERVER, offer=lambda definition: machine)
        self.worker = Dispatcher(self.backend.store, self.backend.queue, "w-test", "us-east-1", lease_seconds=30)
        self.caller = Caller(USER, admin=True)
        self.nodes: list[dict[str, Any]] = []
        app = build_app(self.scheduler, lambda event: Caller(event["headers"].get("x-hyper-user") or USER, admin=True),
                        lambda: {}, nodes=lambda: self.nodes)
        self.http = make_server(app, 0)
        threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self._events = 0

    def submit(self, **request: Any) -> dict[str, Any]:
        """Submit one job (a command `true` unless given); returns its internal document."""
        request.setdefault("command", ["true"])
        return self.scheduler.submit([request], self.caller)[0]

    def start(self, queue: str = "batch", max_tasks: int = 100):
        item = self.backend.queue.claim(queue, self.worker.worker, max_tasks, 30.0)
        assert item is not None, "nothing to run"
        return self.worker.start(item)

    def finish(self, run, status: int = 0, **outcome: Any) -> None:
        from hyperbatch.services.dispatch import Outcome

        if run.job.get("array") is not None:
            self.worker.finish_tasks(run, {p: Outcome(status, **outcome) for p in run.positions})
        else:
            self.worker.finish_job(run, Outcome(status, **outcome))
        self.deliver()

    def run_next(self, status: int = 0, queue: str = "batch") -> None:
        self.finish(self.start(queue), status)

    def run_all(self, status: int = 0, queue: str = "batch", max_tasks: int = 1) -> None:
        """Run whatever work is waiting in `queue`, each item to the end with `status`."""
        while (item := self.backend.queue.claim(queue, self.worker.worker, max_tasks, 30.0)) is not None:
            run = self.worker.start(item)
            if run is not None:
                self.finish(run, status)

    def job(self, job_id: str) -> dict[str, Any]:
        return self.backend.store.get(job_id.split(".")[0].split("[")[0])

    def deliver(self) -> None:
        from hyperbatch.services.release import on_event

        while True:
            batch = self.backend.store.events_after(self._events)
            if not batch:
                return
            for self._events, event in batch:
                on_event(self.scheduler, event)

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Any:
    real = RealServer(tmp_path)
    yield real
    real.close()


@pytest.fixture
def pbs(server: RealServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """pbs("qstat", "-f", "1") -> (exit code, stdout, stderr): a PBS command, in this process, against `server`."""
    import importlib

    state = tmp_path / "realhome"
    state.mkdir()
    token = state / "token"
    token.write_text(TOKEN + "\n")
    hosts = {"selected": "local", "hosts": {"local": {"kind": "local", "url": server.url, "token_file": str(token)}}}
    (state / "hosts.json").write_text(json.dumps(hosts))
    workdir = tmp_path / "pbswork"
    workdir.mkdir()

    def run(command: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        with monkeypatch.context() as m:
            for key in [k for k in os.environ if k.startswith("HYPERBATCH_")]:
                m.delenv(key)
            m.setenv("HYPERBATCH_HOME", str(state))
            m.setenv("LOGNAME", USER)
            for key, value in (env or {}).items():
                m.setenv(key, value)
            m.chdir(workdir)
            capsys.readouterr()
            module = importlib.import_module(f"hyperbatch.cli.pbs.{COMMANDS[command]}")
            code = getattr(module, f"{command}_main")(list(args))
            out, err = capsys.readouterr()
        return code, out, err

    run.server = server  # type: ignore[attr-defined]
    return run

"""`hyper`: manage HyperBatch hosts, deployments and resources, and run local mode.

    hyper local up [--port N] [--config DIR]   start the local daemon in the background
    hyper local status                         URL, pid, workers per region, jobs per state, parked events
    hyper local down                           stop it and every worker it started
    hyper top [--once] [--user U] [--queue Q]  watch queues, workers, arrays' progress, failures (cli/top.py)
    hyper workflow submit|status|show ...      a DAG of jobs from one YAML file (cli/workflow.py)
    hyper dashboard [--host NAME]              the web dashboard (AWS hosts: through a local signing proxy)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from hyperbatch.cli.errors import CliError
from hyperbatch.cli.workflow import workflow

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


@click.group(context_settings=CONTEXT)
def hyper() -> None:
    """Manage HyperBatch: local mode, hosts, deployments and their resources."""


@hyper.group(context_settings=CONTEXT)
def local() -> None:
    """Run the whole scheduler on this machine (no AWS account needed)."""


def _home() -> Path:
    from hyperbatch.cli.host_registry import home

    return home()


def _checked_home() -> Path:
    """The home, refused in one line if other users may use it (hyperbatch.support.local_home, rule 1)."""
    from hyperbatch.support import local_home

    home = _home()
    try:
        local_home.check_home(home)
    except local_home.HomeError as exc:
        raise CliError(str(exc)) from None
    return home


def _daemon_pid(home: Path, expected: int | None = None) -> int | None:
    """The pid of the daemon proven to serve `home` (it holds the home's lock), or None."""
    from hyperbatch.support import local_home

    try:
        return local_home.lock_holder(home, expected)
    except local_home.HomeError as exc:
        raise CliError(str(exc)) from None


def _daemon_state(home: Path) -> dict | None:
    """daemon.json of the running daemon, or None when no daemon serves `home`.

    Proof of life is the daemon's lock, never a pid in a file: a daemon.json left by a daemon that
    is gone is ignored, whatever pid it names (only a daemon writes or removes its daemon.json). One
    line, exit 1, when a daemon runs but its daemon.json is damaged or not its own: `hyper local up`
    has it rewritten.
    """
    from hyperbatch.support import local_home

    try:
        state = local_home.read_state(home)
        problem = None
    except local_home.DaemonFileError as exc:
        state, problem = None, str(exc)
    pid = _daemon_pid(home, state["pid"] if state else None)
    if pid is None:
        return None
    if state is not None and state["pid"] == pid:
        return state
    problem = problem or (f"{home / local_home.STATE_FILE} is missing" if state is None
                          else f"{home / local_home.STATE_FILE} names pid {state['pid']}, not the daemon's")
    raise CliError(f"HyperBatch local mode runs (pid {pid}), but {problem}: run `hyper local up` to have it rewritten")


def _local_entry(state: dict) -> dict:
    return {"kind": "local", "url": state["url"], "token_file": str(_home() / "token")}


@local.command("up")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port on 127.0.0.1 (default: settings.json local.port, 8765).")
@click.option("--config", "config_dir", type=click.Path(path_type=Path), default=None,
              help="Configuration directory (default: $HYPERBATCH_CONFIG, ./configurations, else the packaged one).")
def local_up(port: int | None, config_dir: Path | None) -> None:
    """Start the local daemon in the background; return once it answers.

    HYPERBATCH_HOME must be private (mode 0700, yours): a home other users may read or write is
    refused. If the daemon already runs, its token file and daemon.json are rewritten when missing.
    """
    from hyperbatch.cli.host_registry import load_hosts, register

    home = _checked_home()
    pid = _daemon_pid(home)
    if pid is not None:
        _repair(home, pid)
        return
    from hyperbatch.cli.manage.common import configuration_dir

    config_dir = configuration_dir(config_dir, packaged_default=True)
    if port is None:
        port = _configured_port(config_dir)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = home / "daemon.log"
    with open(log_path, "ab") as log:
        start = log.tell()
        proc = subprocess.Popen(
            [sys.executable, "-m", "hyperbatch.wiring.daemon", "--home", str(home),
             "--config", str(config_dir), "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    state = _wait_until_up(proc, log_path, start)
    register("local", _local_entry(state), select=not load_hosts().get("selected"))
    click.echo(f"HyperBatch local mode is up at {state['url']} (pid {state['pid']}); state in {home}; "
               f"configuration {config_dir}")


def _repair(home: Path, pid: int) -> None:
    """Daemon `pid` runs: have it rewrite its token file and daemon.json if either is missing or damaged."""
    from hyperbatch.support import local_home

    def intact() -> dict | None:
        try:
            state = local_home.read_state(home)
        except local_home.DaemonFileError:
            return None
        token = home / local_home.TOKEN_FILE
        return state if state and state["pid"] == pid and token.is_file() and token.stat().st_size else None

    state = intact()
    if state is None:
        os.kill(pid, signal.SIGHUP)  # the daemon's own files: only it knows the token
        deadline = time.time() + START_TIMEOUT
        while (state := intact()) is None and time.time() < deadline:
            time.sleep(0.05)
        if state is None:
            raise CliError(f"HyperBatch local mode runs (pid {pid}) but did not rewrite its files in "
                           f"{START_TIMEOUT:g}s; see {home / 'daemon.log'}")
        click.echo(f"HyperBatch local mode is already running at {state['url']} (pid {pid}); "
                   f"rewrote its token file and daemon.json")
        return
    click.echo(f"HyperBatch local mode is already running at {state['url']} (pid {state['pid']})")


def _configured_port(config_dir: Path) -> int:
    try:
        settings = json.loads((config_dir / "settings.json").read_text())
        return int(settings.get("local", {}).get("port", 8765))
    except (OSError, ValueError, AttributeError):
        return 8765  # the daemon reports the real problem with the file


def _wait_until_up(proc: subprocess.Popen, log_path: Path, start: int) -> dict:
    from hyperbatch.cli.client import Client
    from hyperbatch.support import local_home

    home = log_path.parent
    deadline = time.time() + START_TIMEOUT
    while time.time() < deadline:
        code = proc.poll()
        if code is not None:
            tail = log_path.read_bytes()[start:].decode(errors="replace").strip().splitlines()
            reason = "; ".join(line for line in tail[-6:] if line.strip()) or f"exit code {code}"
            raise CliError(f"the local daemon did not start: {reason}", exit_code=2 if code == 2 else 1)
        try:
            state = local_home.read_state(home)
        except local_home.DaemonFileError:
            state = None  # not ours yet
        if state and state["pid"] == proc.pid and _daemon_pid(home, proc.pid) == proc.pid:
            try:
                Client(_local_entry(state), timeout=2).request("GET", "/health")
                return state
            except CliError:
                pass
        time.sleep(0.05)
    proc.terminate()
    raise CliError(f"the local daemon did not answer within {START_TIMEOUT:g}s; see {log_path}")


@local.command("status")
def local_status() -> None:
    """Print the daemon's URL and pid, workers per region, jobs per state and parked events."""
    from hyperbatch.cli.client import Client

    state = _daemon_state(_checked_home())
    if not state:
        raise CliError("HyperBatch local mode is not running: start it with `hyper local up`")
    _, body = Client(_local_entry(state)).request("GET", "/queues")
    click.echo(f"url: {state['url']}")
    click.echo(f"pid: {state['pid']}")
    click.echo(f"config: {state['config_dir']}")
    workers: dict[str, int] = {}
    counts: dict[str, int] = {}
    for queue in body["queues"]:
        for region, n in queue["workers"].items():
            workers[region] = workers.get(region, 0) + n
        for st, n in queue["counts"].items():
            counts[st] = counts.get(st, 0) + n
    click.echo("workers: " + (", ".join(f"{r}={n}" for r, n in sorted(workers.items())) or "none"))
    click.echo("jobs: " + (", ".join(f"{s}={n}" for s, n in sorted(counts.items())) or "none"))
    parked = body.get("parked_events", 0)
    click.echo(f"parked events: {parked}" + (" (their dependents wait; see daemon.log, retried at the next "
                                             "`hyper local up`)" if parked else ""))
    for queue in body["queues"]:
        per_state = ", ".join(f"{s}={n}" for s, n in sorted(queue["counts"].items())) or "empty"
        per_region = ", ".join(f"{r}={n}" for r, n in sorted(queue["workers"].items())) or "no workers"
        click.echo(f"queue {queue['name']}: {per_state}; backlog {queue['backlog']}; {per_region}")


@local.command("down")
def local_down() -> None:
    """Stop the daemon and every worker it started (their jobs are handed back, not lost).

    Only a process proven to be this home's daemon (it holds the home's lock) is signalled: a
    daemon.json left behind by a daemon that is gone names a pid that may now be anyone's.
    """
    home = _checked_home()
    pid = _daemon_pid(home)
    if pid is None:
        click.echo("HyperBatch local mode is not running")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + STOP_TIMEOUT
    while time.time() < deadline:
        if _daemon_pid(home, pid) is None:  # the lock goes when the process ends
            click.echo(f"HyperBatch local mode stopped (pid {pid})")
            return
        time.sleep(0.05)
    if _daemon_pid(home, pid) == pid:  # still the daemon: it holds the lock yet
        os.kill(pid, signal.SIGKILL)
    click.echo(f"HyperBatch local mode did not stop in {STOP_TIMEOUT:g}s; killed pid {pid}")


@hyper.command(context_settings=CONTEXT)
@click.argument("job_id")
@click.option("--dest", type=click.Path(file_okay=False), default=None,
              help="Put every file under this directory (default: output files into the submit directory, "
                   "files staged out where their stage-out named).")
def fetch(job_id: str, dest: str | None) -> int:
    """Download what a job on AWS left: its output files (NAME.oN, NAME.eN) and its stage-out files."""
    from hyperbatch.cli.client import current_client, job_path
    from hyperbatch.cli.errors import ApiError
    from hyperbatch.cli.files import fetch as download
    from hyperbatch.cli.pbs.common import job_error

    client = current_client()
    try:
        _, job = client.request("GET", job_path(job_id))
        written = download(client, job, dest)
    except ApiError as exc:
        return job_error("hyper fetch", job_id, exc)
    for path, size in written:
        click.echo(f"{path} ({size} bytes)")
    if not written:
        click.echo(f"hyper fetch: {job['id']} has left no files yet (it is {job.get('state')})", err=True)
        return 1
    return 0


hyper.add_command(workflow)  # hyper workflow submit|status|show (cli/workflow.py)
@hyper.command(context_settings=CONTEXT)
@click.option("--host", "host", default=None, help="The host whose dashboard to open (default: the current host).")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default="a free port",
              help="AWS hosts: the local port of the signing proxy.")
@click.option("--no-browser", is_flag=True, help="Print the URL only; open no browser.")
def dashboard(host: str | None, port: int, no_browser: bool) -> int:
    """Open the web dashboard: a local host's own, or an AWS host's through a local proxy that signs each
    request with your AWS credentials (it runs until Ctrl-C)."""
    from hyperbatch.cli.dashboard import open_dashboard

    return open_dashboard(host, port, browse=not no_browser)


def main() -> int:
    from hyperbatch.cli import manage
    from hyperbatch.cli.runner import run

    from hyperbatch.cli.top import top

    manage.register(hyper)  # hosts, deploy and the resource groups live in their own modules
    hyper.add_command(top)
    return run(hyper, "hyper")


if __name__ == "__main__":
    sys.exit(main())

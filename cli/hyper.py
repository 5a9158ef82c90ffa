"""`hyper`: manage HyperBatch hosts, deployments and resources, and run local mode.

    hyper local up [--port N] [--config DIR]   start the local daemon in the background
    hyper local status                         URL, pid, workers per region, jobs per state, parked events
    hyper local down                           stop it and every worker it started
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


def _daemon_state() -> dict | None:
    """daemon.json if its process is alive; a stale file (crashed daemon) is removed."""
    path = _home() / "daemon.json"
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
        return state
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    except (ProcessLookupError, ValueError, KeyError):
        path.unlink(missing_ok=True)  # its daemon is gone
        return None


def _local_entry(state: dict) -> dict:
    return {"kind": "local", "url": state["url"], "token_file": str(_home() / "token")}


@local.command("up")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port on 127.0.0.1 (default: settings.json local.port, 8765).")
@click.option("--config", "config_dir", type=click.Path(path_type=Path), default=None,
              help="Configuration directory (default: $HYPERBATCH_CONFIG, ./configurations, else the packaged one).")
def local_up(port: int | None, config_dir: Path | None) -> None:
    """Start the local daemon in the background; return once it answers."""
    from hyperbatch.cli.host_registry import load_hosts, register

    state = _daemon_state()
    if state:
        click.echo(f"HyperBatch local mode is already running at {state['url']} (pid {state['pid']})")
        return
    from hyperbatch.cli.manage.common import configuration_dir

    config_dir = configuration_dir(config_dir, packaged_default=True)
    if port is None:
        port = _configured_port(config_dir)
    home = _home()
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


def _configured_port(config_dir: Path) -> int:
    try:
        settings = json.loads((config_dir / "settings.json").read_text())
        return int(settings.get("local", {}).get("port", 8765))
    except (OSError, ValueError, AttributeError):
        return 8765  # the daemon reports the real problem with the file


def _wait_until_up(proc: subprocess.Popen, log_path: Path, start: int) -> dict:
    from hyperbatch.cli.client import Client

    deadline = time.time() + START_TIMEOUT
    while time.time() < deadline:
        code = proc.poll()
        if code is not None:
            tail = log_path.read_bytes()[start:].decode(errors="replace").strip().splitlines()
            reason = "; ".join(line for line in tail[-6:] if line.strip()) or f"exit code {code}"
            raise CliError(f"the local daemon did not start: {reason}", exit_code=2 if code == 2 else 1)
        state = _daemon_state()
        if state and state["pid"] == proc.pid:
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

    state = _daemon_state()
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
    """Stop the daemon and every worker it started (their jobs are handed back, not lost)."""
    state = _daemon_state()
    if not state:
        click.echo("HyperBatch local mode is not running")
        return
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + STOP_TIMEOUT
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            click.echo(f"HyperBatch local mode stopped (pid {pid})")
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    (_home() / "daemon.json").unlink(missing_ok=True)
    click.echo(f"HyperBatch local mode did not stop in {STOP_TIMEOUT:g}s; killed pid {pid}")


def main() -> int:
    from hyperbatch.cli import manage
    from hyperbatch.cli.runner import run

    manage.register(hyper)  # hosts, deploy and the resource groups live in their own modules
    return run(hyper, "hyper")


if __name__ == "__main__":
    sys.exit(main())

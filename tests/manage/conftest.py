"""Fixtures for the `hyper` management commands: a scratch configuration and state directory,
the real console script as a subprocess, and the command group in-process (for moto)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
if not (BIN / "hyper").exists():
    BIN = ROOT / ".venv" / "bin"
HYPER = str(BIN / "hyper")
NO_AWS = {  # no credentials from anywhere, and no instance metadata lookups
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_CONFIG_FILE": "/nonexistent/config",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class Env:
    config: Path
    home: Path
    vars: dict[str, str]

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess:
        """`hyper ARGS` with stdin not a terminal; `extra` adds or replaces environment variables."""
        return subprocess.run(
            [HYPER, *args], env={**self.vars, **extra}, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=60,
        )

    def snapshot(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.config.iterdir())}


@pytest.fixture
def env(tmp_path: Path) -> Env:
    config = tmp_path / "configurations"
    shutil.copytree(ROOT / "configurations", config)
    home = tmp_path / "home"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HYPERBATCH_"))}
    return Env(config, home, {**base, **NO_AWS, "HYPERBATCH_CONFIG": str(config), "HYPERBATCH_HOME": str(home)})


@pytest.fixture
def inprocess(env: Env, monkeypatch: pytest.MonkeyPatch) -> click.Group:
    """The management commands on a fresh group, with `env`'s directories and moto-style fake credentials."""
    from hyperbatch.cli import manage

    for key in [k for k in os.environ if k.startswith(("AWS_", "HYPERBATCH_"))]:
        monkeypatch.delenv(key)
    for key, value in {
        "HYPERBATCH_CONFIG": str(env.config), "HYPERBATCH_HOME": str(env.home),
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        **NO_AWS,
    }.items():
        monkeypatch.setenv(key, value)
    group = click.Group("hyper")
    manage.register(group)
    return group


@pytest.fixture
def call(inprocess: click.Group, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """`call(*args)`: run `hyper ARGS` in-process through the console script's own error handling
    (`hyperbatch.cli.runner.run`), with stdin not a terminal; returns a CompletedProcess like `Env.run`."""
    from hyperbatch.cli.runner import run as run_command

    monkeypatch.setattr("hyperbatch.cli.manage.resources.interactive", lambda: False)

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        code = run_command(inprocess, "hyper", list(args))
        out = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out.out, out.err)

    return run

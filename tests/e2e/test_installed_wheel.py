"""A wheel built from the checkout, installed in a fresh venv, runs local mode from an empty directory.

This is what a user gets from `pip install hyperbatch`: one top-level package, the console
scripts, and a default configuration, with no repository around it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests import polling
from tests.e2e.conftest import REPO, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("installed_wheel")]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    (found,) = out.glob("hyperbatch-*.whl")
    return found


def test_the_wheel_installs_one_top_level_package(wheel: Path):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"hyperbatch"}
    assert "hyperbatch/worker_image/start.sh" in names
    assert "hyperbatch/defaults/queues.json" in names
    assert "hyperbatch/cli/pbs/qsub.py" in names
    assert not any(name.startswith(("hyperbatch/stacks", "stacks/", "lambdas/", "tests/")) for name in names)


def test_local_mode_from_an_empty_directory(wheel: Path, tmp_path: Path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run(pip + [str(wheel), "-c", str(REPO / "requirements.txt")], check=True, timeout=600)
    empty = tmp_path / "somewhere"
    empty.mkdir()
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYPERBATCH_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(HYPERBATCH_HOME=str(home), PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=empty, env=env,
                              capture_output=True, text=True, timeout=60)

    up = run("hyper", "local", "up", "--port", str(free_port()))
    try:
        assert up.returncode == 0, up.stderr
        status = run("hyper", "local", "status")
        assert "hyperbatch/defaults" in status.stdout
        submitted = run("qsub", "--", "echo", "hi")
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.strip()

        def finished() -> str | None:
            full = run("qstat", "-f", "-x", job_id).stdout
            return full if "Exit_status = 0" in full else None

        polling.wait_for(finished, timeout=60, every=0.2, what=f"{job_id} to succeed")
        assert job_id.split(".")[0] in run("qstat", "-x").stdout
        assert run("qlog", job_id).stdout == "hi\n"
    finally:
        down = run("hyper", "local", "down")
    assert down.returncode == 0, down.stderr

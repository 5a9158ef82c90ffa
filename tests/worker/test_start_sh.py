"""worker_image/start.sh, run on the host: the series loop around the agent.

HYPER_PYTHON points at a stand-in that plays the agent: it logs each start and
exits with the next code from a script of codes, so each test states exactly
how the agent behaves and checks what start.sh does about it.
"""

import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

START_SH = Path(__file__).resolve().parents[2] / "worker_image" / "start.sh"


@pytest.fixture
def agent(tmp_path):
    """A fake `python -m hyperbatch.wiring.worker`: exits with codes listed in codes.txt, one per start."""
    fake = tmp_path / "python"
    fake.write_text(textwrap.dedent(f"""\
        #!/bin/bash
        echo "$*" >> {tmp_path}/starts
        n=$(wc -l < {tmp_path}/starts)
        code=$(sed -n "${{n}}p" {tmp_path}/codes.txt)
        if [ "$code" = sleep ]; then trap 'kill $!; echo got-term >> {tmp_path}/events; exit 0' TERM; sleep 30 & wait; fi
        exit "${{code:-0}}"
    """))
    fake.chmod(0o755)

    def run(codes, setup=None, max_restarts=5, background=False):
        (tmp_path / "codes.txt").write_text("\n".join(codes) + "\n")
        env = {**os.environ, "HYPER_PYTHON": str(fake), "HYPER_MAX_RESTARTS": str(max_restarts),
               "HYPER_SETUP": str(setup or tmp_path / "no-setup")}
        args = dict(env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if background:
            return subprocess.Popen(["bash", str(START_SH)], **args)
        return subprocess.run(["bash", str(START_SH)], timeout=60, **args)

    def lines(name):
        path = tmp_path / name
        return path.read_text().splitlines() if path.exists() else []

    run.starts = lambda: lines("starts")
    run.events = lambda: lines("events")
    run.tmp = tmp_path
    return run


def test_an_idle_agent_ends_the_worker(agent):
    result = agent(["0"])
    assert result.returncode == 0
    assert agent.starts() == ["-m hyperbatch.wiring.worker"]
    assert "agent idle; worker exits" in result.stdout


def test_a_crashed_agent_is_restarted(agent):
    result = agent(["1", "139", "0"])
    assert result.returncode == 0
    assert len(agent.starts()) == 3
    assert "agent exited with 139; restart 2 of 5" in result.stdout


def test_a_crash_loop_gives_up(agent):
    result = agent(["1"] * 10, max_restarts=2)
    assert result.returncode == 1
    assert len(agent.starts()) == 3
    assert "crashed 3 times in a row" in result.stdout


def test_a_misconfigured_agent_is_not_restarted(agent):
    result = agent(["3", "0"])
    assert result.returncode == 3
    assert len(agent.starts()) == 1


def test_the_setup_hook_runs_once_before_the_agent(agent):
    hook = agent.tmp / "setup.sh"
    hook.write_text(f"#!/bin/bash\necho setup >> {agent.tmp}/events\n[ -s {agent.tmp}/starts ] && echo late >> {agent.tmp}/events\nexit 0\n")
    hook.chmod(0o755)
    agent(["1", "0"], setup=hook)
    assert agent.events() == ["setup"]  # once, and before the agent first started
    assert len(agent.starts()) == 2


def test_a_failing_setup_hook_stops_the_worker(agent):
    hook = agent.tmp / "setup.sh"
    hook.write_text("#!/bin/bash\nexit 7\n")
    hook.chmod(0o755)
    result = agent(["0"], setup=hook)
    assert result.returncode == 1 and agent.starts() == []
    assert "setup hook failed with 7" in result.stdout


def test_a_stop_request_reaches_the_agent_and_is_not_a_crash(agent):
    proc = agent(["sleep", "0"], background=True)
    deadline = time.time() + 10
    while not agent.starts() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert agent.starts() == ["-m hyperbatch.wiring.worker"]
    assert agent.events() == ["got-term"]
    assert "worker stopped" in out

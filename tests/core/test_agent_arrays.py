"""Real agents (threads, real processes) over the local adapters: what array tasks actually run.

Each task appends `start <index> <attempt>` and `end <index> <attempt>` lines to
a ledger file, so the tests can see which tasks ran, how often, and whether
two ran at once, without looking at a clock.
"""

import threading
from pathlib import Path

import pytest

from hyperbatch.services.agent import Agent, Settings
from hyperbatch.services.dispatch import Dispatcher
from tests.core.conftest import ALICE
from tests.polling import wait_for

TASK = """\
echo "start $PBS_ARRAY_INDEX $HYPER_ATTEMPT" >> {ledger}
if [ "$PBS_ARRAY_INDEX" = "{gate}" ]; then
    while [ ! -e {go} ]; do sleep 0.02; done
fi
echo "end $PBS_ARRAY_INDEX $HYPER_ATTEMPT" >> {ledger}
"""


class Ledger:
    def __init__(self, path: Path):
        self.path = path

    def lines(self) -> list[tuple[str, str, str]]:
        if not self.path.exists():
            return []
        return [tuple((line.split(" ") + ["", ""])[:3]) for line in self.path.read_text().splitlines()]

    def started(self, index: int) -> bool:
        return any(kind == "start" and i == str(index) for kind, i, _ in self.lines())

    def ran(self) -> list[str]:
        """The index of every run that ended, in order ('' for a run with no index)."""
        return [i for kind, i, _ in self.lines() if kind == "end"]

    def most_at_once(self) -> int:
        running, most = 0, 0
        for kind, _, _ in self.lines():
            running += 1 if kind == "start" else -1
            most = max(most, running)
        return most


def start_agent(harness, tmp_path: Path, name: str, chunk: int = 1, agents: list | None = None) -> threading.Thread:
    backend = harness.backend
    dispatcher = Dispatcher(backend.store, backend.queue, name, "us-east-1", lease_seconds=30)
    settings = Settings(queue="batch", idle_timeout=1.0, lease_seconds=30, heartbeat_seconds=0.1,
                        chunk_size=chunk, work_root=backend.home / "work", definition_env={})
    agent = Agent(dispatcher, backend.queue, backend.logs, settings)
    agent.chunk = chunk
    if agents is not None:
        agents.append(agent)
    thread = threading.Thread(target=agent.serve, name=name, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def ledger(tmp_path) -> Ledger:
    return Ledger(tmp_path / "ledger")


def script(tmp_path: Path, ledger: Ledger, gate: int) -> str:
    return TASK.format(ledger=ledger.path, gate=gate, go=tmp_path / "go")


def test_a_cancelled_queued_task_of_a_limited_array_never_runs_and_nothing_runs_beside_the_limit(
        harness, tmp_path, ledger):
    """Defect 1: `qsub -J 1-5%1`, `qdel ID[3]` while 3 is queued."""
    array = harness.submit(script=script(tmp_path, ledger, gate=1), command=None, array="1-5%1")
    child = harness.submit(depend=f"afterok:{array['id']}")
    agents = [start_agent(harness, tmp_path, f"w{n}") for n in range(2)]
    wait_for(lambda: ledger.started(1), 10, 0.02, "task 1 to start")
    harness.scheduler.cancel(array["id"], ALICE, index=3)
    (tmp_path / "go").touch()
    for agent in agents:
        agent.join(timeout=30)
        assert not agent.is_alive()
    harness.deliver()

    assert sorted(ledger.ran()) == ["1", "2", "4", "5"]  # each once; 3 never; no run without an index
    assert ledger.most_at_once() == 1  # the %1 limit held
    doc = harness.job(array["id"])
    assert (doc["state"], doc["succeeded"], doc["cancelled"], doc["pending"], doc["running"]) == (
        "CANCELLED", 4, 1, 0, 0)
    child_doc = harness.job(child["id"])
    assert (child_doc["state"], child_doc["run_count"]) == ("CANCELLED", 0)  # never released on partial results


def test_cancelling_one_task_of_a_running_chunk_leaves_the_rest_of_the_chunk_to_run(harness, tmp_path, ledger):
    array = harness.submit(script=script(tmp_path, ledger, gate=2), command=None, array="1-5")
    agent = start_agent(harness, tmp_path, "w", chunk=8)
    wait_for(lambda: ledger.started(2), 10, 0.02, "task 2 to start")
    assert len(harness.job(array["id"])["chunks"]) == 1  # one chunk holds all five
    version = harness.scheduler.cancel(array["id"], ALICE, index=3)["version"]
    # The chunk's next heartbeat (the next write: task 2 waits) tells its worker; then task 2 ends.
    wait_for(lambda: harness.job(array["id"])["version"] > version, 10, 0.02, "a heartbeat after the cancel")
    (tmp_path / "go").touch()
    agent.join(timeout=30)
    assert ledger.ran() == ["1", "2", "4", "5"]
    doc = harness.job(array["id"])
    assert (doc["state"], doc["succeeded"], doc["cancelled"]) == ("CANCELLED", 4, 1)


def test_a_worker_stopped_mid_chunk_settles_what_finished_and_nothing_finished_runs_again(harness, tmp_path, ledger):
    """Defect 5: a graceful stop (SIGTERM from `hyper local down`) mid-chunk."""
    array = harness.submit(script=script(tmp_path, ledger, gate=3), command=None, array="1-6")
    agents: list = []
    first = start_agent(harness, tmp_path, "first", chunk=8, agents=agents)
    wait_for(lambda: ledger.started(3), 10, 0.02, "task 3 to start")
    agents[0].stop()  # what its SIGTERM handler does: task 3 is stopped, 1 and 2 are done
    first.join(timeout=30)
    assert not first.is_alive()
    doc = harness.job(array["id"])
    assert (doc["succeeded"], doc["pending"], doc["running"]) == (2, 4, 0)
    (tmp_path / "go").touch()
    start_agent(harness, tmp_path, "second", chunk=8).join(timeout=30)
    assert sorted(ledger.ran()) == ["1", "2", "3", "4", "5", "6"]  # each ended once: none ran again
    doc = harness.job(array["id"])
    assert (doc["state"], doc["succeeded"], doc["run_count"]) == ("SUCCEEDED", 6, 1)  # no attempt used up


def test_every_task_of_a_chunk_finds_tmpdir_empty_whatever_the_task_before_left_in_it(harness, tmp_path):
    """Tasks 1-2 leave TMPDIR alone long enough for the agent to stop listing it (its modification
    time says it is unchanged); tasks 3-5 leave a file and a directory in it all the same."""
    seen = tmp_path / "seen"
    task = (f'echo "$PBS_ARRAY_INDEX $(ls -A "$TMPDIR" | wc -l)" >> {seen}\n'
            'if [ "$PBS_ARRAY_INDEX" -ge 3 ]; then touch "$TMPDIR/f"; mkdir "$TMPDIR/d"; fi\n'
            'sleep 0.1\n')
    array = harness.submit(script=task, command=None, array="1-6")
    start_agent(harness, tmp_path, "w", chunk=8).join(timeout=30)
    assert harness.job(array["id"])["state"] == "SUCCEEDED"
    assert seen.read_text().split("\n")[:-1] == [f"{index} 0" for index in range(1, 7)]

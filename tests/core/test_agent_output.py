"""Real agents (threads, real processes) over the local adapters: what `qlog` and the output files show.

Tasks' output is kept per writer and job, not in two new files per task
(hyperbatch/adapters/local/logs.py); these tests read it back the way `qlog`
does (`Scheduler.read_log`, byte offsets) and as the delivered NAME.oSEQ.INDEX
files, and look at what is left under the home's logs folder.
"""

import os
import threading
from pathlib import Path

from hyperbatch.services.agent import Agent, Settings
from hyperbatch.services.dispatch import Dispatcher
from tests.core.conftest import ALICE
from tests.polling import wait_for


def run_agent(harness, name: str = "w1", chunk: int = 64, idle: float = 1.0) -> threading.Thread:
    backend = harness.backend
    dispatcher = Dispatcher(backend.store, backend.queue, name, "us-east-1", lease_seconds=30,
                            together=backend.db.together)
    settings = Settings(queue="batch", idle_timeout=idle, lease_seconds=30, heartbeat_seconds=0.1,
                        chunk_size=chunk, work_root=backend.home / "work", definition_env={},
                        deliver=backend.logs.deliver)
    agent = Agent(dispatcher, backend.queue, backend.logs, settings)
    agent.chunk = chunk
    thread = threading.Thread(target=agent.serve, name=name, daemon=True)
    thread.start()
    return thread


def qlog(harness, job_id: str, index: int | None = None, stream: str = "stdout") -> bytes:
    """All of a task's stream, read in pages of an odd size as `qlog` pages through a large log."""
    out, offset = b"", 0
    while True:
        chunk = harness.scheduler.read_log(job_id, ALICE, stream, offset, index=index, limit=65521)
        out += chunk["data"]
        if not chunk["data"]:
            return out
        offset = chunk["offset"]


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def submit_array(harness, script: str, array: str, **fields) -> str:
    return harness.submit(script=script, command=None, array=array, **fields)["id"]


def test_array_output_is_exact_per_task_and_kept_in_a_few_files(harness):
    script = """\
printf 'task %s\\n' "$PBS_ARRAY_INDEX"
if [ $((PBS_ARRAY_INDEX % 3)) = 0 ]; then printf 'err %s\\n' "$PBS_ARRAY_INDEX" >&2; fi
if [ "$PBS_ARRAY_INDEX" = 7 ]; then printf '\\377\\000\\n'; fi
"""
    job_id = submit_array(harness, script, "1-300")
    run_agent(harness).join(timeout=120)
    assert harness.job(job_id)["state"] == "SUCCEEDED"
    assert qlog(harness, job_id, 7) == b"task 7\n\xff\x00\n"
    assert qlog(harness, job_id, 8) == b"task 8\n"
    assert qlog(harness, job_id, 9, "stderr") == b"err 9\n"
    assert qlog(harness, job_id, 8, "stderr") == b""
    assert all(qlog(harness, job_id, i) == f"task {i}\n".encode() for i in (1, 150, 299, 300))
    # 300 tasks that each printed: one pack, not 600 files.
    assert len(files_under(harness.backend.home / "logs" / job_id)) == 1


def test_tasks_that_print_nothing_leave_no_file(harness):
    job_id = submit_array(harness, "true\n", "1-200")
    run_agent(harness).join(timeout=120)
    assert harness.job(job_id)["state"] == "SUCCEEDED"
    assert files_under(harness.backend.home / "logs" / job_id) == []
    assert qlog(harness, job_id, 5) == b"" and qlog(harness, job_id, 5, "stderr") == b""


def test_a_task_that_reopens_its_output_cuts_only_its_own(harness):
    """`> /dev/stdout` opens the output file again with O_TRUNC: only the task's own output is cut."""
    script = 'echo "before $PBS_ARRAY_INDEX"\necho "mine $PBS_ARRAY_INDEX" > /dev/stdout\necho after\n'
    job_id = submit_array(harness, script, "1-3")
    run_agent(harness).join(timeout=60)
    for i in (1, 2, 3):
        # the shell's own stdout goes on at its offset past the reopened file's end: a hole of zeros
        text = qlog(harness, job_id, i)
        assert text.startswith(f"mine {i}\n".encode()) and text.endswith(b"after\n")
        assert text.count(b"mine") == 1 and b"before" not in text


def test_output_of_a_process_left_running_never_reaches_the_next_task(harness, tmp_path):
    go, written = tmp_path / "go", tmp_path / "written"
    script = f"""\
if [ "$PBS_ARRAY_INDEX" = 1 ]; then
    (until [ -e {go} ]; do sleep 0.01; done; echo late; touch {written}) &
    echo one
else
    touch {go}
    until [ -e {written} ]; do sleep 0.01; done
    echo two
fi
"""
    job_id = submit_array(harness, script, "1-2")
    run_agent(harness).join(timeout=60)
    assert written.exists()
    assert qlog(harness, job_id, 1) == b"one\n"
    assert qlog(harness, job_id, 2) == b"two\n"


def test_a_retry_that_prints_nothing_hides_the_first_attempts_output(harness, tmp_path):
    marker = tmp_path / "marker"
    job = harness.submit(command=["bash", "-c", f"[ -e {marker} ] || {{ echo first; touch {marker}; exit 1; }}"],
                         max_attempts=2)
    run_agent(harness).join(timeout=60)
    doc = harness.job(job["id"])
    assert (doc["state"], doc["attempt"]) == ("SUCCEEDED", 2)
    assert qlog(harness, job["id"]) == b""


def test_large_output_and_the_small_output_after_it_come_back_exactly(harness, tmp_path):
    script = f"""\
if [ "$PBS_ARRAY_INDEX" = 1 ]; then
    head -c 3000000 /dev/urandom > {tmp_path}/big
    cat {tmp_path}/big
    cat {tmp_path}/big >&2
else
    echo small
fi
"""
    job_id = submit_array(harness, script, "1-2", workdir=str(tmp_path), name="big")
    run_agent(harness).join(timeout=60)
    big = (tmp_path / "big").read_bytes()
    assert qlog(harness, job_id, 1) == big and qlog(harness, job_id, 1, "stderr") == big
    assert qlog(harness, job_id, 2) == b"small\n"
    seq = job_id
    assert (tmp_path / f"big.o{seq}.1").read_bytes() == big  # the delivered files, as PBS names them
    assert (tmp_path / f"big.e{seq}.1").read_bytes() == big
    assert (tmp_path / f"big.o{seq}.2").read_bytes() == b"small\n"
    assert (tmp_path / f"big.e{seq}.2").read_bytes() == b""


def test_joined_streams_and_a_task_killed_half_way(harness, tmp_path):
    script = 'echo out\necho err >&2\necho "again $PBS_ARRAY_INDEX"\nif [ "$PBS_ARRAY_INDEX" = 2 ]; then sleep 30; fi\n'
    job_id = submit_array(harness, script, "1-2", join="oe", walltime=1, workdir=str(tmp_path), name="j")
    run_agent(harness).join(timeout=60)
    assert qlog(harness, job_id, 1) == b"out\nerr\nagain 1\n"
    assert qlog(harness, job_id, 1, "stderr") == b""
    killed = qlog(harness, job_id, 2)
    assert killed.startswith(b"out\nerr\nagain 2\n=>> PBS: job killed: walltime ")
    assert (tmp_path / f"j.o{job_id}.2").read_bytes() == killed
    assert not (tmp_path / f"j.e{job_id}.2").exists()


def test_a_running_tasks_output_is_read_live(harness, tmp_path):
    go = tmp_path / "go"
    script = f'echo "partial $PBS_ARRAY_INDEX"\nuntil [ -e {go} ]; do sleep 0.01; done\necho done\n'
    job_id = submit_array(harness, script, "1-2")
    agent = run_agent(harness, chunk=1)
    wait_for(lambda: qlog(harness, job_id, 1) == b"partial 1\n", 20, 0.02, "task 1's first line")
    assert qlog(harness, job_id, 2) == b""
    go.touch()
    agent.join(timeout=60)
    assert qlog(harness, job_id, 1) == b"partial 1\ndone\n"
    assert qlog(harness, job_id, 2) == b"partial 2\ndone\n"


def test_two_agents_in_one_process_keep_their_tasks_apart(harness):
    job_id = submit_array(harness, 'printf "%s\\n" "$PBS_ARRAY_INDEX"\nsleep 0.01\n', "1-60")
    agents = [run_agent(harness, name=f"w{n}", chunk=4) for n in (1, 2)]
    for agent in agents:
        agent.join(timeout=120)
    assert all(qlog(harness, job_id, i) == f"{i}\n".encode() for i in range(1, 61))
    assert os.listdir(harness.backend.home / "logs" / job_id)  # packs, one per writer


def test_a_tasks_files_are_there_while_the_next_task_runs_and_before_it_counts_as_done(harness, tmp_path):
    """Files are written while the next task runs (hyperbatch.services.agent._run_tasks), never after
    the task was recorded finished, and never held back for the rest of the chunk."""
    submit_dir = tmp_path / "submit"
    submit_dir.mkdir()
    script = f"""\
printf 'task %s\\n' "$PBS_ARRAY_INDEX"
if [ "$PBS_ARRAY_INDEX" = 2 ]; then printf 'waiting\\n' >&2; while [ ! -e {tmp_path}/go ]; do sleep 0.02; done; fi
"""
    job_id = submit_array(harness, script, "1-3", workdir=str(submit_dir), name="gate")
    seq = job_id.split(".")[0]
    agent = run_agent(harness, chunk=8)
    first = submit_dir / f"gate.o{seq}.1"
    wait_for(lambda: harness.job(job_id)["succeeded"] == 1, 10, 0.02, "task 1 recorded while task 2 runs")
    assert first.read_bytes() == b"task 1\n" and (submit_dir / f"gate.e{seq}.1").read_bytes() == b""
    assert not (submit_dir / f"gate.o{seq}.2").exists()
    (tmp_path / "go").touch()
    agent.join(timeout=30)
    assert harness.job(job_id)["state"] == "SUCCEEDED"
    assert [(submit_dir / f"gate.o{seq}.{i}").read_bytes() for i in (1, 2, 3)] == [b"task 1\n", b"task 2\n", b"task 3\n"]
    assert (submit_dir / f"gate.e{seq}.2").read_bytes() == b"waiting\n"

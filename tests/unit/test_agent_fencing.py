"""Fencing on the worker's side: a worker that cannot renew its lease kills its job before the lease ends,
a run taken back records nothing, and the job file lets the local daemon kill a silent worker's job.

The agent runs real processes here; its lease is read off a fake clock the test moves, so no test waits
for a lease to run out.
"""

import os
import signal
import subprocess
import threading

import pytest

from hyperbatch.adapters.local import open_local
from hyperbatch.adapters.local.compute import LocalCompute
from hyperbatch.adapters.local.logs import FileLogStore
from hyperbatch.core.cadence import Cadence
from hyperbatch.core.model import new_job
from hyperbatch.core.ports import WorkItem
from hyperbatch.services.agent import Agent, Lease, Settings
from hyperbatch.services.dispatch import Run, Signals
from hyperbatch.support.processes import STARTING, JobRecord, group_alive, read_job_record, signal_session_jobs
from tests import polling

LEASE, HEARTBEAT = 3.0, 1.0


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Recorder:
    """The dispatcher as the agent sees it: heartbeats answered by `beat`, every record written down."""

    worker = "w1"
    region = "r1"
    cadence = None  # fine-grained: every beat a renewal (local mode's)

    def __init__(self, beat):
        self.beat, self.calls, self.seen = beat, [], []
        self.queue = self

    def flush(self):
        pass

    def heartbeat(self, run):
        self.seen.append(run)
        return self.beat(run)

    def finish_job(self, run, outcome):
        self.calls.append(("finish_job", outcome.exit_status))

    def finish_tasks(self, run, results):
        self.calls.append(("finish_tasks", sorted(results)))

    def give_back(self, run):
        self.calls.append(("give_back",))


def unreachable(run):
    raise RuntimeError("store unreachable")


def agent_with(tmp_path, beat, heartbeat=HEARTBEAT):
    settings = Settings(queue="batch", idle_timeout=1, lease_seconds=LEASE, heartbeat_seconds=heartbeat,
                        chunk_size=4, work_root=tmp_path / "work", definition_env={},
                        pid_file=tmp_path / "w1.job")
    agent = Agent(Recorder(beat), Recorder(beat), FileLogStore(tmp_path / "logs"), settings)
    agent._pid_fd = os.open(settings.pid_file, os.O_RDWR | os.O_CREAT, 0o600)
    agent.supervisor.start()
    return agent


def a_run(tmp_path, command, array=None, positions=()):
    job = new_job(id="J1", owner="alice", queue="batch", command=command, array=array)
    return Run(WorkItem("7", "batch", "J1", 0, max(1, len(positions)), 1, receipt="w1"), job, 1, list(positions))


def execute_in_background(agent, run, lease):
    thread = threading.Thread(target=agent.execute, args=(run, lease))
    thread.start()
    return thread


def running_proc(agent):
    return polling.wait_for(lambda: agent.current.proc, 10, 0.01, "the job to start")


def finish(agent, thread):
    thread.join(10)
    assert not thread.is_alive()
    agent.supervisor.halt()


def test_the_lease_runs_out_half_a_heartbeat_before_the_lease_counted_from_the_last_renewal_sent():
    clock = FakeClock()
    lease = Lease(Cadence.fine(LEASE, HEARTBEAT), clock=clock)
    clock.now += LEASE - HEARTBEAT / 2 - 0.25
    assert not lease.expired()
    clock.now += 0.25
    assert lease.expired()
    lease.renew(clock.now - 1)  # a beat sent a second ago came back
    assert not lease.expired()
    lease.renew(clock.now - 5)  # an answer to an older beat never moves the deadline back
    clock.now += LEASE - HEARTBEAT / 2 - 1
    assert lease.expired()


def test_a_worker_that_cannot_renew_kills_its_job_when_its_lease_runs_out_and_records_nothing(tmp_path):
    clock = FakeClock()
    agent = agent_with(tmp_path, unreachable, heartbeat=0.05)
    run = a_run(tmp_path, ["sleep", "60"])
    thread = execute_in_background(agent, run, Lease(Cadence.fine(LEASE, 0.05), clock=clock))
    proc = running_proc(agent)
    polling.wait_for(lambda: len(agent.dispatcher.seen) >= 2, 10, 0.01, "two heartbeats")  # both failed
    assert proc.returncode is None and group_alive(proc.pid)  # still running
    clock.now += LEASE
    finish(agent, thread)
    assert proc.returncode == -signal.SIGKILL  # no grace: it must be dead before the lease ends
    assert agent.dispatcher.calls == []  # no result, and nothing handed back: whoever takes the run settles it


def test_a_run_taken_back_is_killed_at_the_next_heartbeat_and_records_nothing(tmp_path):
    agent = agent_with(tmp_path, lambda run: Signals(lease_lost=True), heartbeat=0.05)
    run = a_run(tmp_path, ["sleep", "60"])
    thread = execute_in_background(agent, run, Lease(Cadence.fine(LEASE, 0.05), clock=FakeClock()))
    proc = running_proc(agent)
    finish(agent, thread)
    assert proc.returncode == -signal.SIGKILL
    assert agent.dispatcher.calls == []


def test_renewals_keep_the_job_alive_past_its_first_deadline(tmp_path):
    clock = FakeClock()
    seen_at = []

    def beat(run):
        seen_at.append(clock.now)
        return Signals()

    agent = agent_with(tmp_path, beat, heartbeat=0.05)
    go = tmp_path / "go"
    run = a_run(tmp_path, ["bash", "-c", f"while [ ! -e {go} ]; do sleep 0.02; done"])
    thread = execute_in_background(agent, run, Lease(Cadence.fine(LEASE, 0.05), clock=clock))
    proc = running_proc(agent)
    clock.now += 2.0
    # Three beats sent at the new time: the second one was sent (and the first renewed) after the move.
    polling.wait_for(lambda: seen_at.count(clock.now) >= 3, 10, 0.01, "three heartbeats at the new time")
    clock.now += LEASE - 0.05 - 0.5  # past the first deadline, not past the renewed one
    go.touch()
    finish(agent, thread)
    assert proc.returncode == 0
    assert agent.dispatcher.calls == [("finish_job", 0)]


def test_a_worker_held_up_past_its_lease_starts_no_task_and_records_nothing(tmp_path):
    clock = FakeClock()
    agent = agent_with(tmp_path, lambda run: Signals())
    marker = tmp_path / "ran"
    run = a_run(tmp_path, ["bash", "-c", f"echo $PBS_ARRAY_INDEX >> {marker}"], array="1-3", positions=[0, 1, 2])
    lease = Lease(Cadence.fine(LEASE, HEARTBEAT), clock=clock)
    clock.now += LEASE  # e.g. stopped between the start in the store and the first task
    agent.execute(run, lease)
    agent.supervisor.halt()
    assert not marker.exists()
    assert agent.dispatcher.calls == []  # not even the positions not reached as cancelled


def test_the_job_file_names_the_running_group_and_run_and_says_0_after(tmp_path):
    agent = agent_with(tmp_path, lambda run: Signals())
    go = tmp_path / "go"
    run = a_run(tmp_path, ["bash", "-c", f"while [ ! -e {go} ]; do sleep 0.02; done"])
    thread = execute_in_background(agent, run, Lease(Cadence.fine(LEASE, HEARTBEAT), clock=FakeClock()))
    proc = running_proc(agent)
    assert read_job_record(tmp_path / "w1.job") == JobRecord(proc.pid, "J1", "7", 1)
    go.touch()
    finish(agent, thread)
    assert read_job_record(tmp_path / "w1.job") == JobRecord(0)
    assert len((tmp_path / "w1.job").read_bytes()) == len(JobRecord(0).encode())


# ---- the daemon's side: LocalCompute.fence ----------------------------------------------------------

@pytest.fixture
def compute(tmp_path):
    backend = open_local(tmp_path / "home")
    return LocalCompute(backend.db, tmp_path / "home", tmp_path)


def register(compute, worker, pid):
    with compute.db.write() as conn:
        conn.execute("INSERT INTO workers (id, pid, region, queue, definition, started_at) VALUES (?,?,?,?,?,0)",
                     (worker, pid, "local", "batch", "standard"))


def write_record(compute, worker, record):
    (compute.home / "workers" / f"{worker}.job").write_bytes(record.encode())


def test_fencing_a_silent_workers_run_kills_the_group_its_job_file_names(compute):
    job = subprocess.Popen(["sleep", "60"], process_group=0)
    write_record(compute, "w-1", JobRecord(job.pid, "J1", "7", 1))
    compute.fence("us-east-1/w-1", "J1", "7", 1)
    assert job.wait(10) == -signal.SIGKILL


@pytest.mark.parametrize("record", [JobRecord(0), "other run"])
def test_fencing_kills_nothing_when_the_worker_is_on_another_run_or_none(compute, record):
    job = subprocess.Popen(["sleep", "60"], process_group=0)
    if record == "other run":
        record = JobRecord(job.pid, "J1", "7", 2)  # the next attempt, say: that run is not the one taken back
    write_record(compute, "w-1", record)
    compute.fence("us-east-1/w-1", "J1", "7", 1)
    job.terminate()
    assert job.wait(10) == -signal.SIGTERM  # it was still alive: the fence left it alone


def session_with_a_job(tmp_path):
    """A stand-in for worker w-1's start.sh: a session leader whose child job runs in a process group of its own."""
    pid_file = tmp_path / "job.pid"
    leader = subprocess.Popen(["bash", "-c", f"set -m; sleep 60 & echo $! > {pid_file}; wait"],
                              start_new_session=True, env={**os.environ, "HYPER_WORKER_ID": "w-1"})
    job_pid = int(polling.wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, 0.01, "the job"))
    assert os.getsid(job_pid) == leader.pid and os.getpgid(job_pid) != leader.pid
    return leader, job_pid


def gone(pid):
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # gone between the open and the read: ESRCH
        return True
    return state == "Z"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="the session's processes are found through /proc")
def test_fencing_a_run_caught_while_starting_kills_every_job_of_the_workers_session(compute, tmp_path):
    leader, job_pid = session_with_a_job(tmp_path)
    register(compute, "w-1", leader.pid)
    write_record(compute, "w-1", JobRecord(STARTING, "J1", "7", 1))  # stopped before writing the group down
    compute.fence("us-east-1/w-1", "J1", "7", 1)
    polling.wait_for(lambda: gone(job_pid), 10, 0.01, "the job to be killed")
    assert leader.wait(10) != -signal.SIGKILL  # the worker itself is left alone (its wait ends with the job)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="the session's processes are found through /proc")
def test_signalling_a_sessions_jobs_spares_the_leaders_group(tmp_path):
    leader, job_pid = session_with_a_job(tmp_path)
    assert signal_session_jobs(leader.pid, signal.SIGKILL) == 1
    polling.wait_for(lambda: gone(job_pid), 10, 0.01, "the job to be killed")
    leader.wait(10)
    assert signal_session_jobs(0, signal.SIGKILL) == signal_session_jobs(1, signal.SIGKILL) == 0


def test_a_workers_pid_now_used_by_another_process_is_neither_counted_nor_signalled(compute):
    stranger = subprocess.Popen(["sleep", "60"])  # the pid the system gave out again, after worker w-1 ended
    register(compute, "w-1", stranger.pid)
    assert compute.running() == {}
    register(compute, "w-2", stranger.pid)
    compute.stop_all(grace=0.1)
    stranger.terminate()
    assert stranger.wait(10) == -signal.SIGTERM  # still alive for us to stop: stop_all left it alone

"""The agent sends the acks its queue buffers: when it goes idle, after heartbeats, and on every way out."""

import signal
import threading
import time

from hyperbatch.services.agent import EXIT_IDLE, Agent, Current, Settings, Supervisor
from hyperbatch.services.dispatch import Signals
from hyperbatch.core.ports import WorkItem

ITEM = WorkItem("1", "batch", "J1", 0, 1, 1, receipt="r1")


class FakeQueue:
    """Hands out `items`, then nothing; records claims and flushes. `on_claim` runs at each claim."""

    def __init__(self, items=(), on_claim=None, flush_error=None):
        self.items, self.on_claim, self.flush_error = list(items), on_claim, flush_error
        self.calls: list[str] = []

    def claim(self, queue, worker, max_tasks, lease_seconds):
        self.calls.append("claim")
        if self.on_claim is not None:
            self.on_claim()
        return self.items.pop(0) if self.items else None

    def flush(self):
        self.calls.append("flush")
        if self.flush_error is not None:
            raise self.flush_error

    def wait(self, queue, timeout):
        time.sleep(timeout)
        return False


class FakeDispatcher:
    """Starts nothing (every item is stale): enough to drive the agent's loop."""

    worker = "w1"
    cadence = None  # fine-grained beats (local mode's)

    def __init__(self, queue):
        self.queue = queue

    def take_back_own(self):
        return False  # no run left by an agent before this one

    def start(self, item):
        self.queue.calls.append("start")
        return None

    def recover_lost(self, item):
        self.queue.calls.append("recover")


def agent_over(queue, tmp_path, idle_timeout=0.05):
    settings = Settings(queue="batch", idle_timeout=idle_timeout, lease_seconds=30, heartbeat_seconds=1,
                        chunk_size=1, work_root=tmp_path, definition_env={})
    return Agent(FakeDispatcher(queue), queue, None, settings)


def serve(agent):
    """Serve in a thread of its own, as the AWS-in-a-box does (signal handlers belong to the main thread)."""
    out: dict = {}

    def run():
        try:
            out["code"] = agent.serve()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    return out


def test_going_idle_flushes_and_so_does_the_idle_exit(tmp_path):
    queue = FakeQueue([ITEM])
    assert serve(agent_over(queue, tmp_path)) == {"code": EXIT_IDLE}
    assert queue.calls[:4] == ["claim", "start", "claim", "flush"]  # gone idle: flushed at once
    assert queue.calls[-1] == "flush"  # and on the way out
    assert queue.calls.count("flush") == 2  # not at every idle poll


def test_a_stop_asked_for_by_sigterm_flushes_on_the_way_out(tmp_path):
    queue = FakeQueue([ITEM, ITEM])
    agent = agent_over(queue, tmp_path, idle_timeout=60)
    queue.on_claim = lambda: agent._stop(signal.SIGTERM, None)  # the handler SIGTERM runs
    assert serve(agent) == {"code": EXIT_IDLE}
    assert queue.calls == ["claim", "start", "flush"]


def test_a_crash_still_flushes(tmp_path):
    queue = FakeQueue()

    def boom():
        raise RuntimeError("store down")

    queue.on_claim = boom
    out = serve(agent_over(queue, tmp_path))
    assert isinstance(out["error"], RuntimeError)
    assert queue.calls == ["claim", "flush"]


def test_a_failed_flush_at_exit_does_not_turn_an_idle_exit_into_a_crash(tmp_path, caplog):
    queue = FakeQueue(flush_error=RuntimeError("SQS refused"))
    assert serve(agent_over(queue, tmp_path)) == {"code": EXIT_IDLE}
    assert "flushing acks failed: SQS refused" in caplog.text


def test_the_dispatchers_queue_is_flushed_too_when_it_is_another_object(tmp_path):
    queue, inner = FakeQueue(), FakeQueue()
    agent = agent_over(queue, tmp_path)
    agent.dispatcher.queue = inner
    agent.flush()
    assert (queue.calls, inner.calls) == (["flush"], ["flush"])


def watch_two_flushes(dispatcher, flush, flushes: list) -> None:
    """Run a Supervisor over one run until `flush` was called twice (or 5 s passed)."""
    supervisor = Supervisor(dispatcher, Current(), 0.01, lambda: False, flush=flush)
    supervisor.start()
    try:
        supervisor.watch(object())
        deadline = time.time() + 5
        while len(flushes) < 2 and time.time() < deadline:
            time.sleep(0.01)
    finally:
        supervisor.halt()
        supervisor.join(timeout=5)


def test_the_supervisor_flushes_after_each_heartbeat():
    beats, flushes = [], []

    class Beating:
        cadence = None  # fine-grained beats (local mode's)

        def heartbeat(self, run):
            beats.append(run)
            return Signals()

    watch_two_flushes(Beating(), lambda: flushes.append(1), flushes)
    assert len(flushes) >= 2 and len(beats) >= len(flushes)


def test_a_failed_flush_after_a_heartbeat_is_reported_not_fatal(caplog):
    flushes = []

    class Beating:
        cadence = None  # fine-grained beats (local mode's)

        def heartbeat(self, run):
            return Signals()

    def flush():
        flushes.append(1)
        raise RuntimeError("SQS refused")

    watch_two_flushes(Beating(), flush, flushes)
    assert len(flushes) >= 2  # the thread lived on
    assert "flushing acks failed: SQS refused" in caplog.text


def test_an_array_item_with_no_positions_is_refused_never_run_as_a_plain_job(tmp_path):
    """Defect 1's last line of defence: an empty position list is not a plain job."""
    from hyperbatch.core.model import new_job
    from hyperbatch.services.dispatch import Run

    marker = tmp_path / "ran"
    job = new_job(id="A1", array="1-5%1", total=5, command=["touch", str(marker)])
    finished = []

    class Recording(FakeDispatcher):
        def finish_tasks(self, run, results):
            finished.append((run.item.id, results))

    queue = FakeQueue()
    settings = Settings(queue="batch", idle_timeout=0.05, lease_seconds=30, heartbeat_seconds=1,
                        chunk_size=1, work_root=tmp_path, definition_env={})
    agent = Agent(Recording(queue), queue, None, settings)
    agent.execute(Run(WorkItem("7", "batch", "A1", 2, 3, 1, receipt="r"), job, 1, positions=[]))
    assert not marker.exists()
    assert finished == [("7", {})]  # settled with nothing run

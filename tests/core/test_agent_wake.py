"""Idle local workers are woken by the work sent to their queue (hyperbatch/adapters/local/wake.py).

The agents here poll once an hour: only a wake-up can make them claim in the
time a test waits, so a job that runs shows the wake-up worked.
"""

import subprocess
import sys
import threading

from hyperbatch.adapters.local import open_local
from hyperbatch.adapters.local.machine import Machine
from hyperbatch.adapters.local.wake import Wakeups
from hyperbatch.core.model import new_job
from hyperbatch.core.options import resource_list
from hyperbatch.core.resources import Amount
from hyperbatch.services.agent import Agent, Settings
from hyperbatch.services.dispatch import Dispatcher
from tests.polling import wait_for

HOUR = 3600.0


def test_an_idle_worker_runs_a_submitted_job_without_waiting_for_its_poll(harness):
    backend = harness.backend
    dispatcher = Dispatcher(backend.store, backend.queue, "w1", "us-east-1", lease_seconds=30)
    settings = Settings(queue="batch", idle_timeout=HOUR, lease_seconds=30, heartbeat_seconds=0.1, chunk_size=1,
                        work_root=backend.home / "work", definition_env={}, poll_min=HOUR, poll_max=HOUR)
    agent = Agent(dispatcher, backend.queue, backend.logs, settings)
    thread = threading.Thread(target=agent.serve, daemon=True)
    thread.start()
    wake = backend.home / "wake" / "batch"
    wait_for(lambda: wake.exists() and any(wake.iterdir()), 20, 0.02, "the worker to wait for work")
    first = harness.submit(command=["true"])
    wait_for(lambda: harness.job(first["id"])["state"] == "SUCCEEDED", 20, 0.02, "the first job to run")
    second = harness.submit(command=["true"])  # the worker is idle again, and woken again
    wait_for(lambda: harness.job(second["id"])["state"] == "SUCCEEDED", 20, 0.02, "the second job to run")
    agent.stop()
    Wakeups(backend.home / "wake").wake("batch")  # out of its hour-long wait, to see the stop
    thread.join(timeout=20)
    assert not thread.is_alive()


def waiting_thread(queue, woken: list) -> threading.Thread:
    """A thread that waits for work of "batch" for an hour, once its FIFO is in place (`ready`)."""
    ready = threading.Event()

    def wait():
        assert queue.wait("batch", HOUR)  # the first wait makes the FIFO and returns at once
        ready.set()
        woken.append(queue.wait("batch", HOUR))

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    assert ready.wait(30)
    return thread


def test_work_sent_by_another_process_wakes_a_waiter(tmp_path):
    backend = open_local(tmp_path)
    woken: list[bool] = []
    waiting = waiting_thread(backend.queue, woken)
    sender = ("from hyperbatch.adapters.local import open_local; import sys; "
              "open_local(sys.argv[1]).queue.send('batch', '1', 0, 1, 1)")
    subprocess.run([sys.executable, "-c", sender, str(tmp_path)], check=True, timeout=60)
    waiting.join(timeout=30)
    assert woken == [True]
    assert backend.queue.claim("batch", "w1", 1, 30).job_id == "1"


def test_a_waiter_is_back_when_work_given_back_with_a_delay_becomes_claimable(tmp_path):
    backend = open_local(tmp_path)
    backend.queue.send("batch", "1", 0, 1, 1)
    item = backend.queue.claim("batch", "w1", 1, 30)
    backend.queue.release(item, delay=0.5)  # as an array at its %limit gives its item back: no wake-up
    woken: list[bool] = []
    waiting = waiting_thread(backend.queue, woken)
    waiting.join(timeout=30)
    assert woken == [False]  # not woken: its wait ended when the item became claimable
    assert backend.queue.claim("batch", "w1", 1, 30).job_id == "1"


def test_a_waiter_whose_process_is_gone_is_forgotten_by_the_next_send(tmp_path):
    waiter = ("from hyperbatch.adapters.local import open_local; import sys; "
              "open_local(sys.argv[1]).queue.wait('batch', 1)")
    subprocess.run([sys.executable, "-c", waiter, str(tmp_path)], check=True, timeout=60)
    folder = tmp_path / "wake" / "batch"
    assert len(list(folder.iterdir())) == 1  # it died without removing its FIFO
    open_local(tmp_path).queue.send("batch", "1", 0, 1, 1)
    assert list(folder.iterdir()) == []


def test_under_placement_by_resources_a_lease_that_ends_wakes_the_waiters_of_every_queue(tmp_path):
    """A 2-CPU job of queue "west" waits for both CPUs; the 1-CPU job of "batch" that held one is acked."""
    machine = Machine(Amount(2, 8 << 30, 0), [], starve_after=60)
    backend = open_local(tmp_path, machine=machine)
    store, queue = backend.store, backend.queue

    def submit(queue_name: str, ncpus: int) -> str:
        job_id = str(store.reserve_ids(1))
        store.create([new_job(id=job_id, owner="u", queue=queue_name, resources=resource_list({"ncpus": ncpus}))], [])
        queue.send(queue_name, job_id, 0, 1, 1)
        return job_id

    submit("batch", 1)
    small = queue.claim("batch", "a", 1, 30)
    big = submit("west", 2)
    assert queue.claim("west", "b", 1, 30) is None  # one CPU is taken
    woken: list[bool] = []
    ready = threading.Event()

    def wait_for_west():
        queue.wait("west", HOUR)  # makes the FIFO
        ready.set()
        woken.append(queue.wait("west", HOUR))

    waiting = threading.Thread(target=wait_for_west, daemon=True)
    waiting.start()
    assert ready.wait(30)
    queue.ack(small)
    waiting.join(timeout=30)
    assert woken == [True]
    assert queue.claim("west", "b", 1, 30).job_id == big

"""The core (Scheduler, Dispatcher, dependency release) over the AWS adapters, events from the table's stream.

Not the AWS-in-a-box suite (Lambda entry points, agent wiring): just proof that the
core's flows hold on DynamoDB + SQS, including a lost worker found by redelivery.
"""

import os
import threading
import time

import boto3
import pytest

from hyperbatch.core import tasks
from hyperbatch.services.agent import EXIT_IDLE, Agent, Settings
from hyperbatch.adapters.aws.events import events_from_stream
from hyperbatch.adapters.aws.sqs import SqsWorkQueue
from hyperbatch.services.dispatch import Dispatcher, Outcome
from hyperbatch.core.model import Change, Expect
from hyperbatch.services.release import on_event
from hyperbatch.services.scheduler import Caller, Scheduler
from hyperbatch.core.states import JobState
from tests.streams import StreamReader

REGION = "us-east-1"  # as the aws fixture (tests/aws/conftest.py)

ALICE = Caller("alice")


@pytest.fixture
def flow(aws, cfg):
    scheduler = Scheduler(cfg, aws.store, aws.queue, aws.logs)
    worker = Dispatcher(aws.store, aws.queue, "w1", "us-east-1", lease_seconds=30)
    stream = StreamReader(aws.dynamodb, aws.plane.table)

    def deliver():
        while True:
            events = events_from_stream(stream.records())
            if not events:
                return
            for event in events:
                on_event(scheduler, event)

    return scheduler, worker, deliver


def work(aws, worker, queue="batch", max_tasks=4, lease=30.0, recovered=None):
    """The next Run, claimed like the AWS agent claims: a redelivered item goes to recovery, not to a run.

    Items that start nothing (their positions were handed out already) are
    skipped, as the agent's loop skips them; None once the queue is empty.
    """
    while True:
        item = aws.queue.claim(queue, worker.worker, max_tasks, lease)
        if item is None:
            return None
        if item.redelivered:
            worker.recover_lost(item)
            if recovered is not None:
                recovered.append(item)
            continue
        run = worker.start(item)
        if run is not None:
            return run


def test_an_array_then_its_dependent_run_to_success(aws, flow):
    scheduler, worker, deliver = flow
    array = scheduler.submit([{"command": ["true"], "array": "1-10"}], ALICE)[0]
    child = scheduler.submit([{"command": ["true"], "depend": f"afterok:{array['id']}"}], ALICE)[0]
    assert child["state"] == "WAITING"
    runs = 0
    while (run := work(aws, worker)) is not None:
        sink = aws.logs.sink(array["id"], run.spec.index_at(run.positions[0]), run.attempt)
        os.write(sink.stdout, b"done\n")
        sink.close()
        worker.finish_tasks(run, {p: Outcome(0) for p in run.positions})
        runs += 1
    assert runs == 3  # 4 + 4 + 2 positions
    deliver()
    assert aws.store.get(array["id"])["state"] == "SUCCEEDED"
    assert aws.store.get(child["id"])["state"] == "QUEUED"
    worker.finish_job(work(aws, worker), Outcome(0))
    assert aws.store.get(child["id"])["state"] == "SUCCEEDED"
    assert (aws.queue.backlog("batch"), aws.queue.in_flight("batch")) == (0, 0)
    assert scheduler.read_log(array["id"], ALICE, "stdout", 0, index=5)["data"] == b"done\n"


def test_a_lost_worker_is_found_by_redelivery_and_its_job_retried(aws, flow):
    scheduler, worker, _ = flow
    job = scheduler.submit([{"command": ["true"], "max_attempts": 2}], ALICE)[0]
    run = work(aws, worker, lease=0)  # the worker dies at once: its message is visible again
    assert aws.store.get(job["id"])["state"] == "RUNNING" and run.attempt == 1
    recovered = []
    later = Dispatcher(aws.store, aws.queue, "w2", "us-east-1", 30, clock=lambda: time.time() + 3600)
    retry = work(aws, later, recovered=recovered)
    assert [i.job_id for i in recovered] == [job["id"]]
    doc = aws.store.get(job["id"])
    assert (doc["state"], doc["attempt"]) == ("RUNNING", 2) and "lost" in doc["reason"]
    assert worker.finish_job(run, Outcome(0)) is None  # the late worker's result is refused
    assert retry.attempt == 2
    worker.finish_job(retry, Outcome(0))
    assert aws.store.get(job["id"])["state"] == "SUCCEEDED"
    assert (aws.queue.backlog("batch"), aws.queue.in_flight("batch")) == (0, 0)


def test_a_lost_array_chunk_is_settled_and_its_tasks_run_again(aws, flow):
    scheduler, worker, _ = flow
    array = scheduler.submit([{"command": ["true"], "array": "0-5", "max_attempts": 2}], ALICE)[0]
    lost = work(aws, worker, max_tasks=6, lease=0)
    assert lost.positions == list(range(6))
    recovered, done = [], 0
    later = Dispatcher(aws.store, aws.queue, "w2", "us-east-1", 30, clock=lambda: time.time() + 3600)
    while (run := work(aws, later, recovered=recovered)) is not None:
        if not done:  # the chunk was settled before anything ran again: its tasks handed out afresh
            assert [i.id for i in recovered] == [lost.item.id]
            doc = aws.store.get(array["id"])
            assert tasks.by_index(doc, tasks.RETRY_MAP) == {} and tasks.by_index(doc, tasks.LOST_MAP) == {str(i): 1 for i in range(6)}
        assert run.attempt == 1  # a lost worker uses up no retry
        later.finish_tasks(run, {p: Outcome(0) for p in run.positions})
        done += len(run.positions)
    assert done == 6
    doc = aws.store.get(array["id"])
    assert (doc["state"], doc["succeeded"]) == ("SUCCEEDED", 6)



# ---- claims: one conditional write, a read only when it fails -----------------------------------

def dynamodb_calls(aws) -> list[str]:
    """DynamoDB operations from now on (a botocore hook on the store's moto client)."""
    calls: list[str] = []
    aws.dynamodb.meta.events.register("before-call.dynamodb.*", lambda model, **kwargs: calls.append(model.name))
    return calls


def test_a_plain_job_is_claimed_with_one_write_and_no_read(aws, flow):
    scheduler, worker, _ = flow
    job = scheduler.submit([{"command": ["true"]}], ALICE)[0]
    item = aws.queue.claim("batch", "w1", 4, 30)
    calls = dynamodb_calls(aws)
    run = worker.start(item)
    assert calls == ["UpdateItem"]
    assert (run.job["id"], run.job["state"], run.job["run_count"], run.attempt) == (job["id"], "RUNNING", 1, 1)
    assert run.job["exec_host"] == "us-east-1/w1"


def test_an_array_chunk_is_claimed_with_one_read_and_one_write(aws, flow):
    scheduler, worker, _ = flow
    scheduler.submit([{"command": ["true"], "array": "1-10"}], ALICE)
    item = aws.queue.claim("batch", "w1", 4, 30)
    calls = dynamodb_calls(aws)
    run = worker.start(item)
    assert calls == ["GetItem", "UpdateItem"]  # the item holds positions [0, 10): no plain job's claim is tried
    assert run.positions == [0, 1, 2, 3]


@pytest.mark.parametrize("case", ["held", "cancelled", "finished", "superseded", "unknown"])
def test_a_stale_message_is_acked_after_the_failed_write_and_one_read(aws, flow, case):
    scheduler, worker, _ = flow
    job = scheduler.submit([{"command": ["true"], "max_attempts": 2}], ALICE)[0]
    job_id = job["id"]
    if case == "held":
        scheduler.hold(job_id, ALICE)
    elif case == "cancelled":
        scheduler.cancel(job_id, ALICE)
    elif case == "finished":
        worker.finish_job(work(aws, worker), Outcome(0))
        aws.queue.send("batch", job_id, 0, 1, 1)  # a duplicate of the message it ran from
    elif case == "superseded":  # the job moved on to attempt 2; this message says attempt 1
        aws.store.update(job_id, Expect.state(JobState.QUEUED, attempt=1), Change(set={"attempt": 2}))
    else:
        job_id = "999999"
        aws.queue.ack(aws.queue.claim("batch", "w0", 1, 30))
        aws.queue.send("batch", job_id, 0, 1, 1)
    before = aws.store.get(job_id) if case != "unknown" else None
    item = aws.queue.claim("batch", "w1", 4, 30)
    assert item.job_id == job_id
    calls = dynamodb_calls(aws)
    assert worker.start(item) is None
    assert calls == (["UpdateItem"] if case == "unknown" else ["UpdateItem", "GetItem"])
    if before is not None:
        after = aws.store.get(job_id)
        assert (after["state"], after["attempt"], after["run_count"], after["version"]) == (
            before["state"], before["attempt"], before["run_count"], before["version"])
    assert (aws.queue.backlog("batch"), aws.queue.in_flight("batch")) == (0, 0)  # acked: nothing comes back


# ---- the watchdog: a live run's message comes back every lease until the run ends ---------------

def test_a_duplicate_delivery_of_a_live_job_comes_back_a_lease_later_and_is_acked_once_it_is_final(aws, flow):
    scheduler, worker, _ = flow
    job = scheduler.submit([{"command": ["true"]}], ALICE)[0]
    run = work(aws, worker, lease=0)  # SQS hands the message out again while its worker still runs
    watcher = Dispatcher(aws.store, aws.queue, "w2", "us-east-1", lease_seconds=1)
    item = aws.queue.claim("batch", "w2", 4, 30)
    assert item.redelivered and item.id == run.item.id
    aws.calls.clear()
    watcher.recover_lost(item)
    assert aws.calls == ["GetItem", "SendMessage", "DeleteMessage"]  # a delayed copy out, the original deleted
    doc = aws.store.get(job["id"])
    assert (doc["state"], doc["attempt"], doc["run_count"]) == ("RUNNING", 1, 1)
    assert aws.queue.claim("batch", "w3", 4, 30) is None  # the copy waits one lease
    # The delayed copy stands for the running job: work in flight, not waiting (the scaler's view).
    assert (aws.queue.backlog("batch"), aws.queue.in_flight("batch")) == (0, 1)
    worker.finish_job(run, Outcome(0))
    assert aws.store.get(job["id"])["state"] == "SUCCEEDED"
    time.sleep(1.2)
    copy = aws.queue.claim("batch", "w2", 4, 30)
    assert copy.redelivered and copy.id == run.item.id and copy.receipt != item.receipt
    watcher.recover_lost(copy)  # the job is final now: acked
    assert aws.queue.claim("batch", "w2", 4, 30) is None
    assert (aws.queue.backlog("batch"), aws.queue.in_flight("batch")) == (0, 0)


def test_a_live_job_is_checked_every_lease_without_using_an_attempt_and_recovered_once_silent(aws, flow):
    scheduler, worker, _ = flow
    job = scheduler.submit([{"command": ["true"], "max_attempts": 2}], ALICE)[0]
    run = work(aws, worker, lease=0)
    beat = aws.store.get(job["id"])["heartbeat_at"]
    now = [beat]
    watcher = Dispatcher(aws.store, aws.queue, "w2", "us-east-1", lease_seconds=1, clock=lambda: now[0])
    watcher.recover_lost(aws.queue.claim("batch", "w2", 4, 30))  # the worker beats: checked again later
    for _ in range(2):
        time.sleep(1.2)
        copy = aws.queue.claim("batch", "w2", 4, 30)
        assert copy.redelivered and copy.id == run.item.id
        now[0] = beat + 0.4  # still beating (less than half a lease ago)
        watcher.recover_lost(copy)
        doc = aws.store.get(job["id"])
        assert (doc["state"], doc["attempt"], doc["run_count"]) == ("RUNNING", 1, 1)
    time.sleep(1.2)
    copy = aws.queue.claim("batch", "w2", 4, 30)
    now[0] = beat + 60  # silent for a long while: the worker is gone
    watcher.recover_lost(copy)
    doc = aws.store.get(job["id"])
    assert (doc["state"], doc["attempt"]) == ("QUEUED", 2) and "lost" in doc["reason"]
    retry = work(aws, worker)
    assert retry.attempt == 2 and not retry.item.redelivered
    worker.finish_job(retry, Outcome(0))
    assert worker.finish_job(run, Outcome(0)) is None
    assert aws.store.get(job["id"])["state"] == "SUCCEEDED"
    assert work(aws, worker) is None
    assert (aws.queue.backlog("batch"), aws.queue.in_flight("batch")) == (0, 0)


def test_the_worker_whose_message_was_replaced_by_a_copy_runs_on_and_the_copy_is_acked_after(aws, flow):
    scheduler, worker, _ = flow
    job = scheduler.submit([{"command": ["true"], "max_attempts": 2}], ALICE)[0]
    run = work(aws, worker, lease=0)
    watcher = Dispatcher(aws.store, aws.queue, "w2", "us-east-1", lease_seconds=1)
    watcher.recover_lost(aws.queue.claim("batch", "w2", 4, 30))  # a duplicate: the copy goes out
    # Its own message is gone, but the store says the job is still its own: it runs on.
    assert not worker.heartbeat(run).lease_lost
    assert worker.finish_job(run, Outcome(0))["state"] == "SUCCEEDED"
    time.sleep(1.2)
    watcher.recover_lost(aws.queue.claim("batch", "w2", 4, 30))  # the copy finds the job final
    doc = aws.store.get(job["id"])
    assert (doc["state"], doc["attempt"], doc["run_count"]) == ("SUCCEEDED", 1, 1)
    aws.queue.flush()
    assert (aws.queue.backlog("batch"), aws.queue.in_flight("batch")) == (0, 0)


def test_a_live_array_chunk_keeps_its_id_through_the_copies_and_is_settled_once_silent(aws, flow):
    scheduler, worker, _ = flow
    array = scheduler.submit([{"command": ["true"], "array": "0-3", "max_attempts": 2}], ALICE)[0]
    lost = work(aws, worker, max_tasks=4, lease=0)
    started = aws.store.get(array["id"])["chunks"][lost.item.id]["started"]
    now = [started]
    watcher = Dispatcher(aws.store, aws.queue, "w2", "us-east-1", lease_seconds=1, clock=lambda: now[0])
    watcher.recover_lost(aws.queue.claim("batch", "w2", 4, 30))
    time.sleep(1.2)
    copy = aws.queue.claim("batch", "w2", 4, 30)
    assert copy.redelivered and copy.id == lost.item.id  # the chunk's key, so the chunk is found
    now[0] = started + 0.4
    watcher.recover_lost(copy)
    doc = aws.store.get(array["id"])
    assert list(doc["chunks"]) == [lost.item.id] and doc["running"] == 4 and tasks.by_index(doc, tasks.RETRY_MAP) == {}
    time.sleep(1.2)
    copy = aws.queue.claim("batch", "w2", 4, 30)
    now[0] = started + 60
    watcher.recover_lost(copy)
    doc = aws.store.get(array["id"])
    assert doc["chunks"] == {} and tasks.by_index(doc, tasks.RETRY_MAP) == {} and doc["pending"] == 4
    done = 0
    while (run := work(aws, worker)) is not None:
        assert run.attempt == 1
        worker.finish_tasks(run, {p: Outcome(0) for p in run.positions})
        done += len(run.positions)
    assert done == 4 and aws.store.get(array["id"])["state"] == "SUCCEEDED"
    assert (aws.queue.backlog("batch"), aws.queue.in_flight("batch")) == (0, 0)


# ---- the agent: batched deletes, none left behind ----------------------------------------------

def test_an_agent_stopped_with_acks_buffered_deletes_them_on_its_way_out(aws, flow, tmp_path):
    scheduler, _, _ = flow
    jobs = scheduler.submit([{"command": ["true"]} for _ in range(3)], ALICE)
    # Its own queue object, whose buffer only fills up: nothing is due, no claim comes back empty.
    queue = SqsWorkQueue(aws.plane.queue_urls, aws.sqs, wait_seconds=0, flush_seconds=3600)
    settings = Settings(queue="batch", idle_timeout=30, lease_seconds=30, heartbeat_seconds=5, chunk_size=1,
                        work_root=tmp_path, definition_env={})
    agent = Agent(Dispatcher(aws.store, queue, "agent", "us-east-1", 30), queue, aws.logs, settings)
    ack, acked = queue.ack, []

    def ack_then_stop_after_the_last(item):
        ack(item)
        acked.append(item)
        if len(acked) == len(jobs):
            assert not_visible(aws) == len(jobs)  # all three still in flight: their deletes are buffered
            agent.stop()  # what the SIGTERM handler does

    queue.ack = ack_then_stop_after_the_last
    aws.calls.clear()
    done: list = []
    thread = threading.Thread(target=lambda: done.append(agent.serve()))  # signal handlers: main thread only
    thread.start()
    thread.join(timeout=60)
    assert done == [EXIT_IDLE]
    assert [aws.store.get(j["id"])["state"] for j in jobs] == ["SUCCEEDED"] * 3
    assert aws.calls.count("DeleteMessageBatch") == 1 and "DeleteMessage" not in aws.calls
    assert not_visible(aws) == 0
    assert aws.queue.claim("batch", "w9", 1, 30) is None


def not_visible(aws, queue="batch"):
    """Messages in flight as SQS counts them, asked with a client of its own (uncounted, no flush)."""
    client = boto3.client("sqs", region_name=REGION)
    attributes = client.get_queue_attributes(QueueUrl=aws.plane.queue_urls[queue],
                                             AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"])


def test_jobs_received_ahead_and_given_back_each_run_once(aws, cfg):
    now = [1000.0]
    queue = SqsWorkQueue(aws.plane.queue_urls, aws.sqs, wait_seconds=0, clock=lambda: now[0])
    scheduler = Scheduler(cfg, aws.store, queue, aws.logs)
    worker = Dispatcher(aws.store, queue, "w1", "us-east-1", lease_seconds=30)
    jobs = scheduler.submit([{"command": ["true"]}] * 3, ALICE)
    run = worker.start(queue.claim("batch", "w1", 3, 30))  # three messages come in one receive
    now[0] += 10  # a long run: the two received with it waited too long and go back
    worker.finish_job(run, Outcome(0))
    ran = 1
    while (item := queue.claim("batch", "w1", 1, 30)) is not None:
        if item.redelivered:
            worker.recover_lost(item)  # never started: handed out again as fresh work
        elif (again := worker.start(item)) is not None:
            worker.finish_job(again, Outcome(0))
            ran += 1
    queue.flush()
    docs = aws.store.get_many(j["id"] for j in jobs).values()
    assert ran == 3
    assert [(d["state"], d["attempt"], d["run_count"]) for d in docs] == [("SUCCEEDED", 1, 1)] * 3
    assert (queue.backlog("batch"), queue.in_flight("batch")) == (0, 0)


def test_an_agent_running_quick_jobs_receives_them_several_at_a_time(aws, flow, tmp_path):
    scheduler, _, _ = flow
    jobs = scheduler.submit([{"command": ["true"]} for _ in range(12)], ALICE)
    queue = SqsWorkQueue(aws.plane.queue_urls, aws.sqs, wait_seconds=0)
    settings = Settings(queue="batch", idle_timeout=1, lease_seconds=30, heartbeat_seconds=5, chunk_size=10,
                        work_root=tmp_path, definition_env={})
    agent = Agent(Dispatcher(aws.store, queue, "agent", "us-east-1", 30), queue, aws.logs, settings)
    received: list[int] = []  # messages per ReceiveMessage that brought any
    aws.sqs.meta.events.register(
        "after-call.sqs.ReceiveMessage",
        lambda parsed, **kw: parsed.get("Messages") and received.append(len(parsed["Messages"])))
    done: list = []
    thread = threading.Thread(target=lambda: done.append(agent.serve()))
    thread.start()
    thread.join(timeout=60)
    assert done == [EXIT_IDLE]
    docs = aws.store.get_many(j["id"] for j in jobs).values()
    assert [(d["state"], d["run_count"]) for d in docs] == [("SUCCEEDED", 1)] * 12
    assert sum(received) == 12 and max(received) > 1  # quick jobs: the claims grew
    assert len(received) < 12  # fewer receives than jobs
    assert not_visible(aws) == 0

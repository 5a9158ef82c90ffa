"""The core (Scheduler, Dispatcher, dependency release) over the AWS adapters, events from the table's stream.

Not the AWS-in-a-box suite (Lambda entry points, agent wiring): just proof that the
core's flows hold on DynamoDB + SQS, including a lost worker found by redelivery.
"""

import os

import boto3
import time

import pytest

from hyperbatch.aws.events import events_from_stream
from hyperbatch.dispatch import Dispatcher, Outcome
from hyperbatch.release import on_event
from hyperbatch.service import Caller, Scheduler

REGION = "us-east-1"  # as the aws fixture (tests/aws/conftest.py)

ALICE = Caller("alice")


class Stream:
    """Reads the job table's stream from where it last stopped, as the release function's mapping does."""

    def __init__(self, aws):
        self.client = boto3.client("dynamodbstreams", region_name=REGION,
                                   endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com")
        arn = aws.dynamodb.describe_table(TableName=aws.plane.table)["Table"]["LatestStreamArn"]
        shard = self.client.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        self.iterator = self.client.get_shard_iterator(
            StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]

    def records(self):
        page = self.client.get_records(ShardIterator=self.iterator)
        self.iterator = page["NextShardIterator"]
        return page["Records"]


@pytest.fixture
def flow(aws, cfg):
    scheduler = Scheduler(cfg, aws.store, aws.queue, aws.logs)
    worker = Dispatcher(aws.store, aws.queue, "w1", "us-east-1", lease_seconds=30)
    stream = Stream(aws)

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
    assert scheduler.read_log(array["id"], ALICE, "stdout", 0, index=5)["data"] == "done\n"


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


def test_a_lost_array_chunk_is_settled_and_its_tasks_retried(aws, flow):
    scheduler, worker, _ = flow
    array = scheduler.submit([{"command": ["true"], "array": "0-5", "max_attempts": 2}], ALICE)[0]
    lost = work(aws, worker, max_tasks=6, lease=0)
    assert lost.positions == list(range(6))
    recovered, done = [], 0
    later = Dispatcher(aws.store, aws.queue, "w2", "us-east-1", 30, clock=lambda: time.time() + 3600)
    while (run := work(aws, later, recovered=recovered)) is not None:
        if not done:  # the chunk was settled before anything ran again
            assert [i.id for i in recovered] == [lost.item.id]
            waiting = aws.store.get(array["id"])["retrying"]
            assert set(waiting) | {str(p) for p in run.positions} == {str(i) for i in range(6)}
        assert run.attempt == 2
        later.finish_tasks(run, {p: Outcome(0) for p in run.positions})
        done += len(run.positions)
    assert done == 6
    doc = aws.store.get(array["id"])
    assert (doc["state"], doc["succeeded"]) == ("SUCCEEDED", 6)


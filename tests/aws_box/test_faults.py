"""Lost workers, duplicate and dead-lettered messages: what SQS does to work, and how it is repaired."""

import time

from hyperbatch.aws.sqs import _body
from hyperbatch.dispatch import Dispatcher

import lambdas.runtime as runtime


def submit(box, **request):
    status, job = box.api("POST", "/jobs", body=request)
    assert status == 201, job
    return job


def abandoned_run(box, job_id):
    """A worker that claims the job, starts it, and dies (no heartbeat, no result, no ack)."""
    lease = box.config.settings.lease_seconds
    dead = Dispatcher(box.store, box.backend.queue, "doomed", "us-east-1", lease)
    item = box.backend.queue.claim("batch", "doomed", 1, lease)
    assert item is not None and item.job_id == job_id
    run = dead.start(item)
    assert run is not None and box.job(job_id)["state"] == "RUNNING"
    return item


def test_a_worker_that_dies_loses_its_lease_and_the_job_runs_again(box):
    job = submit(box, command=["true"])
    abandoned_run(box, job["id"])
    box.start_worker(env={"HYPER_IDLE_TIMEOUT": "8"})  # gets the message again once its lease runs out
    done = box.wait_state(job["id"], "SUCCEEDED", timeout=20)
    assert (done["run_count"], done["attempt"]) == (2, 2)
    assert "doomed" not in done["exec_host"]


def test_a_dead_worker_whose_message_is_gone_is_recovered_by_the_reconciler(box):
    job = submit(box, command=["true"])
    item = abandoned_run(box, job["id"])
    box.backend.queue.ack(item)  # a duplicate copy was acked while it ran: nothing will come back
    assert box.reconcile()["recovered"] == 0  # its heartbeat is fresh still
    time.sleep(box.config.settings.lease_seconds / 2 + 0.2)  # now it is stale
    assert box.reconcile()["recovered"] == 1
    doc = box.job(job["id"])
    assert (doc["state"], doc["attempt"]) == ("QUEUED", 2)
    assert doc["reason"].startswith("worker us-east-1/doomed lost (no heartbeat")
    box.start_worker()
    done = box.wait_state(job["id"], "SUCCEEDED", timeout=20)
    assert (done["run_count"], done["attempt"]) == (2, 2)


def test_a_duplicated_message_does_not_run_a_job_twice(box):
    job = submit(box, command=["sleep", "1.5"])
    url = box.plane.queue_urls["batch"]
    box.sqs.send_message(QueueUrl=url, MessageBody=_body(job["id"], 0, 1, 1, 0))  # the same body again
    box.start_worker()
    box.start_worker()
    done = box.wait_state(job["id"], "SUCCEEDED", timeout=20)
    assert done["run_count"] == 1
    box.wait_for("both copies consumed",
                 lambda: box.backend.queue.backlog("batch") + box.backend.queue.in_flight("batch") == 0, timeout=10)
    assert box.job(job["id"])["run_count"] == 1


def test_a_dead_lettered_job_is_failed_with_its_reason_by_the_reconciler(box):
    job = submit(box, command=["true"])
    url = box.plane.queue_urls["batch"]
    for _ in range(5):  # received and never deleted, five times: the redrive policy's count
        assert box.sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"]
    assert "Messages" not in box.sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)  # moved to the DLQ
    assert box.reconcile() == {"dead_lettered": 1, "recovered": 0, "resent": 0}
    doc = box.wait_state(job["id"], "FAILED")
    assert (doc["reason"], doc["exit_status"]) == ("dead-lettered after 5 receives", -1)
    assert box.sqs.receive_message(QueueUrl=box.plane.dead_letter_urls["batch"]).get("Messages") is None
    assert box.reconcile()["dead_lettered"] == 0


def test_queued_work_whose_message_was_never_sent_is_sent_again(box):
    job = submit(box, command=["true"])
    array = submit(box, command=["true"], array="0-9")
    box.sqs.purge_queue(QueueUrl=box.plane.queue_urls["batch"])  # as if the API died after the store write
    reconciler = runtime.get().reconciler
    reconciler.grace = 0.5
    assert box.reconcile()["resent"] == 0  # first sighting
    time.sleep(0.6)
    assert box.reconcile()["resent"] == 2  # unchanged for the grace: sent again
    assert box.reconcile()["resent"] == 0  # then only after twice the grace
    box.start_worker()
    assert box.wait_state(job["id"], "SUCCEEDED")["run_count"] == 1
    assert box.wait_state(array["id"], "SUCCEEDED")["succeeded"] == 10


def test_a_lost_array_chunk_with_no_message_left_is_settled_and_retried_by_the_reconciler(box):
    array = submit(box, command=["true"], array="1-6")
    lease = box.config.settings.lease_seconds
    dead = Dispatcher(box.store, box.backend.queue, "doomed", "us-east-1", lease)
    item = box.backend.queue.claim("batch", "doomed", 4, lease)
    run = dead.start(item)
    assert run.positions == [0, 1, 2, 3]
    box.backend.queue.ack(item)  # its message is gone; the tail [4, 6) went back to the queue
    time.sleep(lease / 2 + 0.2)
    assert box.reconcile()["recovered"] == 1
    doc = box.job(array["id"])
    assert doc["chunks"] == {} and sorted(doc["retrying"]) == ["1", "2", "3", "4"]
    box.start_worker()
    done = box.wait_state(array["id"], "SUCCEEDED", "FAILED")
    assert (done["state"], done["succeeded"], done["run_count"]) == ("SUCCEEDED", 6, 2)


def test_a_worker_without_its_configuration_is_misconfigured(box):
    from hyperbatch.agent import EXIT_MISCONFIGURED, main

    env = box.worker_env("batch", "us-west-2", "w")
    del env["HYPER_CONFIG"]
    import os

    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        assert main() == EXIT_MISCONFIGURED
    finally:
        os.environ.clear()
        os.environ.update(saved)

"""Long runs on AWS (hyperbatch.core.cadence): registered half way through their claim's lease, watched by
the reconciler through the workers' Batch jobs, looked at with cheap reads, and written rarely."""

import time
from dataclasses import replace

from hyperbatch.adapters.aws.stream import StreamSentQueue
from hyperbatch.services.dispatch import Dispatcher, Outcome
from tests.aws_box.harness import internal_id


def batch_worker(box) -> str:
    """A Batch job id in the box's job queue, as a worker in a Batch container is named (AWS_BATCH_JOB_ID)."""
    target = box.targets[box.region]["default"]
    batch = box.client("batch")
    job_id = batch.submit_job(jobName="hb-5-batch-1", jobQueue=target["job_queue"],
                              jobDefinition=next(iter(target["job_definitions"].values())))["jobId"]
    assert box.set_batch_status(job_id, "RUNNING")
    return job_id


def registered_run(box, job_id, worker, clock=time.time, run_lease=None):
    """A worker's dispatcher (as an AWS worker wires it) that claims the job, starts it and registers it
    (for `run_lease` seconds, if given, instead of the box's)."""
    settings = box.config.settings
    cadence = settings.cadence() if run_lease is None else replace(settings.cadence(), run_lease=run_lease)
    dispatcher = Dispatcher(box.store, StreamSentQueue(box.backend.queue), worker, box.region, settings.lease_seconds,
                            clock=clock, runs=box.runs, cadence=cadence)
    item = box.wait_for("a message", lambda: box.backend.queue.claim("batch", worker, 1, settings.lease_seconds),
                        timeout=10)
    run = dispatcher.start(item)
    assert run is not None and box.job(job_id)["state"] == "RUNNING"
    dispatcher.register(run, first=True)
    return dispatcher, run


def message_counts(box) -> tuple[int, int]:
    """(messages waiting, messages hidden) in the batch queue."""
    found = box.sqs.get_queue_attributes(QueueUrl=box.plane.queue_urls["batch"], AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(found["ApproximateNumberOfMessages"]), int(found["ApproximateNumberOfMessagesNotVisible"])


def test_the_run_of_a_worker_whose_batch_job_ended_is_requeued_by_the_reconciler_and_runs_again(box):
    job = box.submit(command=["true"])
    worker = batch_worker(box)
    registered_run(box, job["id"], worker)
    assert box.reconcile()["runs_taken_back"] == 0  # its worker's Batch job runs: nothing to do
    assert box.job(job["id"])["state"] == "RUNNING"
    box.set_batch_status(worker, "FAILED")  # the container stopped (a Spot reclaim, an OOM kill)
    assert box.reconcile()["runs_taken_back"] == 1
    doc = box.job(job["id"])
    assert (doc["state"], doc["attempt"], doc["lost_runs"]) == ("QUEUED", 2, 1)
    assert doc["reason"] == (f"worker us-east-1/{worker} lost (its container or machine stopped); "
                             "job requeued to run again (rerunnable)")
    assert box.runs.entries() == []  # the entry is gone, and with it the hidden message
    box.start_worker(env={"HYPER_IDLE_TIMEOUT": "8"})
    done = box.wait_state(job["id"], "SUCCEEDED", timeout=20)
    assert (done["run_count"], done["attempt"]) == (2, 2)
    assert box.wait_for("the old message deleted", lambda: message_counts(box) == (0, 0), timeout=10)


def test_a_live_workers_registered_run_is_taken_back_neither_by_the_reconciler_nor_by_a_redelivery(box):
    job = box.submit(command=["true"])
    worker = batch_worker(box)
    dispatcher, run = registered_run(box, job["id"], worker, run_lease=3600)  # its promise holds throughout
    assert message_counts(box) == (0, 1)  # hidden for hours from the registration on
    # At-least-once delivery: SQS hands the message out again while the worker runs the job.
    box.sqs.change_message_visibility(QueueUrl=box.plane.queue_urls["batch"], ReceiptHandle=run.item.receipt,
                                      VisibilityTimeout=0)
    other = Dispatcher(box.store, StreamSentQueue(box.backend.queue), "other", box.region,
                       box.config.settings.lease_seconds, runs=box.runs, cadence=box.config.settings.cadence())
    item = box.wait_for("the message again", lambda: box.backend.queue.claim("batch", "other", 1, 3), timeout=10)
    assert item.redelivered
    time.sleep(box.config.settings.lease_seconds)  # the start's own beat is a whole claim lease old now
    other.recover_lost(item)
    assert box.reconcile()["runs_taken_back"] == 0
    doc = box.job(job["id"])
    assert (doc["state"], doc["attempt"], doc["run_count"]) == ("RUNNING", 1, 1)
    assert message_counts(box) == (0, 1)  # hidden again, not run, not copied
    assert dispatcher.finish_job(run, Outcome(0))["state"] == "SUCCEEDED"


def test_a_hung_workers_run_is_taken_back_once_its_registered_lease_has_passed(box):
    job = box.submit(command=["true"])
    worker = batch_worker(box)  # its container still runs, but its agent renews nothing
    run_lease = box.config.settings.run_lease_seconds
    registered_run(box, job["id"], worker, clock=lambda: time.time() - run_lease)
    assert box.reconcile()["runs_taken_back"] == 1
    doc = box.job(job["id"])
    assert (doc["state"], doc["attempt"]) == ("QUEUED", 2)
    assert f"lost (no renewal for {run_lease:g}s)" in doc["reason"]


def test_a_lost_workers_registered_chunk_has_its_tasks_run_again(box):
    array = box.submit(command=["true"], array="1-3")
    worker = batch_worker(box)
    settings = box.config.settings
    dispatcher = Dispatcher(box.store, StreamSentQueue(box.backend.queue), worker, box.region, settings.lease_seconds,
                            runs=box.runs, cadence=settings.cadence())
    item = box.wait_for("a message", lambda: box.backend.queue.claim("batch", worker, 3, 3), timeout=10)
    run = dispatcher.start(item)
    assert run.positions == [0, 1, 2]
    dispatcher.register(run, first=True)
    box.set_batch_status(worker, "SUCCEEDED")  # the worker exited (it cannot have run the chunk on)
    assert box.reconcile()["runs_taken_back"] == 1
    doc = box.job(array["id"])
    assert (doc["chunks"], doc["pending"]) == ({}, 3)
    box.start_worker(env={"HYPER_IDLE_TIMEOUT": "8"})
    done = box.wait_state(array["id"], "SUCCEEDED", timeout=30)
    assert done["succeeded"] == 3


def test_a_long_job_is_looked_at_with_cheap_reads_written_twice_and_hears_a_qdel(box):
    job = box.submit(command=["sleep", "60"])
    box.start_worker(worker_id="w", env={"HYPER_IDLE_TIMEOUT": "10"})
    box.wait_for("the run registered", lambda: box.runs.entry("us-east-1/w"), timeout=20)
    time.sleep(4)  # looks and a renewal (box settings: looks at most 2 s apart, renewals every 3 s)
    status, _ = box.api("DELETE", f"/jobs/{job['id']}")
    assert status == 200
    asked = time.monotonic()
    done = box.wait_state(job["id"], "CANCELLED", timeout=10)
    assert time.monotonic() - asked < 2 * box.config.settings.heartbeat_max_seconds
    assert done["exit_status"] is not None
    key = internal_id(job["id"])
    calls = [c for c in box.meter.calls if c.actor == "worker" and c.service == "dynamodb"
             and c.params.get("Key", {}).get("pk", {}).get("S") == key]
    writes = [c.operation for c in calls if c.operation in ("UpdateItem", "PutItem")]
    looks = [c for c in calls if c.operation == "GetItem" and not c.params.get("ConsistentRead")]
    assert writes == ["UpdateItem", "UpdateItem"]  # its start and its end: no beat writes the job
    assert len(looks) >= 3  # qdel was heard through these
    registrations = [c for c in box.meter.calls if c.actor == "worker" and c.operation == "PutItem"
                     and c.params["Item"]["pk"]["S"] == "runs#registered"]
    assert 1 <= len(registrations) <= 4  # at 1.5 s, then every 3 s


def test_an_agent_restarted_under_its_workers_name_takes_back_the_run_its_predecessor_left(box):
    job = box.submit(command=["true"])
    worker = batch_worker(box)
    registered_run(box, job["id"], worker)  # then the agent crashed; start.sh starts another in the container
    box.start_worker(worker_id=worker, env={"HYPER_IDLE_TIMEOUT": "8"})
    done = box.wait_state(job["id"], "SUCCEEDED", timeout=20)
    assert (done["run_count"], done["attempt"], done["lost_runs"]) == (2, 2, 1)  # no reconciler, no redelivery
    assert box.runs.entry(f"us-east-1/{worker}") is None or box.runs.entry(f"us-east-1/{worker}")["attempt"] == 2

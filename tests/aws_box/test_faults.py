"""Lost workers, duplicate, dead-lettered and unsent work: what SQS and failures do to work, and how it is repaired."""

import json
import os


import hyperbatch.services.stream_release as stream_release
from hyperbatch.core import tasks
from hyperbatch.adapters.aws.sqs import _body
from hyperbatch.adapters.aws.stream import StreamSentQueue
from hyperbatch.services.dispatch import Dispatcher, Outcome
from tests.aws_box.harness import internal_id


def worker_dispatcher(box, name):
    """A Dispatcher as a worker holds it: writes the store, the stream sends (hyperbatch.adapters.aws.stream)."""
    return Dispatcher(box.store, StreamSentQueue(box.backend.queue), name, "us-east-1",
                      box.config.settings.lease_seconds)


def claim(box, name, max_tasks=1):
    """The next message of the batch queue, once the stream has sent it."""
    lease = box.config.settings.lease_seconds
    return box.wait_for("a message", lambda: box.backend.queue.claim("batch", name, max_tasks, lease), timeout=10)


def abandoned_run(box, job_id, max_tasks=1):
    """A worker that claims the job (or a chunk), starts it, and dies (no heartbeat, no result, no ack)."""
    dead = worker_dispatcher(box, "doomed")
    item = claim(box, "doomed", max_tasks)
    assert item.job_id == internal_id(job_id)
    run = dead.start(item)
    assert run is not None and box.job(job_id)["state"] == "RUNNING"
    return dead, run


def redeliver_now(box, item):
    """SQS hands the message out again while its first worker still runs (at-least-once delivery)."""
    box.sqs.change_message_visibility(QueueUrl=box.plane.queue_urls["batch"], ReceiptHandle=item.receipt,
                                      VisibilityTimeout=0)


def delayed(box, queue="batch"):
    attributes = box.sqs.get_queue_attributes(QueueUrl=box.plane.queue_urls[queue],
                                              AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"])


def test_a_worker_that_dies_loses_its_lease_and_the_job_runs_again(box):
    job = box.submit(command=["true"])
    abandoned_run(box, job["id"])
    box.start_worker(env={"HYPER_IDLE_TIMEOUT": "8"})  # gets the message again once its lease runs out
    done = box.wait_state(job["id"], "SUCCEEDED", timeout=20)
    assert (done["run_count"], done["attempt"]) == (2, 2)
    assert "doomed" not in done["exec_host"]


def test_a_running_job_whose_message_a_duplicate_delivery_took_is_recovered_when_its_worker_dies(box):
    job = box.submit(command=["true"])
    dead, run = abandoned_run(box, job["id"])
    redeliver_now(box, run.item)
    other = worker_dispatcher(box, "other")
    duplicate = claim(box, "other")
    assert duplicate.redelivered and duplicate.id == run.item.id
    other.recover_lost(duplicate)  # its worker still beats: not deleted, but a copy comes back a lease later
    doc = box.job(job["id"])
    assert (doc["state"], doc["attempt"]) == ("RUNNING", 1)
    assert delayed(box) == 1
    # The first worker dies now; the copy comes back, finds its heartbeat stale, and the job runs again.
    box.start_worker(env={"HYPER_IDLE_TIMEOUT": "10"})
    done = box.wait_state(job["id"], "SUCCEEDED", timeout=25)
    assert (done["run_count"], done["attempt"]) == (2, 2)
    assert done["reason"] == "" and "doomed" not in done["exec_host"]


def test_a_lost_array_chunk_whose_message_a_duplicate_delivery_took_is_settled_and_retried(box):
    array = box.submit(command=["true"], array="1-6")
    dead, run = abandoned_run(box, array["id"], max_tasks=4)
    assert run.positions == [0, 1, 2, 3]  # the tail [4, 6) went back to the queue
    redeliver_now(box, run.item)
    other = worker_dispatcher(box, "other")
    while (duplicate := claim(box, "other", 6)).id != run.item.id:  # the tail first, perhaps: give it back
        box.backend.queue.release(duplicate)
    other.recover_lost(duplicate)  # the chunk's worker still beats: checked again a lease later
    assert box.job(array["id"])["chunks"].keys() == {run.item.id}
    box.start_worker(env={"HYPER_IDLE_TIMEOUT": "10"})
    done = box.wait_state(array["id"], "SUCCEEDED", "FAILED", timeout=25)
    assert (done["state"], done["succeeded"], done["run_count"]) == ("SUCCEEDED", 6, 2)
    assert tasks.by_index(done, tasks.FAILED_MAP) == {} and done["chunks"] == {}


def test_a_job_claimed_by_a_worker_that_died_before_starting_it_still_runs(box):
    job = box.submit(command=["true"])
    claim(box, "doomed")  # received, never started: the worker died at once
    box.start_worker(env={"HYPER_IDLE_TIMEOUT": "8"})  # receives it again once the lease runs out
    done = box.wait_state(job["id"], "SUCCEEDED", timeout=15)
    assert (done["run_count"], done["attempt"]) == (1, 1)


def test_a_duplicated_message_does_not_run_a_job_twice(box):
    # A run shorter than a third of the box's 3 s claim lease: it needs no registration to stay alive, so
    # a slow machine cannot make its registration come after its own fence (it would then stop itself
    # and run again: safe, but a second run all the same).
    job = box.submit(command=["sleep", "0.5"])
    url = box.plane.queue_urls["batch"]
    box.sqs.send_message(QueueUrl=url, MessageBody=_body(job["seq"], 0, 1, 1, 0))  # the same body again
    box.start_worker()
    box.start_worker()
    done = box.wait_state(job["id"], "SUCCEEDED", timeout=20)
    assert done["run_count"] == 1
    box.wait_for("both copies consumed",
                 lambda: box.backend.queue.backlog("batch") + box.backend.queue.in_flight("batch") == 0, timeout=10)
    assert box.job(job["id"])["run_count"] == 1


def dead_letter(box, receipt=None):
    """Receive the batch queue's message and never delete it, five times: the redrive policy's count."""
    url = box.plane.queue_urls["batch"]
    received = 0
    if receipt is not None:  # received once already (a worker holds it)
        box.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=0)
        received = 1
    else:
        box.wait_for("a message", lambda: box.backend.queue.backlog("batch"), timeout=10)
    while received < 5:
        assert box.sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"]
        received += 1
    assert "Messages" not in box.sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)  # moved to the DLQ


def test_a_dead_lettered_job_is_failed_with_its_reason_by_the_reconciler(box):
    job = box.submit(command=["true"])
    dead_letter(box)
    assert box.reconcile() == {"dead_lettered": 1, "watched": 0, "redriven": 0, "deferred_released": 0,
                               "runs_taken_back": 0}
    doc = box.wait_state(job["id"], "FAILED")
    assert (doc["reason"], doc["exit_status"]) == ("dead-lettered after 5 receives", -1)
    assert box.sqs.receive_message(QueueUrl=box.plane.dead_letter_urls["batch"]).get("Messages") is None
    assert box.reconcile()["dead_lettered"] == 0


def test_a_dead_letter_of_a_job_still_running_comes_back_a_lease_later_to_check_on_it(box):
    job = box.submit(command=["true"])
    dead, run = abandoned_run(box, job["id"])
    dead_letter(box, run.item.receipt)
    dead.heartbeat(run)  # still alive
    assert box.reconcile() == {"dead_lettered": 0, "watched": 1, "redriven": 0, "deferred_released": 0,
                               "runs_taken_back": 0}
    assert box.job(job["id"])["state"] == "RUNNING" and delayed(box) == 1
    assert box.sqs.receive_message(QueueUrl=box.plane.dead_letter_urls["batch"]).get("Messages") is None
    # Its worker dies: the copy comes back, finds the heartbeat stale, and the job runs again.
    box.start_worker(env={"HYPER_IDLE_TIMEOUT": "10"})
    done = box.wait_state(job["id"], "SUCCEEDED", timeout=25)
    assert (done["run_count"], done["attempt"]) == (2, 2)


def parked_body(box):
    messages = box.sqs.receive_message(QueueUrl=box.failures_url, VisibilityTimeout=0)["Messages"]
    return json.loads(messages[0]["Body"])


def test_a_batch_the_release_function_gave_up_on_is_redriven_and_its_job_runs(box, monkeypatch):
    box.stop_stream()
    box.settle()
    real = stream_release.to_send

    def broken(old, new):
        raise RuntimeError("the queue is unreachable")

    monkeypatch.setattr(stream_release, "to_send", broken)
    job = box.submit(command=["true"])
    other = box.submit(command=["true"], queue="west")
    box.deliver()  # fails on every try: the mapping parks the batch
    assert box.parked() == 1
    info = parked_body(box)["DDBStreamBatchInfo"]
    assert info["batchSize"] >= 2 and info["streamArn"] == box.stream_arn
    assert box.backend.queue.backlog("batch") == 0  # nothing was sent
    assert box.store.counts("batch").get("QUEUED", 0) == 0  # nor counted

    monkeypatch.setattr(stream_release, "to_send", real)
    result = box.reconcile()
    assert result["redriven"] == info["batchSize"] and box.parked() == 0
    assert box.reconcile()["redriven"] == 0
    box.start_stream()
    box.start_worker()
    box.start_worker(queue="west")
    for doc in (job, other):
        box.wait_state(doc["id"], "SUCCEEDED")
    box.settle()
    assert box.store.counts("batch")["SUCCEEDED"] == 1  # counted once: re-driven, never by the failed tries
    assert box.store.counts("batch").get("QUEUED", 0) == box.store.counts("batch").get("RUNNING", 0) == 0
    launched = [d for d in box.emf("reconciler") if "JobsSubmitted" in d]
    assert sum(sum(d["JobsSubmitted"]) for d in launched) == 2


def test_a_redriven_batch_releases_the_dependents_of_a_job_that_finished(box, monkeypatch):
    parent = box.submit(command=["true"])
    child = box.submit(command=["true"], depend=f"afterok:{parent['id']}")
    box.settle()
    box.stop_stream()
    real = stream_release.on_event

    def broken(scheduler, event):
        if event.job_id == parent["seq"] and event.new_state == "SUCCEEDED":
            raise RuntimeError("a moment of trouble that lasts")
        return real(scheduler, event)

    monkeypatch.setattr(stream_release, "on_event", broken)
    box.start_worker(env={"HYPER_IDLE_TIMEOUT": "8"})
    box.wait_state(parent["id"], "SUCCEEDED")
    box.deliver()
    assert box.parked() == 1 and box.job(child["id"])["state"] == "WAITING"

    monkeypatch.setattr(stream_release, "on_event", real)
    assert box.reconcile()["redriven"] >= 1
    assert box.job(child["id"])["state"] == "QUEUED" and box.parked() == 0
    box.start_stream()  # the child's release is a change of its own: the stream sends it
    assert box.wait_state(child["id"], "SUCCEEDED")["run_count"] == 1


def test_a_release_that_fails_for_a_while_is_retried_from_its_record_and_no_later_record_passes_it(box, monkeypatch):
    """Exactly-once release on AWS: the stream's checkpoint stays at the failed record, so a later record
    handled first cannot carry the checkpoint past it (the local events table's promise, too)."""
    parent = box.submit(command=["true"])
    child = box.submit(command=["true"], depend=f"afterok:{parent['id']}")
    box.settle()
    box.stop_stream()
    worker = worker_dispatcher(box, "w")
    worker.finish_job(worker.start(claim(box, "w")), Outcome(0))
    later = box.submit(command=["true"])  # its record comes after the parent's
    real, failures = stream_release.on_event, []

    def flaky(scheduler, event):
        if event.job_id == internal_id(parent["id"]) and event.new_state == "SUCCEEDED" and len(failures) < 2:
            failures.append(event)
            raise RuntimeError("ProvisionedThroughputExceededException")
        return real(scheduler, event)

    monkeypatch.setattr(stream_release, "on_event", flaky)
    box.deliver()
    assert len(failures) == 2 and box.parked() == 0
    assert box.job(child["id"])["state"] == "QUEUED"
    box.start_stream()
    box.start_worker()
    for doc in (child, later):
        assert box.wait_state(doc["id"], "SUCCEEDED")["run_count"] == 1


def test_a_redriven_batch_failing_again_is_parked_again_from_its_failed_record(box, monkeypatch):
    box.stop_stream()
    box.settle()
    first = box.submit(command=["true"])
    second = box.submit(command=["true"])
    real = stream_release.to_send

    def broken(old, new):
        raise RuntimeError("down")

    monkeypatch.setattr(stream_release, "to_send", broken)
    box.deliver()
    info = parked_body(box)["DDBStreamBatchInfo"]

    def second_breaks(old, new):
        if new is not None and new["id"] == second["seq"]:
            raise RuntimeError("still down for this one")
        return real(old, new)

    monkeypatch.setattr(stream_release, "to_send", second_breaks)
    handled = box.reconcile()["redriven"]
    assert 1 <= handled < info["batchSize"] and box.parked() == 1
    again = parked_body(box)["DDBStreamBatchInfo"]
    assert again["batchSize"] == info["batchSize"] - handled
    assert int(again["startSequenceNumber"]) > int(info["startSequenceNumber"])
    assert box.backend.queue.backlog("batch") == 1  # the first job's message went out

    monkeypatch.setattr(stream_release, "to_send", real)
    assert box.reconcile()["redriven"] == again["batchSize"] and box.parked() == 0
    box.start_stream()
    box.start_worker()
    for doc in (first, second):
        assert box.wait_state(doc["id"], "SUCCEEDED")["run_count"] == 1
    box.settle()
    assert box.store.counts("batch")["SUCCEEDED"] == 2


def test_a_worker_without_its_configuration_is_misconfigured(box):
    from hyperbatch.wiring.worker import EXIT_MISCONFIGURED, main

    env = box.worker_env("batch", "us-west-2", "w")
    del env["HYPER_CONFIG"]
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        assert main() == EXIT_MISCONFIGURED
    finally:
        os.environ.clear()
        os.environ.update(saved)


# ---- cancel semantics: the cancel request and the end of a run are conditional writes; the first wins -------

def test_a_job_that_ends_after_its_qdel_was_accepted_ends_cancelled(box):
    job = box.submit(command=["true"])
    worker = worker_dispatcher(box, "w")
    run = worker.start(claim(box, "w"))
    status, doc = box.api("DELETE", f"/jobs/{job['id']}")
    assert status == 200 and doc["state"] == "RUNNING"  # accepted: qdel exits 0
    worker.finish_job(run, Outcome(0))  # it ended before a heartbeat told its worker
    done = box.job(job["id"])
    assert (done["state"], done["exit_status"], done["attempt"]) == ("CANCELLED", 0, 1)
    status, body = box.api("DELETE", f"/jobs/{job['id']}")
    assert (status, body["error"]) == (409, "JobFinished")


def test_a_qdel_after_the_end_is_told_the_job_finished_and_changes_nothing(box):
    job = box.submit(command=["true"], max_attempts=2)
    worker = worker_dispatcher(box, "w")
    run = worker.start(claim(box, "w"))
    worker.finish_job(run, Outcome(0))
    status, body = box.api("DELETE", f"/jobs/{job['id']}")
    assert (status, body["error"]) == (409, "JobFinished")
    assert body["message"].startswith(f"Job has finished {job['id']}")
    assert box.job(job["id"])["state"] == "SUCCEEDED"


def test_array_tasks_that_end_after_their_qdel_was_accepted_end_cancelled(box):
    array = box.submit(command=["true"], array="1-3")
    worker = worker_dispatcher(box, "w")
    run = worker.start(claim(box, "w", max_tasks=3))
    status, _ = box.api("DELETE", f"/jobs/{array['id']}", query={"index": "2"})
    assert status == 200
    doc = worker.finish_tasks(run, {p: Outcome(0) for p in run.positions})
    assert (doc["state"], doc["succeeded"], doc["cancelled"]) == ("CANCELLED", 2, 1)
    status, body = box.api("DELETE", f"/jobs/{array['id']}", query={"index": "2"})
    assert (status, body["error"]) == (409, "JobFinished")

"""The scheduled functions: the scaler submits workers to Batch and publishes worker metrics."""

import json


def test_the_scaler_submits_workers_to_batch_and_they_run_the_backlog(box):
    status, body = box.api("POST", "/jobs", body={"jobs": [{"command": ["true"]} for _ in range(6)]})
    assert status == 201
    status, array = box.api("POST", "/jobs", body={"command": ["true"], "array": "1-40", "queue": "west"})
    assert status == 201
    result = box.scale()  # once the release function has sent and counted the new jobs
    # batch: 6 jobs, 4 per worker -> 2 workers over 3 equally weighted regions; west: 40 tasks -> 4 (max), by 1:3:0.
    assert sum(n for key, n in result["started"].items() if key.endswith("/batch")) == 2
    assert {k: n for k, n in result["started"].items() if k.endswith("/west")} == {
        "us-east-1/west": 1, "us-west-2/west": 3}
    submits = box.submits()
    assert {(region, p["jobQueue"], p["jobDefinition"]) for region, p, _ in submits} >= {
        ("us-west-2", "HyperBatch-default", "HyperBatch-standard-ec2-x86_64")}
    env = {e["name"]: e["value"] for e in submits[0][1]["containerOverrides"]["environment"]}
    assert env["HYPER_BACKEND"] == "aws" and env["HYPER_QUEUE"] in ("batch", "west")
    workers = box.start_submitted_workers()
    assert len(workers) == 6 and {w.region for w in workers} >= {"us-east-1", "us-west-2"}
    for job in body["jobs"]:
        box.wait_state(job["id"], "SUCCEEDED")
    done = box.wait_state(array["id"], "SUCCEEDED")
    assert done["exec_host"].split("/")[0] in ("us-east-1", "us-west-2")
    regions = {d["region"]: d for d in box.emf("scaler") if "region" in d}
    assert set(regions) == {"us-east-1", "us-west-2", "eu-west-1"}
    assert all(set(d) >= {"WorkersRunning", "VcpusRunning"} for d in regions.values())
    assert sum(d["WorkersRunning"][0] for d in regions.values()) == 6
    box.join_workers(30)
    assert box.scale() == {"started": {}}  # nothing left to do


def test_the_release_function_reports_a_failed_record_and_carries_on(box, monkeypatch):
    import hyperbatch.services.stream_release as stream

    box.stop_stream()
    parent = box.api("POST", "/jobs", body={"command": ["true"]})[1]
    child = box.api("POST", "/jobs", body={"command": ["true"], "depend": f"afterok:{parent['id']}"})[1]
    box.deliver()
    box.start_worker()
    box.wait_state(parent["id"], "SUCCEEDED")
    calls = {"n": 0}
    real = stream.on_event

    def flaky(scheduler, event):
        if event.job_id == parent["seq"] and event.new_state == "SUCCEEDED" and calls["n"] == 0:
            calls["n"] += 1
            raise RuntimeError("a moment of trouble")
        return real(scheduler, event)

    monkeypatch.setattr(stream, "on_event", flaky)
    box.printed.clear()
    box.deliver()  # the failed record is retried, as the event source mapping does
    assert calls["n"] == 1 and box.parked() == 0
    assert box.job(child["id"])["state"] == "QUEUED"
    box.deliver()  # the child's release is a change of its own: the stream sends its work
    box.start_worker()
    box.wait_state(child["id"], "SUCCEEDED")
    lines = "".join(box.printed["release"]).splitlines()
    failures = [json.loads(line) for line in lines if "stream records failed" in line]
    assert [f["failed"] for f in failures] == [1]
    succeeded = [d["JobsSucceeded"] for d in box.emf("release") if "JobsSucceeded" in d]
    assert succeeded == [[1.0]]  # counted once: in the retry, not in the batch that failed


def test_a_scaler_run_that_finds_the_lease_taken_does_nothing(box):
    from hyperbatch.adapters.aws.lease import TableLease
    from hyperbatch.core.names import SCALER_LEASE_KEY

    assert box.api("POST", "/jobs", body={"command": ["true"]})[0] == 201
    lease = TableLease(box.dynamodb, box.plane.table, SCALER_LEASE_KEY)
    assert lease.acquire("a run still going", 60)
    assert box.scale() == {"started": {}, "skipped": "another scaler run holds the lease"}
    assert box.submits() == []
    lease.release("a run still going")
    assert sum(box.scale()["started"].values()) == 1
    # A run lets go when done, so the next tick runs on time; a lease that ran out is taken over.
    assert "Item" not in box.dynamodb.get_item(
        TableName=box.plane.table, Key={"pk": {"S": SCALER_LEASE_KEY}, "sk": {"S": "lease"}})
    assert lease.acquire("a run that died", -5)
    assert "skipped" not in box.scale()


def test_one_region_failing_does_not_stop_scaling_elsewhere(box, monkeypatch):
    """us-west-2's job queue is missing (its workers cannot be counted) and eu-west-1 throttles
    SubmitJob: both queues still get all their workers, in us-east-1, and each failure is a metric
    with its region and queue and one structured log line."""
    from botocore.exceptions import ClientError

    from hyperbatch.adapters.aws.batch import BatchCompute

    west2 = box.client("batch", "us-west-2")
    west2.update_job_queue(jobQueue="HyperBatch-default", state="DISABLED")
    west2.delete_job_queue(jobQueue="HyperBatch-default")
    real_start = BatchCompute.start

    def throttled_in_eu(self, region, queue, definition, count):
        if region == "eu-west-1":
            raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "Too Many Requests"}},
                              "SubmitJob")
        return real_start(self, region, queue, definition, count)

    monkeypatch.setattr(BatchCompute, "start", throttled_in_eu)
    assert box.api("POST", "/jobs", body={"jobs": [{"command": ["true"]} for _ in range(6)]})[0] == 201
    assert box.api("POST", "/jobs", body={"command": ["true"], "array": "1-40", "queue": "west"})[0] == 201
    result = box.scale()
    # batch: 2 workers (1 planned per answering region, eu-west-1's re-planned); west: 4, none in us-west-2.
    assert result["started"] == {"us-east-1/batch": 2, "us-east-1/west": 4}
    assert [f.split(":")[0] for f in result["failures"]] == ["us-west-2/* count", "eu-west-1/batch start"]
    assert "does not exist" in result["failures"][0] and "TooManyRequestsException" in result["failures"][1]
    failures = sorted((d["region"], d["queue"], d["ScalingFailures"]) for d in box.emf("scaler")
                      if "ScalingFailures" in d)
    assert failures == [("eu-west-1", "batch", [1.0]), ("us-west-2", "*", [1.0])]
    logged = [json.loads(line) for line in "".join(box.printed["scaler"]).splitlines()
              if line.startswith("{") and "scaling failed" in line]
    assert [(line["level"], line["region"], line["queue"], line["stage"]) for line in logged] == [
        ("WARNING", "us-west-2", "*", "count"), ("WARNING", "eu-west-1", "batch", "start")]
    assert {region for region, _, _ in box.submits()} == {"us-east-1"}

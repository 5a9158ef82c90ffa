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

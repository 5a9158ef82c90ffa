"""Jobs through the API function, sent and released by the stream function, run by worker agents."""

import base64

from tests.aws_box.harness import ALICE


def test_a_job_and_a_100_task_array_run_and_their_output_is_readable(box):
    job = box.submit(command=["sh", "-c", "echo hello from $HYPER_JOB_ID"], name="hello")
    array = box.submit(command=["sh", "-c", "echo task $HYPER_ARRAY_INDEX"], array="1-100")
    assert (job["state"], array["state"], array["array"]["total"]) == ("QUEUED", "QUEUED", 100)
    for _ in range(3):
        box.start_worker()
    box.wait_state(job["id"], "SUCCEEDED")
    done = box.wait_state(array["id"], "SUCCEEDED", "FAILED", timeout=60)
    assert (done["state"], done["succeeded"], done["running"], done["pending"]) == ("SUCCEEDED", 100, 0, 0)

    status, log = box.api("GET", f"/jobs/{job['id']}/log")
    hello = f"hello from {job['id']}\n".encode()
    assert status == 200 and log == {"data": base64.b64encode(hello).decode(), "encoding": "base64",
                                     "offset": len(hello), "final": True, "state": "SUCCEEDED"}
    for index in (1, 57, 100):
        status, log = box.api("GET", f"/jobs/{array['id']}/log", query={"index": index})
        assert status == 200 and base64.b64decode(log["data"]) == f"task {index}\n".encode()
    status, tasks = box.api("GET", f"/jobs/{array['id']}/tasks", query={"limit": 100})
    assert status == 200 and {t["state"] for t in tasks["tasks"]} == {"SUCCEEDED"}

    box.join_workers(30)  # idle workers exit 0 by themselves
    assert [w.exit_code for w in box.workers] == [0, 0, 0]
    assert box.backend.queue.backlog("batch") == box.backend.queue.in_flight("batch") == 0
    box.settle()
    queues = {d["queue"]: d for d in box.emf("release") if "queue" in d}
    names = {m["Name"] for d in box.emf("release") for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"JobsSubmitted", "JobsStarted", "JobsSucceeded", "DispatchLatency"} <= names
    assert set(queues) == {"batch"}
    def total(metric):
        return sum(sum(d.get(metric, [])) for d in box.emf("release"))

    assert (total("JobsSubmitted"), total("JobsStarted"), total("JobsSucceeded")) == (2, 2, 2)
    assert all(ms >= 0 for d in box.emf("release") for ms in d.get("DispatchLatency", []))


def test_an_afterok_chain_is_released_link_by_link_and_a_broken_link_cancels(box):
    first = box.submit(command=["true"])
    second = box.submit(command=["true"], depend=f"afterok:{first['id']}")
    third = box.submit(command=["true"], depend=f"afterok:{second['id']}")
    failing = box.submit(command=["false"], max_attempts=1)
    never = box.submit(command=["true"], depend=f"afterok:{failing['id']}")
    assert [j["state"] for j in (second, third, never)] == ["WAITING"] * 3
    box.start_worker()
    assert box.wait_state(third["id"], "SUCCEEDED")["state"] == "SUCCEEDED"
    assert box.job(failing["id"])["state"] == "FAILED"
    cancelled = box.wait_state(never["id"], "CANCELLED")
    assert failing["id"] in cancelled["reason"]
    assert box.parked() == 0


def test_qdel_of_a_running_job_kills_it_and_it_ends_cancelled(box):
    job = box.submit(command=["sleep", "30"])
    box.start_worker()
    box.wait_state(job["id"], "RUNNING")
    status, doc = box.api("DELETE", f"/jobs/{job['id']}")
    assert status == 200 and doc["state"] == "RUNNING"  # the worker kills it at its next heartbeat
    done = box.wait_state(job["id"], "CANCELLED", timeout=15)
    assert done["exit_status"] == 256 + 15  # SIGTERM, as PBS reports a signal
    assert done["reason"] == f"cancelled by {ALICE}"
    assert done["finished_at"] - done["started_at"] < 10


def test_a_batch_of_1000_jobs_of_an_8kb_script_fits_every_limit_and_runs_from_the_bucket(box):
    """One POST of 1,000 jobs that share an 8 KB script (sent once): the request stays far under
    Lambda's 6 MB, the script is put in the files bucket once, and no job item (so no stream record)
    carries it; a worker fetches it to run the job."""
    from hyperbatch.adapters.aws.items import item_bytes

    script = "#!/bin/sh\n" + "# the comments and functions of a real script\n" * 180 + 'echo "ran $HYPER_JOB_ID"\n'
    assert 8000 < len(script.encode()) < 9000
    box.stop_stream()  # only the submit is looked at first
    status, body = box.api("POST", "/jobs", body={"script": script, "script_name": "real.sh",
                                                  "jobs": [{"env": {"N": str(i)}} for i in range(999)]
                                                  + [{"command": ["true"]}]})
    assert status == 201 and len(body["jobs"]) == 1000
    (submit,) = [i for i in box.invocations if i.function == "api"]
    assert submit.request_bytes < 100_000  # Lambda takes 6 MB
    puts = [c for c in box.meter.calls if c.service == "s3" and c.operation == "PutObject"]
    assert len(puts) == 1 and puts[0].actor == "api"
    writes = [c for c in box.meter.calls if c.operation == "BatchWriteItem"]
    assert len(writes) == 40 and all(len(next(iter(c.params["RequestItems"].values()))) <= 25 for c in writes)
    items = [r["PutRequest"]["Item"] for c in writes for r in next(iter(c.params["RequestItems"].values()))]
    assert max(item_bytes(i) for i in items) < 2048 and not any(script in repr(i) for i in items)
    assert body["jobs"][0]["script_name"] == "real.sh"
    assert (body["jobs"][-1]["command"], body["jobs"][-1]["script_name"]) == (["true"], None)  # its own
    # A worker fetches the script to run its job (one on the west queue: the batch's order is SQS's).
    status, job = box.api("POST", "/jobs", body={"script": script, "queue": "west"})
    box.deliver()  # the 1,000 sends first, then the west job's
    box.start_stream()
    box.start_worker("west")
    done = box.wait_state(job["id"], "SUCCEEDED", "FAILED")
    assert done["state"] == "SUCCEEDED", done
    assert base64.b64decode(box.api("GET", f"/jobs/{job['id']}/log")[1]["data"]) == f"ran {job['id']}\n".encode()
    assert any(c.service == "s3" and c.operation == "GetObject" and c.actor == "worker" for c in box.meter.calls)


def test_ids_come_from_reserved_blocks_and_name_the_stack(box, monkeypatch):
    """Ids are PBS ids of the stack; the API function reserves them in blocks from the job table's
    counter item: a burst of lone submits writes the counter once per block, a POST of 1,000 once."""
    from hyperbatch.wiring import lambdas as runtime

    server = box.config.settings.stack_name
    # A burst: every submit within a block's lifetime, however slowly a loaded machine runs them.
    monkeypatch.setattr(runtime.get().scheduler.sequence, "_clock", lambda: 0.0)
    box.meter.clear()
    lone = [box.submit(command=["true"])["id"] for _ in range(20)]
    counter_writes = [c for c in box.meter.calls
                      if c.operation == "UpdateItem" and c.params["Key"]["pk"]["S"] == "sequence"]
    assert lone == [f"{n}.{server}" for n in range(1, 21)]
    assert len(counter_writes) <= 6  # blocks of 1, 2, 4, 8, 16 within a second

    box.meter.clear()
    status, body = box.api("POST", "/jobs", body={"jobs": [{"command": ["true"]}] * 1000})
    assert status == 201
    batch = [int(j["id"].split(".")[0]) for j in body["jobs"]]
    assert batch == list(range(batch[0], batch[0] + 1000)) and batch[0] > 20  # one run of consecutive ids
    counter_writes = [c for c in box.meter.calls
                      if c.operation == "UpdateItem" and c.params["Key"]["pk"]["S"] == "sequence"]
    assert len(counter_writes) <= 1  # the batch's ids in one conditional ADD (or left in the block)
    array = box.submit(command=["true"], array="1-3")["id"]
    assert array.endswith(f"[].{server}") and int(array.split("[")[0]) > batch[-1]

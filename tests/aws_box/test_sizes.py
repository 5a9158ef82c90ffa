"""A queue of several sizes on AWS: each job goes to the smallest definition that fits its request,
the scaler starts workers of that size for it, and only such a worker runs it."""

import base64

import pytest

from tests.aws_box.harness import Box

# The shipped `standard` (1 vCPU, 2 GiB) plus a 4-vCPU, 16-GiB size the queues also run on.
LARGE = {"name": "large", "image": "worker", "vcpus": 4, "memory_mib": 16384, "jobs_to_workers_ratio": 1,
         "max_workers": 2, "chunk_size": 64}


@pytest.fixture
def sized():
    with Box(queues={"definitions": ["large"]}, more_definitions=[LARGE]) as box:
        box.start_stream()
        yield box


def test_each_job_goes_to_the_smallest_size_that_fits_and_runs_on_a_worker_of_it(sized):
    box = sized
    small = box.submit(command=["sh", "-c", "echo $NCPUS on $HYPER_DEFINITION"], resources={"ncpus": 1})
    wide = box.submit(command=["sh", "-c", "echo $NCPUS on $HYPER_DEFINITION"], resources={"ncpus": 4})
    roomy = box.submit(command=["true"], resources={"mem": "8gb"})
    assert [box.job(j["id"])["definition"] for j in (small, wide, roomy)] == ["standard", "large", "large"]
    assert box.job(wide["id"])["pool"] == "batch--large"
    box.settle()
    assert box.backend.queue.backlog("batch") == 1 and box.backend.queue.backlog("batch--large") == 2

    box.scale()
    started = {(p["containerOverrides"]["environment"][0]["value"], p["jobDefinition"]) for _, p, _ in box.submits()}
    assert {queue for queue, _ in started} == {"batch", "batch--large"}  # a pool each, by its own backlog
    assert any("large" in definition for queue, definition in started if queue == "batch--large")
    box.start_submitted_workers()
    for job in (small, wide, roomy):
        box.wait_state(job["id"], "SUCCEEDED", timeout=60)
    for job, text in ((small, "1 on standard\n"), (wide, "4 on large\n")):
        status, log = box.api("GET", f"/jobs/{job['id']}/log")
        assert status == 200 and base64.b64decode(log["data"]).decode() == text


def test_a_request_larger_than_every_size_is_refused_naming_them(sized):
    status, body = sized.api("POST", "/jobs", body={"command": ["true"], "resources": {"ncpus": 8}})
    assert status == 400
    assert body["message"] == ("Job exceeds queue resource limits: ncpus=8 asked, and queue batch runs jobs of at "
                               "most ncpus=1,mem=2gb,ngpus=0 or ncpus=4,mem=16gb,ngpus=0")
    status, body = sized.api("POST", "/jobs", body={"command": ["true"], "definition": "large"})
    assert status == 201 and sized.job(body["id"])["definition"] == "large"  # a job may name its size


def test_qalter_of_resources_moves_a_queued_job_to_the_size_that_fits(sized):
    box = sized
    job = box.submit(command=["true"], hold=True)
    status, altered = box.api("PATCH", f"/jobs/{job['id']}", body={"resources": {"ncpus": 3}})
    assert status == 200, altered
    doc = box.job(job["id"])
    assert (doc["definition"], doc["pool"]) == ("large", "batch--large")


def test_a_queue_of_one_size_is_unchanged():
    with Box() as box:
        assert [p.name for p in box.config.pools] == ["batch", "west"]
        job = box.submit(command=["true"])
        assert box.job(job["id"])["pool"] is None

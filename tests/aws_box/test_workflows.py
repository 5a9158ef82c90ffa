"""Workflows on AWS in a box: POST /workflows through the API function writes every job, edge and the
workflow's record to DynamoDB at once; the stream releases the steps; GET /workflows/NAME reads them."""

from tests.aws_box.harness import ALICE, internal_id

FLOW = {
    "name": "nightly",
    "defaults": {"walltime": "00:05:00"},
    "jobs": {
        "fetch": {"command": ["sh", "-c", "exit 4"]},
        "crunch": {"command": ["true"], "array": "1-3", "depends_on": ["fetch"]},
        "publish": {"command": ["true"], "depends_on": {"crunch": "afterok"}},
        "tidy": {"command": ["true"], "depends_on": {"fetch": "afterany"}},
    },
}


def test_a_workflow_is_written_at_once_and_a_failed_step_cancels_afterok_and_runs_afterany(box):
    status, shown = box.api("POST", "/workflows", body=FLOW)
    assert status == 201, shown
    jobs = {row["step"]: row["job"] for row in shown["steps"]}
    assert [row["state"] for row in shown["steps"]] == ["QUEUED", "WAITING", "WAITING", "WAITING"]
    assert jobs["crunch"].endswith("[]." + jobs["crunch"].split(".", 1)[1])
    record = box.store.workflow(ALICE, "nightly")
    assert record["steps"] == {step: internal_id(job) for step, job in jobs.items()}
    assert box.job(jobs["publish"])["depend"] == f"afterok:{internal_id(jobs['crunch'])}"

    box.start_worker()
    for step in ("publish", "tidy"):
        box.wait_state(jobs[step], "SUCCEEDED", "CANCELLED", "FAILED")
    status, now = box.api("GET", "/workflows/nightly")
    assert status == 200
    assert {r["step"]: r["state"] for r in now["steps"]} == {
        "fetch": "FAILED", "crunch": "CANCELLED", "publish": "CANCELLED", "tidy": "SUCCEEDED"}
    assert box.parked() == 0


def test_a_refused_workflow_writes_nothing_and_a_missing_one_is_404(box):
    before = box.store.query(owner=ALICE).items
    bad = {**FLOW, "jobs": {**FLOW["jobs"], "publish": {"command": ["true"], "queue": "nosuch"}}}
    status, answer = box.api("POST", "/workflows", body=bad)
    assert status == 400 and answer["message"].startswith("jobs.publish: unknown queue 'nosuch'"), answer
    elsewhere = {**FLOW, "jobs": {**FLOW["jobs"], "tidy": {"command": ["true"], "stagein": ["in.txt@s3://elsewhere/in.txt"]}}}
    status, answer = box.api("POST", "/workflows", body=elsewhere)
    assert status == 400 and answer["message"].startswith("jobs.tidy: stagein in.txt: "), answer
    cycle = {"name": "loop", "jobs": {"a": {"command": ["true"], "depends_on": ["b"]},
                                      "b": {"command": ["true"], "depends_on": ["a"]}}}
    status, answer = box.api("POST", "/workflows", body=cycle)
    assert (status, answer["message"]) == (400, "jobs.a.depends_on: a cycle: a -> b -> a (each waits for the next)")
    assert box.store.query(owner=ALICE).items == before
    status, answer = box.api("GET", "/workflows/nightly")
    assert status == 404 and answer["message"].startswith("no workflow named nightly")

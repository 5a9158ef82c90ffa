"""Array jobs (-J) and dependencies (-W depend=...) through the real CLI."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import task_id

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_arrays_dependencies")]


def test_array_of_100_tasks(hb):
    script = hb.script('#!/bin/bash\necho "$HYPER_ARRAY_INDEX $PBS_ARRAY_INDEX"\n', "array.sh")
    array_id = hb.submit("-J", "1-100", "-N", "hundred", script)

    job = hb.wait_state(array_id, ("SUCCEEDED", "FAILED", "CANCELLED"), timeout=60)
    assert job["state"] == "SUCCEEDED", job
    assert job["array"]["total"] == 100
    assert job["array"]["succeeded"] == 100
    assert job["array"]["failed"] == 0 and job["array"]["failed_tasks"] == {}

    assert re.fullmatch(r"\d+\[\]\.\S+", array_id)  # qsub -J prints N[].SERVER, as PBS does
    attrs = hb.full(array_id)
    assert attrs["array"] == "True"
    assert attrs["array_indices_submitted"] == "1-100"
    assert attrs["array_state_count"] == "Queued:0 Running:0 Exiting:0 Expired:100"

    listing = hb.run("qstat", "-tx", array_id).stdout
    rows = {line.split()[0]: line.split() for line in listing.splitlines()[2:]}
    assert list(rows) == [array_id] + [task_id(array_id, i) for i in range(1, 101)], listing
    assert {rows[task_id(array_id, i)][-2] for i in range(1, 101)} == {"X"}, listing  # PBS: finished subjobs are X
    assert rows[array_id][-2] == "F"  # the array's own row

    for index in (1, 37, 100):
        assert hb.run("qlog", task_id(array_id, index)).stdout == f"{index} {index}\n"
        assert hb.run("qlog", array_id.replace("[]", f"[{index}]").split(".")[0]).stdout == f"{index} {index}\n"

    task = hb.jobs(task_id(array_id, 37))
    assert task == [{**task[0], "id": task_id(array_id, 37), "index": 37, "state": "SUCCEEDED", "exit_status": 0,
                     "job_state": "X", "array_id": array_id}]


def test_afterok_chain_runs_in_order(hb):
    order = hb.workdir / "order.txt"
    step = '#!/bin/bash\necho "$PBS_JOBNAME start" >> "$PBS_O_WORKDIR/order.txt"\nsleep 0.3\n' \
           'echo "$PBS_JOBNAME end" >> "$PBS_O_WORKDIR/order.txt"\n'
    script = hb.script(step, "step.sh")
    a = hb.submit("-h", "-N", "A", script)  # held, so B and C are surely waiting when we look
    b = hb.submit("-N", "B", "-W", f"depend=afterok:{a}", script)
    c = hb.submit("-N", "C", "-W", f"depend=afterok:{b}", script)

    assert hb.job(b)["state"] == "WAITING"
    assert hb.job(c)["state"] == "WAITING"
    listing = hb.run("qstat").stdout
    assert re.search(rf"^{re.escape(b)}\s.*\sH\s", listing, re.M), listing  # PBS: a dependency wait is H
    assert hb.full(c)["depend"] == f"afterok:{b}"

    hb.run("qrls", a)
    jobs = {j["id"]: j for j in hb.wait_all_final([a, b, c], timeout=45)}
    assert [jobs[x]["state"] for x in (a, b, c)] == ["SUCCEEDED"] * 3
    assert jobs[a]["finished_at"] <= jobs[b]["started_at"]
    assert jobs[b]["finished_at"] <= jobs[c]["started_at"]
    assert order.read_text() == "A start\nA end\nB start\nB end\nC start\nC end\n"


def test_afternotok_runs_and_afterok_is_cancelled_when_the_parent_fails(hb):
    failing = hb.script("#!/bin/bash\necho failing on purpose\nexit 1\n", "fails.sh")
    parent = hb.submit("-h", "--retries", "0", "-N", "parent", failing)
    on_failure = hb.submit("-N", "cleanup", "-W", f"depend=afternotok:{parent}", "--", "echo", "cleaning up")
    on_success = hb.submit("-N", "next", "-W", f"depend=afterok:{parent}", "--", "echo", "never runs")
    grandchild = hb.submit("-N", "after-next", "-W", f"depend=afterok:{on_success}", "--", "echo", "never")
    for job_id in (on_failure, on_success, grandchild):
        assert hb.job(job_id)["state"] == "WAITING"

    hb.run("qrls", parent)
    jobs = {j["id"]: j for j in hb.wait_all_final([parent, on_failure, on_success, grandchild], timeout=45)}
    assert jobs[parent]["state"] == "FAILED"
    assert jobs[parent]["exit_status"] == 1
    assert jobs[on_failure]["state"] == "SUCCEEDED"
    assert hb.run("qlog", on_failure).stdout == "cleaning up\n"

    assert jobs[on_success]["state"] == "CANCELLED"
    assert jobs[on_success]["run_count"] == 0
    comment = hb.full(on_success)["comment"]
    assert parent in comment and "FAILED" in comment, comment

    # The cancellation runs down the chain: the grandchild can never run either.
    assert jobs[grandchild]["state"] == "CANCELLED"
    assert on_success in hb.full(grandchild)["comment"]


def test_dependency_on_a_finished_job_is_decided_at_submission(hb):
    ok = hb.submit("--", "true")
    hb.wait_state(ok, "SUCCEEDED")
    runs = hb.submit("-W", f"depend=afterok:{ok}", "--", "echo", "parent was fine")
    never = hb.submit("-W", f"depend=afternotok:{ok}", "--", "echo", "never")
    assert hb.wait_state(runs, ("SUCCEEDED", "FAILED", "CANCELLED"))["state"] == "SUCCEEDED"
    job = hb.wait_state(never, ("SUCCEEDED", "FAILED", "CANCELLED"))
    assert job["state"] == "CANCELLED"
    assert ok in job["reason"]

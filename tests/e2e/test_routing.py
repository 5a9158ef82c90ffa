"""Routing: queue `west` weighs us-east-1=1, us-west-2=3, eu-west-1=0 (configurations/queues.json).

Workers for the queue must start in us-east-1 and us-west-2 only, more of them in us-west-2, and
jobs run where the workers are (`exec_host` is `region/worker`).
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections import Counter

import pytest

from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_routing")]

JOBS = 40


def e2e_configure(config: dict) -> None:
    """Room for the regions' own caps (us-east-1 2, us-west-2 4, eu-west-1 2), whatever the CPU count: eight
    workers, and eight CPUs for their `sleep` jobs to be placed on (every job takes one)."""
    config["settings"]["local"]["max_workers"] = 8
    config["settings"]["local"]["cpus"] = 8


def _status_workers(hb) -> dict[str, int]:
    """`hyper local status`'s `queue west:` line as {region: workers}."""
    out = hb.run("hyper", "local", "status").stdout
    line = next(l for l in out.splitlines() if l.startswith("queue west:"))
    return {r: int(n) for r, n in re.findall(r"([a-z]{2}-[a-z]+-\d)=(\d+)", line.split(";")[-1])}


def _watch_workers(hb, ids: list[str]) -> tuple[Counter, list[dict]]:
    """Until the jobs finish: the most workers seen per region (from status), and the jobs."""
    most: Counter = Counter()
    box: dict = {}

    def finished():
        for region, n in _status_workers(hb).items():
            most[region] = max(most[region], n)
        for row in hb.workers():
            assert row["queue"] != "west" or row["region"] != "eu-west-1", f"a west worker in eu-west-1: {row}"
        box["jobs"] = hb.jobs(*ids)
        return all(j["state"] in ("SUCCEEDED", "FAILED", "CANCELLED") for j in box["jobs"])

    wait_for(finished, 60, interval=0.5, what=f"{len(ids)} west jobs to finish")
    return most, box["jobs"]


def _check_routing(most: Counter, jobs: list[dict]) -> None:
    assert {j["state"] for j in jobs} == {"SUCCEEDED"}
    ran_in = Counter(j["exec_host"].split("/")[0] for j in jobs)
    assert most["eu-west-1"] == 0 and ran_in["eu-west-1"] == 0, (most, ran_in)
    assert most["us-east-1"] >= 1 and most["us-west-2"] >= 1, f"workers seen per region: {dict(most)}"
    assert most["us-west-2"] > most["us-east-1"], f"workers seen per region: {dict(most)}"
    assert ran_in["us-east-1"] >= 1, f"jobs per region: {dict(ran_in)}"
    assert ran_in["us-west-2"] > ran_in["us-east-1"], f"jobs per region: {dict(ran_in)}"


def test_west_jobs_submitted_with_qsub_follow_the_weights(hb):
    """The way users submit: one qsub after another."""
    # Every job waits for the gate, so that all of them are in the queue at once, however slowly
    # qsub follows qsub: each queued job gets a worker while room is left (settings.local).
    gate = hb.workdir / "west.gate"
    script = hb.script(
        f'#!/bin/bash\nuntil [ -e "{gate}" ]; do sleep 0.1; done\nsleep 1\necho "ran in $HYPER_REGION"\n', "west.sh"
    )
    ids = [hb.submit("-q", "west", script) for _ in range(JOBS)]
    gate.touch()
    most, jobs = _watch_workers(hb, ids)
    _check_routing(most, jobs)
    for job in jobs[:3]:
        assert hb.run("qlog", job["id"]).stdout == f"ran in {job['exec_host'].split('/')[0]}\n"


def test_west_jobs_submitted_as_one_batch_follow_the_weights(hb):
    """The same jobs arriving at once (one POST /jobs with a batch): the whole backlog is seen together."""
    wait_for(lambda: not _status_workers(hb), 20, what="the west workers of the last test to go idle")
    body = {"jobs": [{"command": ["sleep", "2"], "queue": "west"} for _ in range(JOBS)]}
    request = urllib.request.Request(
        f"{hb.url}/jobs", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {hb.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 201
        ids = [j["id"] for j in json.load(answer)["jobs"]]
    assert len(ids) == JOBS
    most, jobs = _watch_workers(hb, ids)
    _check_routing(most, jobs)

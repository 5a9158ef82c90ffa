"""Workflow files through the installed `hyper` against a real daemon: submit, status, show."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_workflows")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SVG = "{http://www.w3.org/2000/svg}"


def status(hb, name: str) -> dict:
    return json.loads(hb.run("hyper", "workflow", "status", name, "--json").stdout)


def wait_steps_final(hb, name: str, timeout: float = 60) -> dict:
    from tests.e2e.conftest import FINAL

    def finished() -> dict | None:
        shown = status(hb, name)
        return shown if all(r["state"] in FINAL for r in shown["steps"]) else None

    return wait_for(finished, timeout=timeout, interval=0.3, what=f"workflow {name} to finish")


def step_states(svg: Path) -> dict[str, tuple[str, str]]:
    """step -> (data-state, fill) of each box in the picture."""
    root = ET.parse(svg).getroot()
    return {g.get("data-step"): (g.get("data-state"), g.find(f"{SVG}rect").get("fill"))
            for g in root.iter(f"{SVG}g") if g.get("class") == "step"}


def test_the_example_runs_with_small_arrays_and_is_drawn(hb):
    shutil.copy(EXAMPLES / "sweep.yaml", hb.workdir)
    shutil.copy(EXAMPLES / "square.sh", hb.workdir)
    plan = hb.workdir / "plan.svg"
    hb.run("hyper", "workflow", "show", "sweep.yaml", "-v", "N=5", "--svg", plan)
    assert step_states(plan) == {s: ("PLANNED", "#e0e0e0") for s in ("prepare", "square", "report", "cleanup")}

    out = hb.run("hyper", "workflow", "submit", "sweep.yaml", "-v", "N=5").stdout
    submitted = dict(line.split("\t") for line in out.splitlines())
    assert list(submitted) == ["prepare", "square", "report", "cleanup"]
    assert submitted["square"].split(".")[0].endswith("[]")  # the array step is an array job

    done = wait_steps_final(hb, "sweep")
    assert {r["step"]: r["state"] for r in done["steps"]} == dict.fromkeys(submitted, "SUCCEEDED")
    square = next(r for r in done["steps"] if r["step"] == "square")
    assert square["array"]["succeeded"] == 5 and square["depends_on"] == {"prepare": "afterok"}
    assert (hb.workdir / "report").read_text() == "1\n4\n9\n16\n25\n"
    assert not (hb.workdir / "numbers").exists()  # cleanup ran last, in the shared PBS_O_WORKDIR
    # The jobs are ordinary jobs: qstat shows them by the ids the submit printed.
    job = hb.job(submitted["report"])
    assert job["name"] == "report" and job["depend"] == f"afterok:{submitted['square'].replace('[]', '')}"
    assert job["walltime"] == 600  # the file's defaults

    table = hb.run("hyper", "workflow", "status", "sweep").stdout.splitlines()
    assert table[0].startswith("workflow sweep of ")
    assert table[1].split() == ["STEP", "JOB", "STATE", "EXIT", "TASKS", "DEPENDS", "ON"]
    assert table[3].split() == ["square", submitted["square"], "SUCCEEDED", "0", "5/5", "done", "prepare", "(afterok)"]

    live = hb.workdir / "live.svg"
    hb.run("hyper", "workflow", "show", "sweep", "--svg", live)
    assert step_states(live) == {s: ("SUCCEEDED", "#9be59b") for s in submitted}


def test_a_failing_step_cancels_its_afterok_dependents_and_runs_its_afterany_ones(hb):
    (hb.workdir / "fails.yaml").write_text(
        "name: fails\n"
        "jobs:\n"
        "  build: {command: [sh, -c, 'exit 3']}\n"
        "  test:  {command: [sh, -c, 'touch \"$PBS_O_WORKDIR/tested\"'], depends_on: [build]}\n"
        "  deploy: {command: ['true'], depends_on: {test: afterok}}\n"
        "  notify: {command: [sh, -c, 'touch \"$PBS_O_WORKDIR/notified\"'], depends_on: {build: afterany}}\n"
        "  rescue: {command: ['true'], depends_on: {build: afternotok}}\n"
    )
    hb.run("hyper", "workflow", "submit", "fails.yaml")
    done = wait_steps_final(hb, "fails")
    states = {r["step"]: (r["state"], r["exit_status"]) for r in done["steps"]}
    assert states == {"build": ("FAILED", 3), "test": ("CANCELLED", None), "deploy": ("CANCELLED", None),
                      "notify": ("SUCCEEDED", 0), "rescue": ("SUCCEEDED", 0)}
    assert (hb.workdir / "notified").exists() and not (hb.workdir / "tested").exists()

    picture = hb.workdir / "fails.svg"
    hb.run("hyper", "workflow", "show", "fails", "--svg", picture)
    assert step_states(picture)["build"] == ("FAILED", "#ff8a8a")
    assert step_states(picture)["deploy"] == ("CANCELLED", "#c8c8c8")


def test_an_invalid_file_is_refused_with_its_line_and_field_and_nothing_is_created(hb):
    before = hb.jobs()
    (hb.workdir / "bad.yaml").write_text(
        "name: bad\n"
        "jobs:\n"
        "  first: {command: ['true']}\n"
        "  second:\n"
        "    command: ['true']\n"
        "    array: 1-x\n"
        "    depends_on: [first]\n"
    )
    proc = hb.run("hyper", "workflow", "submit", "bad.yaml", check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("hyper: bad.yaml:6: jobs.second.array: array range '1-x'"), proc.stderr
    assert len(proc.stderr.splitlines()) == 1

    (hb.workdir / "loop.yaml").write_text(
        "name: loop\njobs:\n  a: {command: ['true'], depends_on: [b]}\n  b: {command: ['true'], depends_on: [a]}\n")
    proc = hb.run("hyper", "workflow", "submit", "loop.yaml", check=False)
    assert proc.returncode == 2 and "loop.yaml:3: jobs.a.depends_on: a cycle: a -> b -> a" in proc.stderr

    (hb.workdir / "queue.yaml").write_text(
        "name: q\njobs:\n  a: {command: ['true']}\n  b: {command: ['true'], queue: nosuch}\n")
    proc = hb.run("hyper", "workflow", "submit", "queue.yaml", check=False)
    assert proc.returncode != 0 and proc.stderr.startswith("hyper: queue.yaml:4: jobs.b: unknown queue 'nosuch'")

    assert hb.jobs() == before  # all or none: the valid steps were not created either
    missing = hb.run("hyper", "workflow", "status", "bad", check=False)
    assert missing.returncode == 1 and missing.stderr == "hyper: no workflow named bad: submit one with hyper " \
                                                        "workflow submit FILE.yaml\n"


def test_cancel_stops_every_unfinished_step_and_releases_no_afterany_step(hb):
    (hb.workdir / "long.yaml").write_text(
        "name: long\n"
        "jobs:\n"
        "  quick: {command: ['true']}\n"
        "  slow: {command: [sleep, '60'], depends_on: [quick]}\n"
        "  after: {command: [sh, -c, 'touch \"$PBS_O_WORKDIR/released\"'], depends_on: {slow: afterany}}\n"
        "  last: {command: ['true'], depends_on: {after: afterany}}\n"
    )
    hb.run("hyper", "workflow", "submit", "long.yaml")
    wait_for(lambda: {r["step"]: r["state"] for r in status(hb, "long")["steps"]}.get("slow") == "RUNNING",
                what="the slow step running")
    out = hb.run("hyper", "workflow", "cancel", "long").stdout.splitlines()
    assert [line.split("\t")[0] for line in out] == ["last", "after", "slow"]  # dependents first; quick had finished
    done = wait_steps_final(hb, "long")
    assert {r["step"]: r["state"] for r in done["steps"]} == {
        "quick": "SUCCEEDED", "slow": "CANCELLED", "after": "CANCELLED", "last": "CANCELLED"}
    assert not (hb.workdir / "released").exists()

    again = hb.run("hyper", "workflow", "cancel", "long", check=False)
    assert (again.returncode, again.stderr.strip()) == (1, "hyper: workflow long has finished: no step to cancel")
    missing = hb.run("hyper", "workflow", "cancel", "nosuch", check=False)
    assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) == 1

    listed = hb.run("hyper", "workflow", "list").stdout.splitlines()
    assert listed[0].split() == ["NAME", "SUBMITTED", "STEPS"]
    assert [line.split()[0] for line in listed[1:]][0] == "long"  # newest first
    assert listed[1].split()[-1] == "4"
    names = [w["name"] for w in json.loads(hb.run("hyper", "workflow", "list", "--json").stdout)["workflows"]]
    assert names[0] == "long" and len(names) == len(set(names))


def test_what_yaml_allows_but_a_workflow_cannot_mean_is_one_line_and_creates_nothing(hb):
    """A step given twice (PyYAML kept the second silently), an alias inside itself (it recursed), a
    name that cannot be one; and `status` of a name that cannot be one is one line, not 'no route'."""
    before = hb.jobs()
    files = {
        "twice.yaml": ("name: twice\njobs:\n  a: {command: ['true']}\n  a: {command: ['false']}\n",
                       "twice.yaml:4: jobs.a: given twice in one mapping (first on line 3): keep one"),
        "itself.yaml": ("name: itself\njobs: &j\n  a: {command: ['true'], env: *j}\n",
                        "itself.yaml:2: jobs.a.env: an alias of a value that contains it"),
        "named.yaml": ("name: ../up\njobs:\n  a: {command: ['true']}\n",
                       "named.yaml:1: name: workflow name '../up': use letters, digits, _, . and - (at most 64)"),
    }
    for name, (text, line) in files.items():
        (hb.workdir / name).write_text(text)
        proc = hb.run("hyper", "workflow", "submit", name, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith(f"hyper: {line}"), proc.stderr
        assert len(proc.stderr.splitlines()) == 1
    (hb.workdir / "fat.sh").write_text("#!/bin/sh\n# " + "x" * 250_000 + "\ntrue\n")
    (hb.workdir / "fat.yaml").write_text("name: fat\njobs:\n" + "".join(f"  s{i}: {{script: fat.sh}}\n" for i in range(45)))
    proc = hb.run("hyper", "workflow", "submit", "fat.yaml", check=False)  # was: cannot reach (Broken pipe)
    assert (proc.returncode, proc.stderr) == (2, "hyper: the request body is 10.7 MiB, over the API's limit of 10 MiB\n")
    assert hb.jobs() == before
    for name in ("", "../up", "a\x01b"):
        proc = hb.run("hyper", "workflow", "status", name, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("hyper: workflow name '"), proc.stderr
        assert len(proc.stderr.splitlines()) == 1

"""qstat, run as the installed console script against the fake API."""

from __future__ import annotations

import json
import time

import pytest

from tests.cli.conftest import USER


@pytest.fixture
def jobs(api):
    """A waiting, a held, a queued, a running and a finished job, plus a running array of 5 tasks."""
    now = time.time()
    made = {
        "waiting": api.add(name="after", state="WAITING", depend="afterok:01JD4V8ZKAAAA"),
        "held": api.add(name="held", state="HELD"),
        "queued": api.add(name="queued", state="QUEUED", queue="fast"),
        "running": api.add(
            name="running",
            state="RUNNING",
            started_at=now - 65,
            run_count=1,
            exec_host="us-west-2/w-1234",
            walltime=3600,
            env={"A": "1", "B": "2"},
            resources={"mem": "1gb"},
        ),
        "done": api.add(
            name="done",
            state="FAILED",
            started_at=now - 100,
            finished_at=now - 50,
            cpu_seconds=3725.4,
            exit_status=3,
            reason="exit status 3",
        ),
        "array": api.add(
            name="sweep",
            state="RUNNING",
            started_at=now - 10,
            array={
                "spec": "1-5",
                "total": 5,
                "pending": 2,
                "running": 1,
                "succeeded": 1,
                "failed": 0,
                "cancelled": 1,
                "failed_tasks": {},
            },
        ),
    }
    arr = made["array"]["id"]
    api.tasks[arr] = [
        {"index": 1, "state": "SUCCEEDED", "exit_status": 0, "attempt": 1},
        {"index": 2, "state": "RUNNING", "exit_status": None, "attempt": 1},
        {"index": 3, "state": "CANCELLED", "exit_status": None, "attempt": 1},
        {"index": 4, "state": "QUEUED", "exit_status": None, "attempt": 1},
        {"index": 5, "state": "QUEUED", "exit_status": None, "attempt": 1},
    ]
    return made


def _rows(stdout):
    lines = stdout.splitlines()
    assert lines[0].split() == ["Job", "id", "Name", "User", "Time", "Use", "S", "Queue"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    return {line.split()[0]: line.split() for line in lines[2:]}


def test_default_table_shows_active_jobs_with_letters(cli, api, jobs):
    result = cli("qstat")
    assert result.returncode == 0, result.stderr
    rows = _rows(result.stdout)
    ids = {k: v["id"] for k, v in jobs.items()}
    assert list(rows) == [ids["waiting"], ids["held"], ids["queued"], ids["running"], ids["array"] + "[]"]
    assert rows[ids["waiting"]] == [ids["waiting"], "after", USER, "0", "W", "default"]
    assert rows[ids["held"]][4] == "H"
    assert rows[ids["queued"]][4:] == ["Q", "fast"]
    assert rows[ids["running"]][3:5] == ["00:01:05", "R"]
    assert rows[ids["array"] + "[]"][4] == "R"
    # only active states asked for, and every page followed (the fake pages by 2)
    lists = api.calls("GET", "/jobs")
    assert all(r["path"] == "/jobs" for r in lists)
    assert lists[0]["query"] == {"state": "WAITING,HELD,QUEUED,RUNNING"}
    assert [r["query"].get("next") for r in lists] == [None, "2", "4"]


def test_x_includes_finished_jobs(cli, api, jobs):
    result = cli("qstat", "-x")
    assert result.returncode == 0
    rows = _rows(result.stdout)
    assert rows[jobs["done"]["id"]][3:5] == ["01:02:05", "F"]  # cpu_seconds wins over elapsed time
    assert "state" not in api.calls("GET", "/jobs")[0]["query"]


def test_no_jobs_prints_nothing(inproc, api):
    assert inproc("qstat") == (0, "", "")


def test_u_asks_for_another_owner(inproc, api, jobs):
    api.add(name="bobs", owner="bob", state="QUEUED")
    code, out, _ = inproc("qstat", "-u", "bob")
    assert code == 0
    assert api.calls("GET", "/jobs")[0]["query"]["owner"] == "bob"
    assert [row[1] for row in _rows(out).values()] == ["bobs"]


def test_explicit_ids_show_finished_jobs_and_report_unknown(cli, api, jobs):
    result = cli("qstat", jobs["done"]["id"], "01JD4V8ZKZZZZ", jobs["queued"]["id"])
    assert result.returncode == 1
    assert result.stderr == "qstat: Unknown Job Id 01JD4V8ZKZZZZ\n"
    assert list(_rows(result.stdout)) == [jobs["done"]["id"], jobs["queued"]["id"]]


def test_full_listing(cli, api, jobs):
    result = cli("qstat", "-f", jobs["running"]["id"], jobs["done"]["id"], jobs["array"]["id"])
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.split("\n\n")
    running = blocks[0].splitlines()
    assert running[0] == f"Job Id: {jobs['running']['id']}"
    attrs = dict(line.strip().split(" = ", 1) for line in running[1:])
    assert attrs["Job_Name"] == "running"
    assert attrs["Job_Owner"] == USER
    assert attrs["job_state"] == "R"
    assert attrs["queue"] == "default"
    assert attrs["exec_host"] == "us-west-2/w-1234"
    assert attrs["run_count"] == "1"
    assert attrs["Resource_List.walltime"] == "01:00:00"
    assert attrs["Resource_List.mem"] == "1gb"
    assert attrs["Variable_List"] == "A=1,B=2"
    assert time.strptime(attrs["ctime"], "%a %b %d %H:%M:%S %Y")
    assert "stime" in attrs and "Exit_status" not in attrs
    done = dict(line.strip().split(" = ", 1) for line in blocks[1].splitlines()[1:])
    assert (done["job_state"], done["hyper_state"], done["Exit_status"]) == ("F", "FAILED", "3")
    assert done["comment"] == "exit status 3"
    assert "obittime" in done
    array = dict(line.strip().split(" = ", 1) for line in blocks[2].splitlines()[1:])
    assert array["array_indices_submitted"] == "1-5"
    assert array["array_state_count"] == "Queued:2 Running:1 Exiting:0 Expired:2"
    assert all(line.startswith("    ") for block in blocks if block for line in block.splitlines()[1:])


def test_t_expands_arrays_into_task_rows(cli, api, jobs):
    result = cli("qstat", "-t")
    assert result.returncode == 0, result.stderr
    rows = _rows(result.stdout)
    arr = jobs["array"]["id"]
    tasks = {k: v[4] for k, v in rows.items() if k.startswith(arr + "[") and k != arr + "[]"}
    assert tasks == {f"{arr}[1]": "F", f"{arr}[2]": "R", f"{arr}[3]": "X", f"{arr}[4]": "Q", f"{arr}[5]": "Q"}
    keys = list(rows)
    assert keys.index(arr + "[]") + 1 == keys.index(f"{arr}[1]")  # tasks follow their array


def test_one_task_by_id(inproc, api, jobs):
    arr = jobs["array"]["id"]
    code, out, err = inproc("qstat", f"{arr}[3]")
    assert code == 0, err
    assert list(_rows(out)) == [f"{arr}[3]"]
    assert _rows(out)[f"{arr}[3]"][4] == "X"
    task_calls = api.calls("GET", f"/jobs/{arr}/tasks")
    assert task_calls[0]["query"] == {"offset": "2", "limit": "1"}  # straight to the task's position
    assert inproc("qstat", f"{arr}[9]") == (1, "", f"qstat: Unknown Job Id {arr}[9]\n")
    code, _, err = inproc("qstat", f"{jobs['queued']['id']}[1]")
    assert code == 1 and "is not an array job" in err


def test_json(cli, api, jobs):
    result = cli("qstat", "--json", "-x")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert [job["id"] for job in data] == sorted(job["id"] for job in jobs.values())
    assert {job["state"] for job in data} >= {"FAILED", "RUNNING"}
    with_tasks = json.loads(cli("qstat", "--json", "-t", jobs["array"]["id"]).stdout)
    assert [t["index"] for t in with_tasks[0]["tasks"]] == [1, 2, 3, 4, 5]


def test_malformed_id_is_a_usage_error(inproc, api):
    code, _, err = inproc("qstat", "ABC[x]")
    assert code == 2
    assert err.startswith("qstat: illegally formed job identifier")

"""qdel, qhold, qrls and qlog, run as the installed console scripts against the fake API."""

from __future__ import annotations


def test_qdel_processes_every_id_and_reports_unknown(cli, api):
    a, c = api.add(state="QUEUED"), api.add(state="RUNNING")
    result = cli("qdel", a["id"], "01JD4V8ZKZZZZ", c["id"])
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == "qdel: Unknown Job Id 01JD4V8ZKZZZZ\n"
    assert api.jobs[a["id"]]["state"] == api.jobs[c["id"]]["state"] == "CANCELLED"
    assert [r["path"] for r in api.calls("DELETE")] == [f"/jobs/{a['id']}", "/jobs/01JD4V8ZKZZZZ", f"/jobs/{c['id']}"]


def test_qdel_success_prints_nothing(inproc, api):
    a = api.add()
    assert inproc("qdel", a["id"]) == (0, "", "")


def test_qdel_array_and_task(inproc, api):
    arr = api.add(array={"spec": "1-3", "total": 3}, state="QUEUED")
    assert inproc("qdel", f"{arr['id']}[2]")[0] == 0
    assert inproc("qdel", f"{arr['id']}[]")[0] == 0
    first, second = api.calls("DELETE")
    assert first["path"] == second["path"] == f"/jobs/{arr['id']}"
    assert first["query"] == {"index": "2"}
    assert second["query"] == {}


def test_qdel_of_a_finished_job_says_so_in_pbs_words(inproc, api):
    done = api.add(state="SUCCEEDED")
    assert inproc("qdel", done["id"]) == (1, "", f"qdel: Job has finished {done['id']}\n")


def test_qdel_needs_an_id(cli, api):
    result = cli("qdel")
    assert result.returncode == 2
    assert result.stderr.startswith("qdel: Missing argument")


def test_qhold_and_qrls(inproc, api):
    job = api.add(state="QUEUED")
    assert inproc("qhold", job["id"]) == (0, "", "")
    assert api.jobs[job["id"]]["state"] == "HELD"
    assert inproc("qrls", job["id"]) == (0, "", "")
    assert api.jobs[job["id"]]["state"] == "QUEUED"
    code, _, err = inproc("qrls", job["id"], "01JD4V8ZKZZZZ")
    assert code == 1
    assert err == f"qrls: {job['id']}: job {job['id']} is not held\nqrls: Unknown Job Id 01JD4V8ZKZZZZ\n"
    assert [r["path"] for r in api.calls("POST")] == [
        f"/jobs/{job['id']}/hold",
        f"/jobs/{job['id']}/release",
        f"/jobs/{job['id']}/release",
        "/jobs/01JD4V8ZKZZZZ/release",
    ]


def test_qhold_refuses_a_single_task(inproc, api):
    arr = api.add(array={"spec": "1-3", "total": 3})
    code, _, err = inproc("qhold", f"{arr['id']}[2]")
    assert code == 2
    assert "whole array" in err
    assert api.calls("POST") == []


def test_qlog_prints_exactly_what_is_stored(cli, api):
    job = api.add(state="SUCCEEDED")
    api.logs[(job["id"], "stdout", None)] = [("line 1\nhé ", False), ("no newline", True)]
    result = cli("qlog", job["id"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "line 1\nhé no newline"
    offsets = [r["query"]["offset"] for r in api.calls("GET", f"/jobs/{job['id']}/log")]
    assert offsets == ["0", str(len("line 1\nhé "))]


def test_qlog_without_follow_stops_when_nothing_new(inproc, api):
    job = api.add(state="RUNNING")
    api.logs[(job["id"], "stdout", None)] = [("so far\n", False)]
    assert inproc("qlog", job["id"]) == (0, "so far\n", "")


def test_qlog_follow_until_final(cli, api):
    job = api.add(state="RUNNING")
    api.logs[(job["id"], "stdout", None)] = [("a\n", False), ("", False), ("b", False), ("", False), ("c\n", True)]
    result = cli("qlog", "-f", job["id"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "a\nbc\n"
    offsets = [r["query"]["offset"] for r in api.calls("GET", f"/jobs/{job['id']}/log")]
    assert offsets == ["0", "2", "2", "3", "3"]


def test_qlog_stderr_and_task(inproc, api):
    arr = api.add(array={"spec": "1-3", "total": 3}, state="SUCCEEDED")
    api.logs[(arr["id"], "stderr", 2)] = [("oops\n", True)]
    assert inproc("qlog", "-e", f"{arr['id']}[2]") == (0, "oops\n", "")
    assert api.calls("GET")[0]["query"] == {"stream": "stderr", "offset": "0", "index": "2"}


def test_qlog_unknown_job(inproc, api):
    assert inproc("qlog", "01JD4V8ZKZZZZ") == (1, "", "qlog: Unknown Job Id 01JD4V8ZKZZZZ\n")

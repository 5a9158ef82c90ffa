"""qdel, qhold, qrls and qlog, run as the installed console scripts against the fake API."""

from __future__ import annotations

from tests.cli.conftest import log_chunk


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
    assert offsets == ["0", str(len("line 1\nhé ".encode()))]  # byte offsets


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


def test_qlog_writes_the_bytes_as_stored_even_where_they_are_not_text(cli, api):
    """Issue 9, item 8: non-UTF-8 bytes were dropped or replaced, and the offsets drifted."""
    job = api.add(state="SUCCEEDED")
    first, second = bytes(range(256)) + "é".encode()[:1], "é".encode()[1:] + b"\xff\xfe end\n"
    api.logs[(job["id"], "stdout", None)] = [(first, False), (second, True)]
    result = cli("qlog", job["id"], binary=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == first + second
    offsets = [r["query"]["offset"] for r in api.calls("GET", f"/jobs/{job['id']}/log")]
    assert offsets == ["0", str(len(first))]


def test_qlog_follow_says_once_that_a_held_job_waits(inproc, api):
    """Issue 9, item 11: `qlog -f` on a held job waited without a word."""
    job = api.add(state="HELD")
    polls = {"n": 0}

    def answer(query, body):
        polls["n"] += 1
        if polls["n"] == 4:  # released by someone else, then it runs and prints
            api.jobs[job["id"]]["state"] = "SUCCEEDED"
            return 200, log_chunk(b"done\n", int(query["offset"]), True, "SUCCEEDED")
        return 200, log_chunk(b"", int(query["offset"]), False, "HELD")

    api.override("GET", f"/jobs/{job['id']}/log", answer)
    code, out, err = inproc("qlog", "-f", job["id"])
    assert (code, out) == (0, "done\n")
    assert err == f"qlog: {job['id']} is held: it starts once released with qrls; waiting for its output (Ctrl-C stops waiting)\n"

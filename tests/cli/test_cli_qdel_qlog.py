"""qdel, qhold, qrls against the real API (no workers); qlog against the fake one."""

from __future__ import annotations

import pytest

from hyperbatch.core import tasks

from tests.cli.conftest import SERVER, log_chunk


def test_qdel_processes_every_id_and_reports_unknown_as_typed(pbs):
    server = pbs.server
    server.submit(), server.submit()
    server.start()  # 2 stays queued, 1 runs
    code, out, err = pbs("qdel", "1", "100000", f"2.{SERVER}")
    assert (code, out, err) == (153, "", "qdel: Unknown Job Id 100000\n")  # qdel echoes the id as given
    assert server.job("2")["state"] == "CANCELLED"
    assert server.job("1")["cancel_requested"]  # a running job stops at its worker's next heartbeat


def test_qdel_success_prints_nothing_and_finished_jobs_answer_like_pbs(pbs):
    server = pbs.server
    server.submit()
    assert pbs("qdel", "1") == (0, "", "")
    assert pbs("qdel", "1") == (35, "", "qdel: Job has finished 1\n")
    assert pbs("qdel", "1x") == (1, "", "qdel: illegally formed job identifier: 1x\n")


def test_qdel_array_and_task(pbs):
    server = pbs.server
    server.submit(array="1-3")
    assert pbs("qdel", f"1[2].{SERVER}") == (0, "", "")
    assert tasks.by_index(server.job("1"), tasks.CANCELLED_MAP) == {"2": 1}
    assert pbs("qdel", "1[]") == (0, "", "")
    assert server.job("1")["state"] == "CANCELLED"


@pytest.mark.parametrize("args, first", [
    ([], None), (["-W", "nope", "1"], "qdel: illegal -W value"), (["-Z", "1"], "qdel: invalid option -- 'Z'"),
])
def test_qdel_usage(pbs, args, first):
    code, _, err = pbs("qdel", *args)
    assert code == 2 and err.endswith("usage:\n\tqdel [-W force|suppress_email=X] [-x] job_identifier...\n"
                                      "\tqdel --version\n")
    if first:
        assert err.splitlines()[0] == first


def test_qdel_force_is_accepted(pbs):
    pbs.server.submit()
    assert pbs("qdel", "-W", "force", "1") == (0, "", "")


def test_qhold_and_qrls(pbs):
    server = pbs.server
    server.submit()
    assert pbs("qhold", "1") == (0, "", "")
    assert server.job("1")["state"] == "HELD"
    assert pbs("qstat", "1")[1].splitlines()[2].split()[4] == "H"
    assert pbs("qrls", "-h", "u", f"1.{SERVER}") == (0, "", "")
    assert server.job("1")["state"] == "QUEUED"
    code, _, err = pbs("qrls", "1", "99")
    assert code == 153
    assert err == f"qrls: Request invalid for state of job 1.{SERVER}\nqrls: Unknown Job Id 99.{SERVER}\n"
    assert pbs("qhold", "-h", "x", "1")[0] == 2


def test_qhold_of_a_running_job_or_one_task_is_refused(pbs):
    server = pbs.server
    server.submit(array="1-3")
    server.submit()
    code, _, err = pbs("qhold", "1[2]")
    assert code == 156 and err.startswith(f"qhold: Invalid request 1[2].{SERVER}")
    server.start()
    assert pbs("qhold", "1") == (168, "", f"qhold: Request invalid for state of job 1.{SERVER}\n")


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
    seq = arr["id"].split(".")[0]
    assert inproc("qlog", "-e", f"{seq}[2]") == (0, "oops\n", "")
    assert inproc("qlog", "-e", f"{seq}[2].{SERVER}") == (0, "", "")  # the same task: its one chunk was read
    assert api.calls("GET")[0]["query"] == {"stream": "stderr", "offset": "0", "index": "2"}


def test_qlog_unknown_job(inproc, api):
    assert inproc("qlog", "99") == (153, "", f"qlog: Unknown Job Id 99.{SERVER}\n")


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

"""qstat against the real API (no workers): what PBS users and client libraries see.

The formats themselves are checked byte for byte in tests/unit/test_qstat_formats.py.
"""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import SERVER

USAGE_START = "usage: \nqstat [-f] [-J] [-p] [-t] [-x] [-E] [-F format | -w] [-D delim]"


@pytest.fixture
def jobs(pbs):
    """1 finished, 2 running, 3 queued, 4 held, 5 waiting on 2, 6 an array with 2 of 4 tasks done."""
    server = pbs.server
    done = server.submit(name="done")
    server.run_next(status=0)
    running = server.submit(name="running", walltime="01:00:00")
    run = server.start()
    queued = server.submit(name="queued")
    held = server.submit(name="held", hold=True)
    waiting = server.submit(name="waiting", depend=f"afterok:{running['id']}")
    array = server.submit(name="sweep", array="1-4")
    server.backend.queue.ack(server.backend.queue.claim("batch", "w-other", 1, 30))  # queued's item, out of the way
    return {"done": done, "running": running, "queued": queued, "held": held, "waiting": waiting, "array": array,
            "run": run}


def rows(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    assert lines[0] == "Job id            Name             User              Time Use S Queue"
    return {line.split()[0]: line.split() for line in lines[2:]}


def test_default_lists_unfinished_jobs_oldest_first_with_pbs_letters(pbs, jobs):
    code, out, err = pbs("qstat")
    assert (code, err) == (0, "")
    listed = rows(out)
    assert list(listed) == [f"{n}.{SERVER}" for n in ("2", "3", "4", "5")] + [f"6[].{SERVER}"]
    assert {k: v[4] for k, v in listed.items()} == {
        f"2.{SERVER}": "R", f"3.{SERVER}": "Q", f"4.{SERVER}": "H", f"5.{SERVER}": "H", f"6[].{SERVER}": "Q"}
    assert listed[f"2.{SERVER}"] == [f"2.{SERVER}", "running", "alice", "00:00:00", "R", "batch"]


def test_x_adds_finished_jobs_as_f(pbs, jobs):
    code, out, _ = pbs("qstat", "-x")
    assert code == 0 and rows(out)[f"1.{SERVER}"][4] == "F"


def test_nothing_to_show_prints_nothing(pbs):
    assert pbs("qstat") == (0, "", "")
    assert pbs("qstat", "-f") == (0, "", "")


def test_ids_in_every_form(pbs, jobs):
    for text in ("3", f"3.{SERVER}", f"3.{SERVER}.example.com", f"3.{SERVER.upper()}"):
        code, out, err = pbs("qstat", text)
        assert (code, err) == (0, ""), text
        assert list(rows(out)) == [f"3.{SERVER}"]
    for text in ("6", "6[]", f"6[].{SERVER}"):
        assert list(rows(pbs("qstat", text)[1])) == [f"6[].{SERVER}"]
    code, out, _ = pbs("qstat", "-f", f"6[3].{SERVER}")
    assert code == 0 and out.startswith(f"Job Id: 6[3].{SERVER}\n") and "    job_state = Q\n" in out


def test_unknown_and_finished_ids_answer_like_pbs(pbs, jobs):
    assert pbs("qstat", "99") == (153, "", f"qstat: Unknown Job Id 99.{SERVER}\n")
    assert pbs("qstat", "99.elsewhere") == (153, "", "qstat: Unknown Job Id 99.elsewhere\n")
    assert pbs("qstat", "1") == (
        35, "", f"qstat: 1.{SERVER} Job has finished, use -x or -H to obtain historical job information\n")
    assert pbs("qstat", "12a") == (1, "", "qstat: illegally formed job identifier: 12a\n")
    # each operand on its own; the header goes with the first one's reply only; the last failure sets the exit
    code, out, err = pbs("qstat", "99", "3", "1")
    assert code == 35 and out.splitlines()[0].startswith(f"3.{SERVER}")
    assert err.splitlines() == [f"qstat: Unknown Job Id 99.{SERVER}",
                                f"qstat: 1.{SERVER} Job has finished, use -x or -H to obtain historical job information"]
    code, out, _ = pbs("qstat", "-x", "1")
    assert code == 0 and rows(out)[f"1.{SERVER}"][4] == "F"


def test_full_json_of_finished_jobs_is_pbs_structure(pbs, jobs):
    code, out, err = pbs("qstat", "-f", "-F", "json", "-x", "1", "2", "99")
    assert code == 153 and err == f"qstat: Unknown Job Id 99.{SERVER}\n"
    doc = json.loads(out)
    assert set(doc) == {"timestamp", "pbs_version", "pbs_server", "Jobs"} and doc["pbs_server"] == SERVER
    done, running = doc["Jobs"][f"1.{SERVER}"], doc["Jobs"][f"2.{SERVER}"]
    assert (done["job_state"], done["Exit_status"], done["run_count"]) == ("F", 0, 1)
    assert done["Job_Owner"] == f"alice@{SERVER}" and done["queue"] == "batch"
    assert isinstance(done["resources_used"], dict) and done["Resource_List"]["ncpus"] == 1
    assert running["job_state"] == "R" and "Exit_status" not in running
    assert running["Resource_List"]["walltime"] == "01:00:00"
    # options cluster and take attached values; options may follow the operands (glibc getopt)
    assert json.loads(pbs("qstat", "-fxFjson", "1")[1])["Jobs"][f"1.{SERVER}"]["job_state"] == "F"
    assert json.loads(pbs("qstat", "1", "-x", "-f", "-F", "JSON")[1])["Jobs"][f"1.{SERVER}"]["Exit_status"] == 0
    # nothing found: the prologue alone, without "Jobs"
    code, out, _ = pbs("qstat", "-f", "-F", "json", "1")
    assert code == 35 and set(json.loads(out)) == {"timestamp", "pbs_version", "pbs_server"}


def test_full_text_and_dsv(pbs, jobs):
    code, out, _ = pbs("qstat", "-f", "2")
    assert code == 0 and out.startswith(f"Job Id: 2.{SERVER}\n    Job_Name = running\n") and out.endswith("\n\n")
    assert "    exec_host = w-test/0\n" in out and "    comment" not in out
    code, out, _ = pbs("qstat", "-f", "-F", "dsv", "-D", ",", "2")
    assert code == 0 and out.startswith(f"Job Id: 2.{SERVER},Job_Name=running,") and out.count("\n") == 1


def test_t_and_j_show_array_tasks(pbs, jobs):
    server = pbs.server
    server.finish(server.start(max_tasks=2), status=0)
    code, out, _ = pbs("qstat", "-t", "6[]")
    assert code == 0
    assert {k: v[4] for k, v in rows(out).items()} == {
        f"6[].{SERVER}": "B", f"6[1].{SERVER}": "X", f"6[2].{SERVER}": "X", f"6[3].{SERVER}": "Q", f"6[4].{SERVER}": "Q"}
    assert list(rows(pbs("qstat", "-J")[1])) == [f"6[].{SERVER}"]
    assert list(rows(pbs("qstat", "-J", "-t")[1])) == [f"6[{i}].{SERVER}" for i in range(1, 5)]


def test_alternate_formats(pbs, jobs):
    code, out, _ = pbs("qstat", "-a")
    lines = out.splitlines()
    assert code == 0 and lines[:2] == ["", f"{SERVER}: "]
    assert lines[3].startswith("Job ID          Username Queue    Jobname    SessID NDS TSK Memory Time  S Time")
    assert [line.split()[0] for line in lines[5:]] == [f"{n}.{SERVER}" for n in ("2", "3", "4", "5")] + [f"6[].{SERVER}"]
    code, out, _ = pbs("qstat", "-answ1", "2")
    assert code == 0 and out.splitlines()[-2].endswith(" w-test/0") and out.splitlines()[-1] == "    -- "
    code, out, _ = pbs("qstat", "-s", "5")
    assert out.splitlines()[-1] == f"   waiting for afterok:2.{SERVER}"
    code, out, _ = pbs("qstat", "-H")
    assert [line.split()[0] for line in out.splitlines()[5:]] == [f"1.{SERVER}"]
    assert [line.split()[0] for line in pbs("qstat", "-r")[1].splitlines()[5:]] == [f"2.{SERVER}"]


def test_u_lists_one_user(pbs, jobs):
    from hyperbatch.services.scheduler import Caller

    pbs.server.scheduler.submit([{"command": ["true"], "name": "bobs"}], Caller("bob"))
    code, out, _ = pbs("qstat", "-u", "bob")
    assert code == 0 and [line.split()[3] for line in out.splitlines()[5:]] == ["bobs"]
    assert len(pbs("qstat", "-u", "alice,bob")[1].splitlines()[5:]) == 6


def test_queue_operands(pbs, jobs):
    assert list(rows(pbs("qstat", "batch")[1]))[0] == f"2.{SERVER}"
    assert pbs("qstat", "nope") == (170, "", "qstat: Unknown queue nope\n")


def test_queues_and_server(pbs, jobs):
    code, out, _ = pbs("qstat", "-Q")
    assert code == 0 and out.splitlines()[2].split() == ["batch", "0", "5", "yes", "yes", "2", "1", "2", "0", "0", "0", "Exe*"]
    code, out, _ = pbs("qstat", "-Qf", "batch")
    assert code == 0 and out.startswith("Queue: batch\n    queue_type = Execution\n    total_jobs = 5\n")
    assert json.loads(pbs("qstat", "-Q", "-f", "-F", "json")[1])["Queue"]["batch"]["total_jobs"] == 5
    assert pbs("qstat", "-Q", "nope")[0] == 170
    code, out, _ = pbs("qstat", "-B")
    assert code == 0 and out.splitlines()[2].split()[:3] == [SERVER, "0", "5"]
    assert json.loads(pbs("qstat", "-Bf", "-F", "json")[1])["Server"][SERVER]["server_state"] == "Active"
    code, out, _ = pbs("qstat", "-q")
    assert code == 0 and out.splitlines()[1] == f"server: {SERVER}"


@pytest.mark.parametrize("args, first_line", [
    (["-Z"], "qstat: invalid option -- 'Z'"),
    (["-u"], "qstat: option requires an argument -- 'u'"),
    (["-F", "json"], "qstat: conflicting options."),
    (["-a", "-r"], "qstat: conflicting options."),
    (["-f", "-q"], "qstat: conflicting options."),
    (["-1"], "qstat: conflicting options."),
    (["-Q", "-B"], "qstat: conflicting options."),
    (["-w", "-f", "-F", "json"], "qstat: option w cannot be used with -F"),
    (["-f", "-F", "xml"], None),
])
def test_bad_usage_exits_2_with_pbs_usage(pbs, args, first_line):
    code, out, err = pbs("qstat", *args)
    assert code == 2 and out == ""
    lines = err.splitlines()
    if first_line:
        assert lines[0] == first_line
    assert USAGE_START in err and err.endswith("qstat --version\n")


def test_version(pbs):
    assert pbs("qstat", "--version") == (0, "pbs_version = 23.06.06\n", "")


def test_json_extension_lists_api_objects(pbs, jobs):
    data = json.loads(pbs("qstat", "--json", "-x")[1])
    assert [j["id"] for j in data] == [f"{n}.{SERVER}" for n in range(1, 6)] + [f"6[].{SERVER}"]
    assert [t["index"] for t in json.loads(pbs("qstat", "--json", "-t", "6")[1])[0]["tasks"]] == [1, 2, 3, 4]

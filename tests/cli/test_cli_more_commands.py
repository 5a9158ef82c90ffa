"""qselect, qalter, qrerun, qsig, qmove, tracejob and pbsnodes against the real API (no workers)."""

from __future__ import annotations

import json
import re

import pytest

from tests.cli.conftest import SERVER
from hyperbatch.core import exits, history
from hyperbatch.core.model import Change, Expect


def ids(out: str) -> list[str]:
    return out.split()


# ---- qselect ----------------------------------------------------------------------------------

@pytest.fixture
def mix(pbs):
    """1 finished, 2 running (walltime 1 h), 3 queued (priority 5, ncpus 4), 4 held, 5 array of 3."""
    server = pbs.server
    server.submit(name="done")
    server.run_next()
    server.submit(name="long", walltime="01:00:00")
    server.start()
    server.submit(name="wide", priority=5, resources={"ncpus": "4", "mem": "2gb"})
    server.submit(name="held", hold=True)
    server.submit(name="sweep", array="1-3")
    return server


def test_qselect_prints_full_ids_of_unfinished_jobs(pbs, mix):
    assert pbs("qselect") == (0, "".join(f"{n}.{SERVER}\n" for n in (2, 3, 4)) + f"5[].{SERVER}\n", "")
    assert ids(pbs("qselect", "-x")[1])[0] == f"1.{SERVER}"
    assert ids(pbs("qselect", "-H")[1]) == [f"1.{SERVER}"]


@pytest.mark.parametrize("args, expected", [
    (["-s", "R"], [2]), (["-s", "QH"], [3, 4, "5[]"]), (["-s", ".ne.Q"], [2, 4]), (["-x", "-s", "F"], [1]),
    (["-N", "wide"], [3]), (["-p", ".gt.0"], [3]), (["-p", "5"], [3]), (["-p", ".lt.5"], [2, 4, "5[]"]),
    (["-l", "ncpus.ge.4"], [3]), (["-l", "mem.gt.1gb,ncpus.eq.4"], [3]), (["-l", "walltime.gt.00:30:00"], [2]),
    (["-h", "u"], [4]), (["-h", "n"], [2, 3, "5[]"]), (["-J"], ["5[]"]), (["-J", "-T"], ["5[1]", "5[2]", "5[3]"]),
    (["-q", "batch"], [2, 3, 4, "5[]"]), (["-u", "alice"], [2, 3, 4, "5[]"]), (["-u", "bob"], []),
    (["-r", "y"], [2, 3, 4, "5[]"]),
])
def test_qselect_filters(pbs, mix, args, expected):
    code, out, err = pbs("qselect", *args)
    assert (code, err) == (0, "")
    assert ids(out) == [f"{n}.{SERVER}" for n in expected]


@pytest.mark.parametrize("args, first", [
    (["-l", "ncpus=4"], "qselect: illegal -l value"), (["-s", "Z"], "qselect: illegal -s value"),
    (["-r", "maybe"], "qselect: illegal -r value"), (["-t", "z0101"], "qselect: illegal -t value"),
    (["extra"], None),
])
def test_qselect_bad_usage(pbs, mix, args, first):
    code, out, err = pbs("qselect", *args)
    assert code == 2 and out == "" and err.rstrip().endswith("qselect --version")
    if first:
        assert err.splitlines()[0] == first
    if args[0] == "-l":
        assert err.splitlines()[1] == "resource_list: ncpus=4"


def test_qselect_unknown_queue(pbs, mix):
    assert pbs("qselect", "-q", "nope") == (170, "", "qselect: Unknown queue\n")


def test_qselect_times(pbs, mix):
    assert ids(pbs("qselect", "-t", "c.gt.01010000")[1])[:1] == [f"2.{SERVER}"]  # created after Jan 1st, 00:00
    assert pbs("qselect", "-t", "c.lt.197001010000")[1] == ""


# ---- qalter -----------------------------------------------------------------------------------

def test_qalter_changes_a_queued_job(pbs, mix):
    assert pbs("qalter", "-N", "renamed", "-p", "10", "-l", "walltime=00:05:00,mem=3gb", "3") == (0, "", "")
    doc = mix.job("3")
    assert (doc["name"], doc["priority"], doc["walltime"], doc["resources"]["mem"]) == ("renamed", 10, 300, "3gb")
    assert doc["resources"]["ncpus"] == 4  # other resources kept
    assert mix.backend.queue.claim("batch", "w", 1, 30).job_id == "3"  # the waiting item moved up with it
    assert "Job attributes altered" in history.render(mix.job("3"))[-1][2]


def test_qalter_hold_and_depend(pbs, mix):
    assert pbs("qalter", "-h", "u", "3") == (0, "", "")
    assert mix.job("3")["state"] == "HELD"
    assert pbs("qalter", "-h", "n", "3") == (0, "", "")
    assert mix.job("3")["state"] == "QUEUED"
    assert pbs("qalter", "-W", f"depend=afterok:2.{SERVER}", "3") == (0, "", "")
    doc = mix.job("3")
    assert (doc["state"], doc["depend"]) == ("WAITING", "afterok:2")
    assert pbs("qstat", "3")[1].splitlines()[2].split()[4] == "H"
    for item in iter(lambda: mix.backend.queue.claim("batch", "w-x", 1, 30), None):  # its old item is stale
        if item.job_id == "3":
            assert mix.worker.start(item) is None
    assert mix.job("3")["state"] == "WAITING"


def test_qalter_of_running_and_finished_jobs_answers_like_pbs(pbs, mix):
    assert pbs("qalter", "-N", "x", "2") == (167, "", f"qalter: Cannot modify attribute while job running  2.{SERVER}\n")
    assert pbs("qalter", "-N", "x", "1") == (35, "", "qalter: Job has finished\n")
    assert pbs("qalter", "-N", "x", "99") == (153, "", f"qalter: Unknown Job Id 99.{SERVER}\n")


@pytest.mark.parametrize("args, line", [
    (["-p", "5000", "3"], "qalter: illegal -p value"), (["-N", "bad name", "3"], "qalter: illegal -N value"),
    (["-h", "x", "3"], "qalter: illegal -h value"), (["-l", "walltime", "3"], "qalter: illegal -l value"),
])
def test_qalter_bad_values(pbs, mix, args, line):
    code, _, err = pbs("qalter", *args)
    assert code == 2 and err.splitlines()[0] == line and "usage: qalter" in err


def test_qalter_refuses_what_it_cannot_honour_in_one_line(pbs, mix):
    code, _, err = pbs("qalter", "-W", "group_list=x", "3")
    assert code == 2 and err.startswith("qalter: -W group_list: not supported: ") and err.count("\n") == 1
    code, _, err = pbs("qalter", "-u", "bob", "3")
    assert code == 2 and err == "qalter: -u: jobs run as the submitting user; -u cannot change that\n"
    code, _, err = pbs("qalter", "-W", "block=true", "3")
    assert code == 2 and err.startswith("qalter: -W block: cannot be altered")
    assert mix.job("3")["state"] == "QUEUED"  # nothing changed


def test_qalter_changes_the_pbs_attributes_qsub_sets(pbs, mix):
    args = ["-A", "acct", "-P", "proj", "-o", "out.log", "-e", "/tmp/err.log", "-j", "oe", "-k", "oe", "-r", "n",
            "-m", "abe", "-M", "me@example.com", "-S", "/bin/zsh", "-c", "n", "-R", "e", "-W", "umask=022", "3"]
    assert pbs("qalter", *args) == (0, "", "")
    doc = mix.job("3")
    assert {k: doc[k] for k in ("account", "project", "output_path", "error_path", "join", "keep", "rerunnable",
                                "mail_points", "mail_users", "shell", "checkpoint", "remove_files", "umask")} == {
        "account": "acct", "project": "proj", "output_path": doc["output_path"], "error_path": "/tmp/err.log",
        "join": "oe", "keep": "oe", "rerunnable": False, "mail_points": "abe", "mail_users": "me@example.com",
        "shell": "/bin/zsh", "checkpoint": "n", "remove_files": "e", "umask": "0022"}
    assert doc["output_path"].startswith("/") and doc["output_path"].endswith("/out.log")  # the current directory's
    assert "Account_Name" in history.render(doc)[-1][2]


def test_qalter_a_defers_a_queued_job_until_its_time_and_back(pbs, mix):
    import time as clock

    later = clock.strftime("%Y%m%d%H%M", clock.localtime(clock.time() + 3 * 3600))
    assert pbs("qalter", "-a", later, "3") == (0, "", "")
    doc = mix.job("3")
    assert (doc["state"], pbs("qstat", "3")[1].splitlines()[2].split()[4]) == ("WAITING", "W")
    assert doc["reason"].startswith("waiting for execution time")
    for item in iter(lambda: mix.backend.queue.claim("batch", "w-x", 1, 30), None):  # its old item is stale
        if item.job_id == "3":
            assert mix.worker.start(item) is None
    earlier = clock.strftime("%Y%m%d%H%M", clock.localtime(clock.time() - 3600))
    assert pbs("qalter", "-a", earlier, "3") == (0, "", "")  # a time past: QUEUED again, with work to claim
    assert mix.job("3")["state"] == "QUEUED"
    assert mix.backend.queue.claim("batch", "w", 1, 30).job_id == "3"


# ---- qrerun -----------------------------------------------------------------------------------

def test_qrerun_asks_the_worker_and_requeues_the_job_once_its_run_is_killed(pbs):
    """As PBS: the job stays R (substate 60) until its run is killed; only then is it queued again,
    at a new attempt, with Exit_status -11 (JOB_EXEC_RERUN) and no retry used up."""
    server = pbs.server
    server.submit(name="done")
    server.run_next()
    server.submit(name="long", walltime="01:00:00", max_attempts=2)
    run = server.start()
    server.submit(name="queued")
    assert pbs("qrerun", "2") == (0, "", "")
    doc = server.job("2")
    assert (doc["state"], doc["attempt"], doc.get("rerun_requested")) == ("RUNNING", 1, True)
    assert server.backend.queue.claim("batch", "w-other", 1, 30).job_id == "3"  # nothing of job 2 to claim
    assert server.backend.queue.claim("batch", "w-other", 1, 30) is None
    full = pbs("qstat", "-f", "2")[1]
    assert "    job_state = R\n" in full and "    substate = 60\n" in full
    assert pbs("qrerun", "2") == (0, "", "")  # asked again: nothing changes
    assert server.job("2")["version"] == doc["version"]

    assert server.worker.heartbeat(run).rerun  # what the worker's next look tells it: kill the run
    server.finish(run, status=exits.RERUN, rerun=True)
    doc = server.job("2")
    assert (doc["state"], doc["attempt"], doc["exit_status"], doc.get("reruns", 0)) == ("QUEUED", 2, -11, 1)
    assert doc.get("rerun_requested") is None and doc["reason"] == "rerun requested by alice; re-queued as attempt 2"
    assert pbs("qstat", "2")[1].splitlines()[2].split()[4] == "Q"
    again = server.start()
    assert again.attempt == 2
    server.finish(again, status=1)  # fails: its one retry (max_attempts 2) was not used up by the rerun
    assert (server.job("2")["state"], server.job("2")["attempt"]) == ("QUEUED", 3)
    assert "Exit_status=-11" in pbs("tracejob", "2")[1]
    assert pbs("qrerun", "3") == (168, "", f"qrerun: Request invalid for state of job 3.{SERVER}\n")
    assert pbs("qrerun", "1") == (35, "", "qrerun: Job has finished\n")


def test_qdel_after_qrerun_wins(pbs):
    server = pbs.server
    server.submit()
    run = server.start()
    assert pbs("qrerun", "1") == (0, "", "")
    assert pbs("qdel", "1") == (0, "", "")
    assert pbs("qstat", "-f", "1")[1].count("substate = 42") == 1
    signals = server.worker.heartbeat(run)
    assert signals.cancel_all and not signals.rerun
    server.finish(run, status=271, cancelled=True)
    doc = server.job("1")
    assert (doc["state"], doc["attempt"], doc.get("reruns", 0)) == ("CANCELLED", 1, 0)
    assert server.backend.queue.claim("batch", "w-other", 1, 30) is None
    assert pbs("qrerun", "1") == (35, "", "qrerun: Job has finished\n")


def test_qrerun_of_an_array_reruns_its_failed_and_cancelled_tasks(pbs):
    server = pbs.server
    server.submit(array="1-4", max_attempts=1)
    run = server.start(max_tasks=2)
    server.finish(run, status=1)  # tasks 1 and 2 fail
    assert pbs("qdel", "1[3]") == (0, "", "")
    assert server.job("1")["state"] == "QUEUED"  # task 4 is still to run
    assert pbs("qrerun", f"1[].{SERVER}") == (0, "", "")
    doc = server.job("1")
    assert (doc["state"], doc["pending"], doc["failed"], doc["cancelled"]) == ("QUEUED", 4, 0, 0)
    server.run_all(status=0)
    assert server.job("1")["state"] == "SUCCEEDED" and server.job("1")["succeeded"] == 4
    assert pbs("qrerun", "1[]") == (35, "", "qrerun: Job has finished\n")  # finished stays finished, as in PBS


def test_qrerun_refuses_a_job_that_is_not_rerunnable(pbs):
    server = pbs.server
    job = server.submit()
    server.start()
    server.backend.store.update(job["id"], Expect(), Change(set={"rerunnable": False}))  # qsub -r n (option table)
    assert pbs("qrerun", "1") == (190, "", f"qrerun: job is not rerunnable 1.{SERVER}\n")
    assert server.job("1").get("rerun_requested") is None
    assert pbs("qrerun", "-W", "force", "1") == (0, "", "")  # as PBS: force re-runs it all the same
    assert server.job("1")["rerun_requested"] is True


# ---- qsig -------------------------------------------------------------------------------------

def test_qsig_records_the_signal_for_the_worker(pbs, mix):
    assert pbs("qsig", "-s", "USR1", "2") == (0, "", "")
    assert pbs("qsig", "2") == (0, "", "")  # SIGTERM by default
    assert [e[1] for e in mix.job("2")["signals"]] == ["SIGUSR1", "SIGTERM"]
    assert pbs("qsig", "-s", "NOPE", "2") == (165, "", f"qsig: Unknown/illegal signal name 2.{SERVER}\n")
    assert pbs("qsig", "3") == (168, "", f"qsig: Request invalid for state of job 3.{SERVER}\n")
    assert pbs("qsig", "1") == (35, "", "qsig: Job has finished\n")


def test_a_heartbeat_hands_the_worker_each_signal_once(pbs):
    server = pbs.server
    server.submit()
    run = server.start()
    assert pbs("qsig", "-s", "10", "1") == (0, "", "")
    assert server.worker.heartbeat(run).deliver == (("SIGUSR1", None),)
    assert server.worker.heartbeat(run).deliver == ()


# ---- qmove ------------------------------------------------------------------------------------

def test_qmove_sends_a_queued_job_to_another_queue(pbs, mix):
    assert pbs("qmove", "west", "3") == (0, "", "")
    assert mix.job("3")["queue"] == "west"
    stale = mix.backend.queue.claim("batch", "w", 1, 30)  # its item in batch is stale now
    while stale is not None and stale.job_id != "3":
        stale = mix.backend.queue.claim("batch", "w", 1, 30)
    assert stale is not None and mix.worker.start(stale) is None
    assert mix.job("3")["state"] == "QUEUED"
    item = mix.backend.queue.claim("west", "w", 1, 30)
    assert item.job_id == "3" and mix.worker.start(item) is not None
    assert pbs("qmove", "nope", "4") == (170, "", f"qmove: Unknown queue 4.{SERVER}\n")
    assert pbs("qmove", "west", "2") == (168, "", f"qmove: Request invalid for state of job 2.{SERVER}\n")
    assert pbs("qmove", "west")[0] == 2


# ---- tracejob ---------------------------------------------------------------------------------

def test_tracejob_prints_the_history(pbs, mix):
    code, out, err = pbs("tracejob", "1")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:3] == ["", f"Job: 1.{SERVER}", ""]
    assert re.fullmatch(r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d  S    Job Queued at request of alice, owner = alice, "
                        r"job name = done, queue = batch", lines[3])
    assert lines[4].endswith("M    Job run on us-east-1/w-test (attempt 1)")
    assert re.search(r"M    Exit_status=0 resources_used.cput=00:00:00", lines[5])
    assert len(pbs("tracejob", "-m", "1")[1].splitlines()) == 4  # without the worker's entries


def test_tracejob_wraps_and_reports_unknown_jobs(pbs, mix):
    out = pbs("tracejob", "-w", "60", "1")[1]
    assert all(len(line) <= 60 for line in out.splitlines())
    assert any(line.startswith(" " * 26) for line in out.splitlines())
    assert pbs("tracejob", "99") == (1, "", f"\ntracejob: Couldn't find Job Id 99.{SERVER} in logs of past 1 day\n\n")
    code, out, _ = pbs("tracejob")
    assert code == 1 and out.startswith("USAGE: tracejob")


# ---- pbsnodes ---------------------------------------------------------------------------------

def test_pbsnodes_lists_workers(pbs, mix):
    mix.nodes[:] = [
        {"id": "w-test", "region": "us-east-1", "queue": "batch", "definition": "standard", "started_at": 1.0e9},
        {"id": "w-idle", "region": "us-west-2", "queue": "batch", "definition": "standard", "started_at": 1.0e9},
    ]
    code, out, err = pbs("pbsnodes", "-a")
    assert (code, err) == (0, "")
    blocks = out.split("\n\n")
    assert blocks[0].splitlines()[:6] == ["w-idle", "     Mom = w-idle", "     ntype = PBS", "     state = free",
                                          "     pcpus = 1", "     resources_available.host = w-idle"]
    assert f"     jobs = 2.{SERVER}/0" in blocks[1] and "     state = job-busy" in blocks[1]
    doc = json.loads(pbs("pbsnodes", "-a", "-F", "json")[1])
    assert set(doc) == {"timestamp", "pbs_version", "pbs_server", "nodes"}
    assert doc["nodes"]["w-test"]["jobs"] == [f"2.{SERVER}"] and doc["nodes"]["w-test"]["pcpus"] == 1
    assert "resources_assigned" not in doc["nodes"]["w-idle"]  # zero assignments are left out
    assert pbs("pbsnodes", "w-idle")[1].startswith("w-idle\n")
    assert pbs("pbsnodes", "-l") == (0, "", "")
    assert pbs("pbsnodes", "nope") == (1, "", "Node: nope,  Error: Unknown node\n")


def test_pbsnodes_usage_and_refusals(pbs):
    code, _, err = pbs("pbsnodes")
    assert code == 1 and err.startswith("usage:\tpbsnodes")
    assert pbs("pbsnodes", "-o", "w-1") == (
        1, "", "pbsnodes: -o does not apply: workers are started and stopped by the scaler, not marked\n")
    assert pbs("pbsnodes", "-a") == (0, "", "pbsnodes: No nodes found\n")
    assert pbs("pbsnodes", "--version") == (0, "pbs_version = 23.06.06\n", "")


def test_hyper_dashboard_of_a_local_host_says_so_when_its_daemon_is_not_running(cli, home):
    """It printed the URL of a daemon that was not there, exit 0, and the browser showed an error."""
    import json
    import socket

    shown = cli("hyper", "dashboard", "--no-browser")
    assert shown.returncode == 0 and "/ (sign in with the token" in shown.stdout
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hosts = json.loads((home / "hosts.json").read_text())
    hosts["hosts"]["local"]["url"] = f"http://127.0.0.1:{port}"
    (home / "hosts.json").write_text(json.dumps(hosts))
    gone = cli("hyper", "dashboard", "--no-browser")
    assert gone.returncode == 1 and gone.stdout == ""
    assert gone.stderr == f"hyper: cannot reach HyperBatch at http://127.0.0.1:{port}: is `hyper local up` running?\n"

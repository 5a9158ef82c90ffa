"""qstat's formats, byte for byte: golden strings from PBS Pro's qstat (OpenPBS src/cmds/qstat.c,
as recorded in the PBS reference the front end follows), rendered by hyperbatch.cli.output."""

import json
import time

import pytest

from hyperbatch.cli import output


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


T0 = 1775814982.0  # Fri Apr 10 09:56:22 2026 UTC


def view(**fields):
    """A job as the API shows it (hyperbatch.core.views.view), with the fields a test cares about."""
    job = {
        "id": "123.pbsserver", "seq": "123", "server": "pbsserver", "name": "STDIN", "owner": "alice",
        "queue": "workq", "definition": "standard", "state": "QUEUED", "job_state": "Q", "substate": 10,
        "attempt": 1, "run_count": 0, "max_attempts": 1, "priority": 0, "exit_status": None, "reason": "",
        "submitted_at": T0, "started_at": None, "finished_at": None, "exec_host": None, "walltime": None,
        "env": {}, "resources": {}, "depend": "", "command": ["true"], "script_name": None,
        "cpu_seconds": None, "workdir": None, "history": [], "array": None,
    }
    job.update(fields)
    return job


# ---- the default table ------------------------------------------------------------------------

def test_default_table_matches_pbs():
    rows = [
        {"id": "123.pbsserver", "Job_Name": "STDIN", "Job_Owner": "alice@login1", "resources_used.cput": "00:00:01",
         "job_state": "R", "queue": "workq"},
        {"id": "124[].pbsserver", "Job_Name": "arr.sh", "Job_Owner": "alice@login1", "job_state": "B",
         "queue": "workq"},
    ]
    assert output.table(rows) == (
        "Job id            Name             User              Time Use S Queue\n"
        "----------------  ---------------- ----------------  -------- - -----\n"
        "123.pbsserver     STDIN            alice             00:00:01 R workq           \n"
        "124[].pbsserver   arr.sh           alice                    0 B workq           \n"
    )


def test_default_table_cuts_like_pbs():
    row = {"id": "1234567890123.server.example.com", "Job_Name": "n" * 16, "Job_Owner": "u" * 17 + "@h",
           "job_state": "Q", "queue": "q" * 17, "resources_used.cput": "1000:00:00"}
    line = output.table([row]).splitlines()[2]
    # the id is cut after its server's first label, then to 17 with '*'; a 16-character name is cut
    assert line == "1234567890123.se* nnnnnnnnnnnnnnn* uuuuuuuuuuuuuuu*  1000:00* Q qqqqqqqqqqqqqqq*"
    assert output.table([]) == ""
    assert output.table([row], header=False).startswith("1234567890123.se*")


def test_wide_table_matches_pbs():
    row = {"id": "123.pbsserver", "Job_Name": "STDIN", "Job_Owner": "alice", "job_state": "R", "queue": "workq",
           "resources_used.cput": "00:00:01"}
    assert output.table([row], wide=True) == (
        "Job id                         Name            User             Time Use S Queue\n"
        "-----------------------------  --------------- ---------------  -------- - ---------------\n"
        "123.pbsserver                  STDIN           alice            00:00:01 R workq          \n"
    )


def test_percent_done():
    assert output.table([{"id": "1.s", "job_state": "Q"}], percent=True).splitlines()[0] == (
        "Job id            Name             User               % done  S Queue")
    row = {"id": "1.s", "job_state": "R", "resources_used.walltime": "00:30:00", "Resource_List.walltime": "01:00:00"}
    assert output.percent_done(row) == " 50 "
    assert output.percent_done({"job_state": "B", "array_state_count": "Queued:1 Running:1 Exiting:0 Expired:2"}) == " 50 "
    assert output.percent_done({"job_state": "X"}) == "100"
    assert output.percent_done({"job_state": "Q"}) == "-- "


# ---- the alternate table -----------------------------------------------------------------------

ALT_ROWS = [
    {"id": "123.pbsserver", "Job_Owner": "alice@login1", "queue": "workq", "Job_Name": "STDIN",
     "session_id": 12345, "Resource_List.nodect": 1, "Resource_List.ncpus": 4, "Resource_List.mem": "4gb",
     "Resource_List.walltime": "01:00:00", "job_state": "R", "resources_used.walltime": "00:12:31",
     "exec_host": "node01.example.com/0*4+node02/0*4", "comment": "Job run at Fri Apr 10 at 09:56 on (node01:ncpus=4)"},
    {"id": "125.pbsserver", "Job_Owner": "bob@login1", "queue": "workq", "Job_Name": "job.sh",
     "Resource_List.nodect": 1, "Resource_List.ncpus": 1, "Resource_List.walltime": "00:30:00", "job_state": "Q"},
]


def test_alternate_format_matches_pbs():
    text = output.alt_header("pbsserver") + "".join(output.alt_row(r) for r in ALT_ROWS)
    assert text == (
        "\n"
        "pbsserver: \n"
        "                                                            Req'd  Req'd   Elap\n"
        "Job ID          Username Queue    Jobname    SessID NDS TSK Memory Time  S Time\n"
        "--------------- -------- -------- ---------- ------ --- --- ------ ----- - -----\n"
        "123.pbsserver   alice    workq    STDIN       12345   1   4    4gb 01:00 R 00:12\n"
        "125.pbsserver   bob      workq    job.sh        --    1   1    --  00:30 Q   -- \n"
    )


def test_n_s_and_1():
    row = ALT_ROWS[0]
    assert output.alt_row(row, nodes=True, comment=True).splitlines()[1:] == [
        "   node01/0*4+node02/0*4", "   Job run at Fri Apr 10 at 09:56 on (node01:ncpus=4)"]
    one = output.alt_row(row, nodes=True, one_line=True)
    assert one == "123.pbsserver   alice    workq    STDIN       12345   1   4    4gb 01:00 R 00:12 node01/0*4+node02/0*4\n"
    # no comment: qstat prints its blank, " -- "
    assert output.alt_row(ALT_ROWS[1], comment=True).splitlines()[1] == "    -- "
    long = {**row, "comment": "x" * 80}
    assert output.alt_row(long, comment=True).splitlines()[1] == "   " + "x" * 71 + "..."


def test_alternate_cuts_with_a_star():
    row = {**ALT_ROWS[1], "id": "1234567890123456.pbsserver", "Job_Owner": "maximilian", "Job_Name": "averyverylongname"}
    assert output.alt_row(row).startswith("12345678901234* maximil* workq    averyvery*")


def test_wide_alternate_header():
    assert output.alt_header("pbsserver", wide=True) == (
        "\npbsserver: \n"
        + " " * 30 + " " + " " * 15 + " " + " " * 15 + " " + " " * 15 + " " + " " * 8 + " " + " " * 4 + " "
        + " " * 5 + " Req'd  Req'd   Elap\n"
        "Job ID                         Username        Queue           Jobname         SessID   NDS  TSK   "
        "Memory Time  S Time\n"
        "------------------------------ --------------- --------------- --------------- -------- ---- ----- "
        "------ ----- - -----\n"
    )


@pytest.mark.parametrize("value, units, shown", [
    ("4gb", None, "4gb"), ("4096mb", None, "4096mb"), ("1073741824", None, "1024mb"), ("1073741824b", None, "1024mb"),
    ("10000kb", None, "10mb"), ("4gb", "gb", "4gb"), ("1500mb", "gb", "2gb"), ("1gb", "mw", "128mw"),
])
def test_memory_column(value, units, shown):
    assert output.cnv_size(value, units) == shown


# ---- -f ---------------------------------------------------------------------------------------

VARIABLES = ("PBS_O_HOME=/home/alice,PBS_O_LANG=en_US.UTF-8,PBS_O_LOGNAME=alice,"
             "PBS_O_PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/opt/pbs/bin:/home/alice/.local/bin,"
             "PBS_O_MAIL=/var/spool/mail/alice,PBS_O_SHELL=/bin/bash,PBS_O_WORKDIR=/home/alice/work,"
             "PBS_O_SYSTEM=Linux,PBS_O_QUEUE=workq,PBS_O_HOST=login1.example.com")


def test_long_values_fold_at_commas_like_pbs():
    assert output.fold("Variable_List", None, VARIABLES) == (
        "    Variable_List = PBS_O_HOME=/home/alice,PBS_O_LANG=en_US.UTF-8,\n"
        "\tPBS_O_LOGNAME=alice,\n"
        "\tPBS_O_PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/opt\n"
        "\t/pbs/bin:/home/alice/.local/bin,PBS_O_MAIL=/var/spool/mail/alice,\n"
        "\tPBS_O_SHELL=/bin/bash,PBS_O_WORKDIR=/home/alice/work,\n"
        "\tPBS_O_SYSTEM=Linux,PBS_O_QUEUE=workq,PBS_O_HOST=login1.example.com"
    )
    assert "\t" not in output.fold("comment", None, "short, with a comma")


def test_full_block():
    attrs = [("Job_Name", None, "job.sh"), ("Resource_List", "walltime", "00:10:00"), ("Exit_status", None, 0)]
    assert output.full("123.pbsserver", attrs) == (
        "Job Id: 123.pbsserver\n"
        "    Job_Name = job.sh\n"
        "    Resource_List.walltime = 00:10:00\n"
        "    Exit_status = 0\n"
        "\n"
    )
    assert output.full("1.s", [("comment", None, "a\nb")], one_line=True) == "Job Id: 1.s\n    comment = a\\nb\n\n"


def test_dsv():
    attrs = [("Job_Name", None, "a|b"), ("Resource_List", "ncpus", 1)]
    assert output.full_dsv("123.pbsserver", attrs) == "Job Id: 123.pbsserver|Job_Name=a\\|b|Resource_List.ncpus=1\n"
    assert output.full_dsv("1.s", attrs, ",") == "Job Id: 1.s,Job_Name=a|b,Resource_List.ncpus=1\n"


def finished_job():
    return view(
        name="job.sh", state="SUCCEEDED", job_state="F", substate=92, run_count=1, exit_status=0,
        started_at=T0 + 1, finished_at=T0 + 11, cpu_seconds=0.2, exec_host="us-east-1/w-abc123", walltime=600,
        workdir="/home/alice/work", env={"OMP_NUM_THREADS": "4"},
        history=[[T0, "S", "Job Queued"], [T0 + 12, "M", "Exit_status=0"]],
    )


def test_job_attributes_in_pbs_order():
    attrs = output.job_attributes(finished_job(), now=T0 + 100)
    names = [f"{n}.{r}" if r else n for n, r, _ in attrs]
    assert names == [
        "Job_Name", "Job_Owner", "resources_used.cput", "resources_used.ncpus", "resources_used.walltime",
        "job_state", "queue", "server", "Checkpoint", "ctime", "exec_host", "exec_vnode", "Hold_Types", "Join_Path",
        "Keep_Files", "Mail_Points", "mtime", "Priority", "qtime", "Rerunable", "Resource_List.ncpus",
        "Resource_List.nodect", "Resource_List.place", "Resource_List.select", "Resource_List.walltime", "stime",
        "obittime", "substate", "Variable_List", "etime", "run_count", "Exit_status", "project", "hyper_state",
        "definition",
    ]
    text = output.full("123.pbsserver", attrs)
    assert "    Job_Owner = alice@pbsserver\n" in text
    assert "    ctime = Fri Apr 10 09:56:22 2026\n" in text
    assert "    mtime = Fri Apr 10 09:56:34 2026\n" in text
    assert "    resources_used.walltime = 00:00:10\n" in text
    assert "    Resource_List.walltime = 00:10:00\n" in text
    assert "    exec_host = w-abc123/0\n" in text and "    exec_vnode = (w-abc123:ncpus=1)\n" in text
    assert "    Variable_List = PBS_O_QUEUE=workq,PBS_O_WORKDIR=/home/alice/work,\n\tOMP_NUM_THREADS=4\n" in text
    assert "    Exit_status = 0\n    project = _pbs_project_default\n" in text


def test_active_jobs_show_no_exit_status_and_arrays_their_counts():
    queued = output.job_attributes(view(), now=T0)
    assert "Exit_status" not in [n for n, _, _ in queued] and "stime" not in [n for n, _, _ in queued]
    array = view(id="124[].pbsserver", job_state="B", state="RUNNING", started_at=T0, array={
        "spec": "1-10%2", "total": 10, "pending": 5, "running": 2, "succeeded": 2, "failed": 1, "cancelled": 0})
    attrs = {n: v for n, r, v in output.job_attributes(array, now=T0) if r is None}
    assert attrs["array_state_count"] == "Queued:5 Running:2 Exiting:0 Expired:3"
    assert attrs["array_indices_submitted"] == "1-10" and attrs["max_run_subjobs"] == 2
    assert attrs["job_state"] == "B"


# ---- -F json ----------------------------------------------------------------------------------

def test_json_has_pbs_structure_and_types():
    job = finished_job()
    text = output.json_document("pbsserver", "Jobs", {job["id"]: output.json_object(output.job_attributes(job))},
                                now=T0)
    doc = json.loads(text)
    assert list(doc) == ["timestamp", "pbs_version", "pbs_server", "Jobs"]
    assert doc["timestamp"] == int(T0) and doc["pbs_version"] == "23.06.06" and doc["pbs_server"] == "pbsserver"
    attrs = doc["Jobs"]["123.pbsserver"]
    assert attrs["job_state"] == "F" and attrs["Exit_status"] == 0 and attrs["run_count"] == 1
    assert attrs["Job_Owner"] == "alice@pbsserver" and attrs["Rerunable"] == "True"
    assert attrs["Resource_List"] == {"ncpus": 1, "nodect": 1, "place": "pack", "select": "1:ncpus=1",
                                      "walltime": "00:10:00"}
    assert attrs["resources_used"] == {"cput": "00:00:00", "ncpus": 1, "walltime": "00:00:10"}
    assert attrs["Variable_List"] == {"PBS_O_QUEUE": "workq", "PBS_O_WORKDIR": "/home/alice/work",
                                      "OMP_NUM_THREADS": 4}
    assert attrs["ctime"] == "Fri Apr 10 09:56:22 2026" and attrs["substate"] == 92
    assert text.startswith('{\n    "timestamp":1775814982,\n')  # PBS's layout: 4 spaces, no space after ':'


def test_json_without_jobs_has_no_jobs_key():
    assert list(json.loads(output.json_document("s", "Jobs", {}))) == ["timestamp", "pbs_version", "pbs_server"]


@pytest.mark.parametrize("name, value, typed", [
    ("Exit_status", "-29", -29), ("Exit_status", 271, 271), ("Priority", "0", 0), ("x", "1.5", 1.5),
    ("x", "007", 7), ("x", "True", "True"), ("x", "true", True), ("x", "00:10:00", "00:10:00"),
    ("Job_Name", "123", "123"), ("project", "42", "42"), ("x", "4gb", "4gb"), ("x", "1e3", 1000.0),
])
def test_json_typing(name, value, typed):
    assert output.json_value(name, value) == typed
    assert type(output.json_value(name, value)) is type(typed)


def test_escaped_commas_stay_in_their_variable():
    attrs = [("Variable_List", None, "A=x\\,y,B=2")]
    assert output.json_object(attrs) == {"Variable_List": {"A": "x,y", "B": 2}}


# ---- queues and the server ----------------------------------------------------------------------

QUEUES = [{"name": "workq", "counts": {"QUEUED": 1, "RUNNING": 2, "SUCCEEDED": 40}, "backlog": 1, "workers": {}}]


def test_queue_table_matches_pbs():
    assert output.queue_table(QUEUES) == (
        "Queue              Max   Tot Ena Str   Que   Run   Hld   Wat   Trn   Ext Type\n"
        "---------------- ----- ----- --- --- ----- ----- ----- ----- ----- ----- ----\n"
        "workq                0     3 yes yes     1     2     0     0     0     0 Exe*\n"
    )


def test_queue_alternate_matches_pbs():
    assert output.queue_alt("pbsserver", QUEUES) == (
        "\nserver: pbsserver\n\n"
        "Queue            Memory CPU Time Walltime Node   Run   Que   Lm  State\n"
        "---------------- ------ -------- -------- ---- ----- ----- ----  -----\n"
        "workq              --      --       --     --      2     1   --   E R\n"
        "                                               ----- -----\n"
        "                                                   2     1\n"
    )


def test_server_table_matches_pbs():
    assert output.server_table("pbsserver", QUEUES) == (
        "Server             Max   Tot   Que   Run   Hld   Wat   Trn   Ext Status\n"
        "---------------- ----- ----- ----- ----- ----- ----- ----- ----- -----------\n"
        "pbsserver            0     3     1     2     0     0     0     0 Active    \n"
    )


def test_state_count_counts_dependency_waits_as_held():
    assert output.state_count_text({"WAITING": 2, "HELD": 1, "QUEUED": 3}) == (
        "Transit:0 Queued:3 Held:3 Waiting:0 Running:0 Exiting:0 Begun:0 ")
    attrs = dict((n, v) for n, _, v in output.queue_attributes(QUEUES[0]))
    assert attrs["total_jobs"] == 3 and attrs["queue_type"] == "Execution"

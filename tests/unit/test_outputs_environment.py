"""Where a job's output goes and what environment it starts with (core/outputs.py, core/environment.py)."""

import pytest

from hyperbatch.core.environment import job_environment, nodefile, threads
from hyperbatch.core.model import new_job
from hyperbatch.core.outputs import destinations, file_mode, sequence


def _job(**fields):
    return new_job(id="1234", server="srv", name="job.sh", workdir="/work", queue="batch", owner="alice", **fields)


def test_sequence_is_the_ids_leading_digits():
    assert sequence("1234.server") == "1234"
    assert sequence("1234[].server") == "1234"
    assert sequence("1234") == "1234"


@pytest.mark.parametrize(
    "fields, index, home, expected",
    [
        ({}, None, "/home/a", [("stdout", "/work/job.sh.o123"), ("stderr", "/work/job.sh.e123")]),
        ({"array": "1-3"}, 2, "/home/a", [("stdout", "/work/job.sh.o123.2"), ("stderr", "/work/job.sh.e123.2")]),
        ({"join": "oe", "output_path": "/logs/all.log"}, None, None, [("stdout", "/logs/all.log")]),
        ({"join": "eo"}, None, None, [("stderr", "/work/job.sh.e123")]),
        ({"output_path": "/logs/", "error_path": "/errs/e.^array_index^"}, 4, None,
         [("stdout", "/logs/123[4].srv.OU"), ("stderr", "/errs/e.4")]),
        ({"keep": "oe"}, None, "/home/a", [("stdout", "/home/a/job.sh.o123"), ("stderr", "/home/a/job.sh.e123")]),
        ({"keep": "o", "remove_files": "e"}, None, "/home/a", [("stdout", "/home/a/job.sh.o123")]),
        ({"keep": "d"}, None, "/home/a", [("stdout", "/work/job.sh.o123"), ("stderr", "/work/job.sh.e123")]),
        ({"workdir": None}, None, "/home/a", []),  # submitted over the API without a directory: the log store only
    ],
)
def test_destinations(fields, index, home, expected):
    job = {**new_job(id="123", server="srv", name="job.sh", workdir="/work"), **fields}
    assert destinations(job, index, home) == expected


def test_file_mode_follows_the_umask():
    assert file_mode(None) == 0o600 and file_mode("0022") == 0o644


def test_the_environment_is_pbs_and_nothing_of_the_workers():
    job = _job(
        env={"PBS_O_HOME": "/home/alice", "PBS_O_PATH": "/opt/bin:/usr/bin", "PBS_O_LOGNAME": "alice",
             "PBS_O_SHELL": "/bin/zsh", "PBS_O_LANG": "C.UTF-8", "PBS_O_WORKDIR": "/work", "FROM_V": "1"},
        resources={"ncpus": 4, "mpiprocs": 2, "select": "1:ncpus=4:mpiprocs=2"}, account="acct", array="1-3",
    )
    env = job_environment(job, 2, 1, definition_env={"SITE": "x", "PATH": "/site/bin"}, host="node1.example.com",
                          nodefile_path="/aux/f", tmpdir="/tmp/pbs.x", jobdir="/home/alice", region="r", worker="w")
    assert env == {
        "SITE": "x", "HOME": "/home/alice", "USER": "alice", "LOGNAME": "alice", "SHELL": "/bin/zsh",
        "PATH": "/opt/bin:/usr/bin", "LANG": "C.UTF-8", **job["env"],
        "PBS_JOBID": "1234[2].srv", "PBS_JOBNAME": "job.sh", "PBS_QUEUE": "batch",
        "PBS_ENVIRONMENT": "PBS_BATCH", "ENVIRONMENT": "BATCH", "PBS_NODEFILE": "/aux/f", "PBS_NODENUM": "0",
        "PBS_TASKNUM": "1", "PBS_JOBDIR": "/home/alice", "TMPDIR": "/tmp/pbs.x", "NCPUS": "4", "OMP_NUM_THREADS": "4",
        "HYPER_JOB_ID": "1234[2].srv", "HYPER_JOB_NAME": "job.sh", "HYPER_ATTEMPT": "1", "HYPER_QUEUE": "batch",
        "HYPER_OWNER": "alice", "HYPER_DEFINITION": "", "HYPER_REGION": "r", "HYPER_WORKER_ID": "w",
        "PBS_ACCOUNT": "acct", "PBS_ARRAY_INDEX": "2", "PBS_ARRAY_ID": "1234[].srv", "HYPER_ARRAY_INDEX": "2",
        "HYPER_ARRAY_ID": "1234[].srv",
    }
    assert nodefile(job["resources"], "node1.example.com") == "node1\nnode1\n"


def test_an_api_job_without_pbs_o_variables_still_gets_a_home_path_and_user():
    env = job_environment(_job(), None, 1, definition_env={}, host="h", nodefile_path="/n", tmpdir="/t",
                          jobdir="/h", fallback_home="/home/worker")
    assert (env["HOME"], env["USER"], env["SHELL"]) == ("/home/worker", "alice", "/bin/bash")
    assert env["PATH"] and "PBS_ARRAY_INDEX" not in env
    assert threads({"ompthreads": 3, "ncpus": 8}) == 3 and threads({}) == 1

"""PBS Pro behaviour of jobs, through the installed qsub against a real daemon: directives,
output files in the submit directory, the job's environment, exit and rerun semantics,
deferral with -a, and what qsub refuses (issue 10, items 2-6)."""

from __future__ import annotations

import getpass
import os
import signal
import socket
import stat
import time

import pytest

from hyperbatch.core.outputs import sequence
from tests.e2e.conftest import ID_RE, one_line, pid_alive, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_pbs_jobs")]

FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def _final(hb, job_id: str) -> dict:
    return hb.wait_state(job_id, FINAL, timeout=45)


# ---- directives and output files -------------------------------------------------------------


def test_default_output_files_appear_in_the_submit_directory_when_the_job_ends(hb):
    script = hb.script("#!/bin/bash\necho to stdout\necho to stderr >&2\n", "plain.sh")
    job_id = hb.submit(script)
    assert _final(hb, job_id)["state"] == "SUCCEEDED"
    out, err = hb.workdir / f"plain.sh.o{sequence(job_id)}", hb.workdir / f"plain.sh.e{sequence(job_id)}"
    assert out.read_text() == "to stdout\n" and err.read_text() == "to stderr\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # the job's umask, 077 as PBS's
    assert hb.run("qlog", job_id).stdout == "to stdout\n"  # qlog still shows the same streams


def test_directives_name_the_files_join_them_and_set_attributes(hb):
    logs = hb.workdir / "logs"
    logs.mkdir()
    script = hb.script(
        "#!/bin/bash\n"
        "#PBS -N joined\n"
        "#PBS -j oe -o logs/joined.log\n"
        "#PBS -l walltime=00:05:00 -l select=1:ncpus=2:mem=1GB\n"
        "#PBS -A acct -P proj -m abe -M me@example.com -c n -W umask=022\n"
        "echo out; echo err >&2; echo out again\n",
        "joined.sh",
    )
    job_id = hb.submit(script)
    job = _final(hb, job_id)
    assert job["state"] == "SUCCEEDED" and job["name"] == "joined"
    assert (logs / "joined.log").read_text() == "out\nerr\nout again\n"  # one stream, in order
    assert stat.S_IMODE((logs / "joined.log").stat().st_mode) == 0o644
    assert not list(hb.workdir.glob("joined.[oe]*"))
    assert (job["account"], job["project"], job["mail_points"], job["mail_users"], job["checkpoint"], job["join"]) == (
        "acct", "proj", "abe", "me@example.com", "n", "oe")
    assert job["walltime"] == 300
    assert job["resources"] == {"mem": "1gb", "ncpus": 2, "nodect": 1, "place": "pack", "select": "1:ncpus=2:mem=1gb"}


def test_array_tasks_write_name_o_seq_index_and_a_directory_gets_jobid_OU(hb):
    script = hb.script('#!/bin/bash\necho "task $PBS_ARRAY_INDEX of $PBS_ARRAY_ID"\n', "arr.sh")
    job_id = hb.submit("-J", "1-3", script)
    assert _final(hb, job_id)["state"] == "SUCCEEDED"
    for index in (1, 2, 3):
        assert (hb.workdir / f"arr.sh.o{sequence(job_id)}.{index}").read_text() == f"task {index} of {job_id}\n"
        assert (hb.workdir / f"arr.sh.e{sequence(job_id)}.{index}").read_text() == ""
    outdir = hb.workdir / "outdir"
    outdir.mkdir()
    job_id = hb.submit("-o", "outdir", "-R", "e", "--", "echo", "into a directory")
    assert _final(hb, job_id)["state"] == "SUCCEEDED"
    assert (outdir / f"{job_id}.OU").read_text() == "into a directory\n"
    assert not list(hb.workdir.glob(f"STDIN.e{sequence(job_id)}"))  # -R e: the error file is removed


def test_keep_leaves_the_files_in_the_home_directory(hb):
    job_id = hb.submit("-k", "oe", "-N", "kept", "--", "echo", "kept at home")
    assert _final(hb, job_id)["state"] == "SUCCEEDED"
    assert (hb.user_home / f"kept.o{sequence(job_id)}").read_text() == "kept at home\n"
    assert (hb.user_home / f"kept.e{sequence(job_id)}").exists()
    assert not list(hb.workdir.glob("kept.[oe]*"))


# ---- the job's environment -------------------------------------------------------------------


ENV_SCRIPT = """\
#!/bin/bash
#PBS -N envjob
#PBS -l ncpus=2
#PBS -v FROM_V=v-value
echo "cwd=$(pwd)"
env | sort
echo "nodefile=$(cat "$PBS_NODEFILE")"
test -d "$TMPDIR" && echo "tmpdir=ok"
"""


def test_the_job_starts_at_home_with_a_clean_pbs_environment(hb):
    script = hb.script(ENV_SCRIPT, "env.sh")
    job_id = hb.submit(script)
    assert _final(hb, job_id)["state"] == "SUCCEEDED"
    lines = hb.run("qlog", job_id).stdout.splitlines()
    env = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith(("cwd=", "nodefile=")))
    assert f"cwd={hb.user_home}" in lines  # PBS starts the job in the home directory
    assert "tmpdir=ok" in lines and f"nodefile={socket.gethostname().split('.')[0]}" in lines
    expected = {
        "HOME": str(hb.user_home), "USER": getpass.getuser(), "LOGNAME": getpass.getuser(),
        "PATH": hb.env["PATH"], "PBS_O_HOME": str(hb.user_home), "PBS_O_PATH": hb.env["PATH"],
        "PBS_O_WORKDIR": str(hb.workdir), "PBS_O_HOST": socket.gethostname(), "PBS_O_SYSTEM": os.uname().sysname,
        "PBS_O_QUEUE": "batch", "PBS_O_LOGNAME": getpass.getuser(), "PBS_JOBID": job_id, "PBS_JOBNAME": "envjob",
        "PBS_QUEUE": "batch", "PBS_ENVIRONMENT": "PBS_BATCH", "PBS_JOBDIR": str(hb.user_home), "NCPUS": "2",
        "OMP_NUM_THREADS": "2", "FROM_V": "v-value", "HYPER_JOB_ID": job_id, "HYPER_ATTEMPT": "1",
    }
    assert {k: env.get(k) for k in expected} == expected
    assert {"PBS_NODEFILE", "TMPDIR", "SHELL", "HYPER_REGION"} <= set(env)
    # Nothing of the daemon's or its workers' own environment leaks in.
    leaked = {"HYPERBATCH_HOME", "HYPER_CONFIG_DIR", "HYPER_BACKEND", "HYPER_PYTHON", "PYTHONUNBUFFERED"} & set(env)
    assert not leaked, leaked
    assert not os.path.exists(env["TMPDIR"]) and not os.path.exists(env["PBS_NODEFILE"])  # removed after the run


def test_V_passes_the_submitters_environment_but_not_secrets(hb):
    env = {**hb.env, "MY_SETTING": "from-qsub", "SERVICE_TOKEN": "secret"}
    proc = hb.run("qsub", "-V", "--", "bash", "-c", 'echo "$MY_SETTING/${SERVICE_TOKEN:-none}/$PYTHONUNBUFFERED"',
                  env=env)
    job_id = proc.stdout.strip()
    assert _final(hb, job_id)["state"] == "SUCCEEDED"
    assert hb.run("qlog", job_id).stdout == "from-qsub/none/1\n"


# ---- exit and rerun semantics ----------------------------------------------------------------


def test_a_non_zero_exit_runs_once_and_is_final(hb):
    job_id = hb.submit("--", "bash", "-c", "echo ran; exit 4")
    job = _final(hb, job_id)
    assert (job["state"], job["exit_status"], job["run_count"], job["attempt"]) == ("FAILED", 4, 1, 1)
    assert hb.run("qlog", job_id).stdout == "ran\n"
    job_id = hb.submit("--retries", "1", "--", "bash", "-c", "exit 4")
    job = _final(hb, job_id)
    assert (job["state"], job["exit_status"], job["run_count"]) == ("FAILED", 4, 2)


def test_a_program_that_cannot_start_fails_with_minus_2_and_says_why_in_its_error_file(hb):
    job_id = hb.submit("-N", "nostart", "--", "/no/such/program")
    job = _final(hb, job_id)
    assert (job["state"], job["exit_status"], job["run_count"]) == ("FAILED", -2, 1)  # JOB_EXEC_FAIL2
    assert job["reason"].startswith("could not start '/no/such/program': No such file")
    error_file = hb.workdir / f"nostart.e{sequence(job_id)}"
    assert error_file.read_text() == "hyperbatch: cannot start '/no/such/program': No such file or directory\n"


def test_qdel_of_a_running_job_reports_271_as_pbs(hb):
    pidfile = hb.workdir / "qdel.pid"
    job_id = hb.submit("--", "bash", "-c", f"echo $$ > {pidfile}; exec sleep 60")
    hb.wait_state(job_id, "RUNNING")
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, what="the job's pid"))
    hb.run("qdel", job_id)
    job = _final(hb, job_id)
    assert (job["state"], job["exit_status"], job["run_count"]) == ("CANCELLED", 271, 1)  # 256 + SIGTERM
    wait_for(lambda: not pid_alive(pid), 10, what="the job's process to be gone")


def test_block_waits_and_exits_with_the_jobs_status(hb):
    proc = hb.run("qsub", "-W", "block=true", "--", "bash", "-c", "exit 3", check=False, timeout=45)
    assert proc.returncode == 3
    assert ID_RE.fullmatch(proc.stdout.strip())
    hb.submitted.append(proc.stdout.strip())


def test_a_job_that_is_not_rerunnable_fails_when_its_worker_is_lost(hb):
    pidfile = hb.workdir / "norerun.pid"
    job_id = hb.submit("-r", "n", "--", "bash", "-c", f"echo $$ > {pidfile}; exec sleep 60")
    job = hb.wait_state(job_id, "RUNNING")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, what="the job's pid")
    worker_id = job["exec_host"].partition("/")[2]
    [worker] = [w for w in hb.workers() if w["id"] == worker_id]
    os.killpg(worker["pid"], signal.SIGKILL)  # the whole worker dies, as a lost host would
    job = _final(hb, job_id)
    assert (job["state"], job["exit_status"]) == ("FAILED", -20)  # JOB_EXEC_RERUN_MS_FAIL
    assert "not rerunnable" in job["reason"] and "lost" in job["reason"]


# ---- deferral (-a) ---------------------------------------------------------------------------


def test_a_deferred_job_waits_in_W_and_starts_at_its_time(hb):
    when = time.time() + 4
    stamp = time.strftime("%Y%m%d%H%M.%S", time.localtime(when))
    job_id = hb.submit("-a", stamp, "--", "echo", "on time")
    job = hb.job(job_id)
    assert job["state"] == "WAITING" and job["reason"].startswith("waiting for execution time")
    assert job["execution_time"] == int(when)
    row = next(line for line in hb.run("qstat", job_id).stdout.splitlines() if line.startswith(job_id))
    assert row.split()[-2] == "W"
    job = _final(hb, job_id)
    assert job["state"] == "SUCCEEDED" and job["started_at"] >= job["execution_time"]


def test_a_time_in_the_past_is_eligible_at_once_and_a_held_deferred_job_waits_after_release(hb):
    job_id = hb.submit("-a", "200001010000", "--", "echo", "late")
    assert _final(hb, job_id)["state"] == "SUCCEEDED"
    later = time.strftime("%Y%m%d%H%M", time.localtime(time.time() + 3600))
    job_id = hb.submit("-h", "-a", later, "--", "true")
    hb.run("qrls", job_id)
    assert hb.job(job_id)["state"] == "WAITING"
    hb.run("qdel", job_id)


# ---- what qsub refuses -----------------------------------------------------------------------


@pytest.fixture
def unchanged(hb):
    before = {j["id"]: j["state"] for j in hb.jobs()}
    yield
    assert {j["id"]: j["state"] for j in hb.jobs()} == before


def test_interactive_is_refused_with_one_line(hb, unchanged):
    proc = hb.run("qsub", "-I", check=False)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert one_line(proc.stderr).startswith("qsub: -I: interactive jobs are not supported")


@pytest.mark.parametrize(
    "directive, reason",
    [
        ("-l nodes=2:ppn=4", "-l nodes: not supported: a job runs on one host"),
        ("-l select=2:ncpus=1", "2 chunks need 2 hosts"),
        ("-W group_list=staff", "-W group_list: not supported"),
        ("-u bob", "-u: jobs run as the submitting user"),
        ("-W stagein=in@elsewhere.example:/b", "stagein host 'elsewhere.example': files are staged"),
    ],
)
def test_a_refused_directive_is_one_line_naming_the_line(hb, unchanged, directive, reason):
    script = hb.script(f"#!/bin/bash\n#PBS -N refused\n#PBS {directive}\necho never\n", "refused.sh")
    proc = hb.run("qsub", script, check=False)
    assert (proc.returncode, proc.stdout) == (2, "")
    line = one_line(proc.stderr)
    assert line.startswith("qsub: script line 3: ") and reason in line, line
    on_line = hb.run("qsub", *directive.split(), "--", "true", check=False)
    assert on_line.returncode == 2 and one_line(on_line.stderr) == line.replace("script line 3: ", "")

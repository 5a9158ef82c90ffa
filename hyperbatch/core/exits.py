"""Exit status as PBS Pro reports it, and when a job runs again: the one place for both.

`Exit_status` is the script's code 0-255; 256+N when its top process was killed by
signal N (so a job deleted with qdel while running reports 271, SIGTERM, or 265 if it
had to be killed with SIGKILL); and PBS Pro's negative JOB_EXEC_* values
(src/include/job.h) when the scheduler ended it, always with the reason in `comment`.
"""

from __future__ import annotations

# PBS Pro's special exit values (job.h, "Special Job Exit Values").
JOB_EXEC_OK = 0
JOB_EXEC_FAIL1 = -1  # exec failed, before files, no retry
JOB_EXEC_FAIL2 = -2  # exec failed, after files, no retry
JOB_EXEC_RETRY = -3  # exec failed, do retry
JOB_EXEC_INITABT = -4  # aborted on MOM initialization
JOB_EXEC_INITRST = -5  # aborted on MOM init, chkpt, no migrate
JOB_EXEC_INITRMG = -6  # aborted on MOM init, chkpt, ok migrate
JOB_EXEC_BADRESRT = -7  # restart failed
JOB_EXEC_FAILUID = -10  # invalid uid/gid for job
JOB_EXEC_RERUN = -11  # job rerun
JOB_EXEC_CHKP = -12  # checkpointed and killed
JOB_EXEC_FAIL_PASSWORD = -13  # bad password
JOB_EXEC_RERUN_SIS_FAIL = -14  # rerun (sister failed)
JOB_EXEC_QUERST = -15  # requeue for restart from checkpoint
JOB_EXEC_FAILHOOK_RERUN = -16  # hook rejected exec, requeue
JOB_EXEC_FAILHOOK_DELETE = -17  # hook rejected exec, delete
JOB_EXEC_HOOK_RERUN = -18  # hook requested requeue
JOB_EXEC_HOOK_DELETE = -19  # hook requested delete
JOB_EXEC_RERUN_MS_FAIL = -20  # mother superior connection failed
JOB_EXEC_FAIL_SECURITY = -21  # security breach in PBS directory
JOB_EXEC_HOOKERROR = -22  # hook exception / timeout
JOB_EXEC_FAIL_KRB5 = -23  # no kerberos credentials
JOB_EXEC_KILL_NCPUS_BURST = -24  # exceeded ncpus (burst)
JOB_EXEC_KILL_NCPUS_SUM = -25  # exceeded ncpus (sum)
JOB_EXEC_KILL_VMEM = -26  # exceeded vmem
JOB_EXEC_KILL_MEM = -27  # exceeded mem
JOB_EXEC_KILL_CPUT = -28  # exceeded cput
JOB_EXEC_KILL_WALLTIME = -29  # exceeded walltime
JOB_EXEC_JOINJOB = -30  # join job error

# What HyperBatch's own failures report, in those terms.
SCHEDULER_FAILURE = JOB_EXEC_FAIL1  # its work could not be started, again and again (dead letters)
EXEC_FAILED = JOB_EXEC_FAIL2  # the script or command could not be started
WORKER_LOST = JOB_EXEC_RERUN_MS_FAIL  # the worker (PBS: mother superior) stopped answering
RERUN = JOB_EXEC_RERUN  # the run was killed for qrerun (as MoM reports a job killed by SIG_RERUN)
WALLTIME_EXCEEDED = JOB_EXEC_KILL_WALLTIME
MEM_EXCEEDED = JOB_EXEC_KILL_MEM
NCPUS_EXCEEDED = JOB_EXEC_KILL_NCPUS_SUM
CPUT_EXCEEDED = JOB_EXEC_KILL_CPUT

SIGNAL_BASE = 256  # Exit_status of a job killed by signal N is 256 + N
MAX_RUNS = 20  # PBS holds a job that has been started more than 2 * PBS_MAX_HOPCOUNT times
TOO_MANY_RUNS = "job held, too many failed attempts to run"

_LIMITS = {
    "walltime": JOB_EXEC_KILL_WALLTIME,
    "mem": JOB_EXEC_KILL_MEM,
    "vmem": JOB_EXEC_KILL_VMEM,
    "cput": JOB_EXEC_KILL_CPUT,
    "ncpus": JOB_EXEC_KILL_NCPUS_SUM,
}


def from_returncode(returncode: int) -> int:
    """Popen's returncode (negative N for signal N) to a PBS exit status."""
    return SIGNAL_BASE - returncode if returncode < 0 else returncode


def limit_exceeded(resource: str, used: int | str, limit: int | str) -> tuple[int, str, str]:
    """(Exit_status, comment, the line for the job's stderr) for a job killed over a resource limit.

    As PBS MoM writes it: `=>> PBS: job killed: walltime 125 exceeded limit 120`, or for memory
    `mem 307200kb exceeded limit 102400kb`.
    """
    text = f"{resource} {used} exceeded limit {limit}"
    return _LIMITS[resource], f"job killed: {text}", f"=>> PBS: job killed: {text}\n"


def retry_after_exit(status: int, attempt: int, free: int, max_attempts: int) -> bool:
    """Whether a run that ended with `status` is followed by another: a non-zero exit (a limit
    kill included) is final unless --retries asked for more (max_attempts = retries + 1). The
    `free` runs before this attempt do not use up a retry: runs whose worker was lost, and runs
    ended by qrerun (`free_runs`)."""
    if status == 0:
        return False
    return attempt - free < max_attempts


def free_runs(job: dict) -> int:
    """A job's runs that used up no retry: lost with their worker, or ended by qrerun."""
    return job.get("lost_runs", 0) + job.get("reruns", 0)


def after_lost_worker(rerunnable: bool, run_count: int) -> str:
    """What a job whose worker was lost does next: "rerun" (rerunnable, -r y, the default),
    "fail" (-r n: Exit_status WORKER_LOST) or "hold" (started more than MAX_RUNS times, as PBS)."""
    if not rerunnable:
        return "fail"
    return "hold" if run_count >= MAX_RUNS else "rerun"


def describe(status: int | None) -> str:
    """A short phrase for `comment`."""
    if status is None:
        return ""
    if status >= SIGNAL_BASE:
        return f"killed by signal {status - SIGNAL_BASE}"
    if status < 0:
        return _NAMES.get(status, f"scheduler exit value {status}")
    return f"exit status {status}"


_NAMES = {
    JOB_EXEC_FAIL1: "job could not be started",
    JOB_EXEC_FAIL2: "job could not be started",
    JOB_EXEC_RERUN_MS_FAIL: "worker lost",
    JOB_EXEC_RERUN: "job rerun",
    JOB_EXEC_KILL_WALLTIME: "exceeded resource walltime",
    JOB_EXEC_KILL_MEM: "exceeded resource mem",
    JOB_EXEC_KILL_VMEM: "exceeded resource vmem",
    JOB_EXEC_KILL_CPUT: "exceeded resource cput",
    JOB_EXEC_KILL_NCPUS_SUM: "exceeded resource ncpus (sum)",
    JOB_EXEC_KILL_NCPUS_BURST: "exceeded resource ncpus (burst)",
}

"""The environment a job starts with, as PBS builds it (OpenPBS start_exec.c: finish_exec()).

Nothing of the worker's (or the daemon's) own environment: the definition's variables
(what PBS's pbs_environment file is to MoM), then HOME, USER, LOGNAME, SHELL, PATH, LANG
and TZ from the submitter (qsub sends them as PBS_O_*), then the job's Variable_List
(PBS_O_*, -v, -V), then what the scheduler sets: PBS_JOBID, PBS_JOBNAME, PBS_QUEUE,
PBS_ENVIRONMENT, PBS_NODEFILE, PBS_JOBDIR, TMPDIR, NCPUS, OMP_NUM_THREADS, CUDA_VISIBLE_DEVICES, the array's
PBS_ARRAY_INDEX/PBS_ARRAY_ID and HyperBatch's HYPER_* variables.
"""

from __future__ import annotations

from typing import Mapping

from hyperbatch.core.ids import display_id

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
DEFAULT_SHELL = "/bin/bash"


def _count(value, default: int = 1) -> int:
    try:
        return max(1, int(str(value)))
    except (TypeError, ValueError):
        return default


def threads(resources: Mapping) -> int:
    """NCPUS and OMP_NUM_THREADS: the chunk's ompthreads, else its ncpus (1 if none asked)."""
    return _count(resources.get("ompthreads") or resources.get("ncpus"))


def nodefile(resources: Mapping, host: str) -> str:
    """PBS_NODEFILE's text: the host's short name once per MPI rank (mpiprocs, default 1)."""
    short = host.split(".")[0] or "localhost"
    return f"{short}\n" * _count(resources.get("mpiprocs"))


def home_of(job: dict, fallback: str | None) -> str:
    """The submitter's home (PBS_O_HOME), else `fallback` (the worker's own user's)."""
    return (job.get("env") or {}).get("PBS_O_HOME") or fallback or "/"


def shell_of(job: dict) -> str:
    """The shell that runs a script without `#!` and that SHELL names: -S, else the submitter's."""
    return job.get("shell") or (job.get("env") or {}).get("PBS_O_SHELL") or DEFAULT_SHELL


def job_environment(job: dict, index: int | None, attempt: int, *, definition_env: Mapping[str, str],
                    host: str, nodefile_path: str, tmpdir: str, jobdir: str, home: str | None = None,
                    fallback_home: str | None = None, region: str = "", worker: str = "",
                    gpus: str | None = None) -> dict[str, str]:
    """The whole environment of one run of `job` (one task when `index` is given); `home` is the
    home directory as the worker found it (default: home_of(job, fallback_home)); `gpus` the GPUs
    the run was given, where the worker hands them out (CUDA_VISIBLE_DEVICES: exactly those, none
    when it was given none)."""
    variables = dict(job.get("env") or {})
    resources = job.get("resources") or {}
    env: dict[str, str] = dict(definition_env)
    user = variables.get("PBS_O_LOGNAME") or job.get("owner") or ""
    env.update(
        HOME=home or home_of(job, fallback_home),
        USER=user,
        LOGNAME=user,
        SHELL=shell_of(job),
        PATH=variables.get("PBS_O_PATH") or env.get("PATH") or DEFAULT_PATH,
    )
    for name in ("LANG", "TZ"):
        if variables.get(f"PBS_O_{name}"):
            env[name] = variables[f"PBS_O_{name}"]
    env.update(variables)
    count = str(threads(resources))
    env.update(
        PBS_JOBNAME=job["name"],
        PBS_QUEUE=job["queue"],
        PBS_ENVIRONMENT="PBS_BATCH",
        ENVIRONMENT="BATCH",
        PBS_NODEFILE=nodefile_path,
        PBS_NODENUM="0",
        PBS_TASKNUM="1",
        PBS_JOBDIR=jobdir,
        TMPDIR=tmpdir,
        NCPUS=count,
        OMP_NUM_THREADS=count,
        HYPER_JOB_NAME=job["name"],
        HYPER_ATTEMPT=str(attempt),
        HYPER_QUEUE=job["queue"],
        HYPER_OWNER=job.get("owner") or "",
        HYPER_DEFINITION=job.get("definition") or "",
        HYPER_REGION=region,
        HYPER_WORKER_ID=worker,
    )
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    if job.get("account"):
        env["PBS_ACCOUNT"] = job["account"]
    if job.get("array") is not None:
        env["PBS_ARRAY_ID"] = env["HYPER_ARRAY_ID"] = display_id(job)  # 1234[].server
    env.update(task_variables(job, index))
    return env


def task_variables(job: dict, index: int | None) -> dict[str, str]:
    """The variables of a run's environment that differ between the tasks of one array (a plain
    job's: its id), set last: all the rest is the same for every task, so a worker builds it once
    per chunk (hyperbatch.support.spawn)."""
    full_id = display_id(job, index)  # exactly what qsub printed: 1234.server, 1234[7].server
    if index is None:
        return {"PBS_JOBID": full_id, "HYPER_JOB_ID": full_id}
    return {"PBS_JOBID": full_id, "HYPER_JOB_ID": full_id, "PBS_ARRAY_INDEX": str(index),
            "HYPER_ARRAY_INDEX": str(index)}

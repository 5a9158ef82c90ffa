"""Signalling a process group, the one way jobs and workers are stopped; the job file that names it;
running jobs as their own user.

A worker's agent runs its jobs each in a process group of its own, one at a
time, in the session its start.sh leads. It keeps a small file (the job file,
`workers/<worker>.job` locally) that says which run it is running and in
which process group, so that a process other than the agent can stop that job
when the agent cannot: the agent's next start after a crash, and the local
daemon fencing a worker that went silent (hyperbatch.adapters.local.compute).
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

RECORD_BYTES = 96  # every record is written whole at offset 0, padded: a reader never sees a mix of two
STARTING = -1  # the record's pgid while the job is being started (its group is not known yet)


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to process group `pgid`; False if it is gone.

    Refuses 0 and 1: killpg(0) would signal the caller's own group, and 1 is init.
    """
    if pgid <= 1:
        return False
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_alive(pgid: int) -> bool:
    """Whether process group `pgid` still has a member (a job's processes that outlived its main one)."""
    if pgid <= 1:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # members that run as another user (the job user) are members all the same
    return True


def process_alive(pid: int) -> bool:
    """Whether our process `pid` lives: it exists, is ours to signal (else the pid was reused by someone
    else's process), and is not a zombie (an exited process nobody reaped yet: where PID 1 reaps no
    orphans, as in some containers, a worker of a daemon that died stays one for good)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc here: signal 0 is all there is to go by
    return state != "Z"


def started_with(pid: int, key: str, value: str) -> bool:
    """Whether process `pid` lives and was started with `key=value` in its environment.

    A pid is reused once its process is gone, so a pid alone does not say
    whose process it is now; the environment it started with does. Where
    /proc cannot show it (not Linux), a live process is taken at its word.
    """
    if not process_alive(pid):
        return False
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists() and process_alive(pid)
    except OSError:
        return True
    return f"{key}={value}".encode() in environ.split(b"\0")


@dataclass(frozen=True)
class JobRecord:
    """What a job file says: the process group of the job running now (0: none; STARTING: being
    started), and which run it belongs to (job id, work item id, attempt, array index)."""

    pgid: int
    job_id: str = ""
    item_id: str = ""
    attempt: int = 0
    index: int | None = None  # the array task running, if the run is a chunk

    def encode(self) -> bytes:
        return record_bytes(self.pgid, self.run_text())

    def run_text(self) -> str:
        """What the record says after the group: which run (and task) it is, or nothing."""
        if not self.job_id:
            return ""
        text = f" {self.job_id} {self.item_id} {self.attempt}"
        return text if self.index is None else f"{text} {self.index}"

    def names(self, job_id: str, item_id: str, attempt: int) -> bool:
        return (self.job_id, self.item_id, self.attempt) == (job_id, str(item_id), attempt)


def record_bytes(pgid: int, run_text: str = "") -> bytes:
    """A job file's record, as `JobRecord.encode` writes it, from the group and the run's part of it
    (`JobRecord.run_text`): a worker writes three per array task, so it makes the run's part once."""
    return f"{pgid}{run_text}".encode().ljust(RECORD_BYTES - 1)[: RECORD_BYTES - 1] + b"\n"


def read_job_record(path: Path) -> JobRecord | None:
    """The record in a job file; None if there is no file or it says nothing readable."""
    try:
        parts = Path(path).read_text().split()
        if len(parts) >= 4:
            index = int(parts[4]) if len(parts) >= 5 else None
            return JobRecord(int(parts[0]), parts[1], parts[2], int(parts[3]), index)
        return JobRecord(int(parts[0]))
    except (FileNotFoundError, ValueError, IndexError):
        return None


def signal_session_jobs(leader: int, sig: int) -> int:
    """Send `sig` to every process of session `leader` outside the leader's own process group.

    That is every job a worker started (each in a group of its own) and
    nothing of the worker itself (start.sh leads the session, its agent is in
    its group). Used when the job file cannot name the group: the agent was
    stopped between starting a job and writing it down. Linux only (it lists
    /proc); elsewhere it signals nothing. Returns how many were signalled.
    """
    if leader <= 1:
        return 0
    try:
        pids = [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    except FileNotFoundError:
        return 0
    signalled = 0
    for pid in pids:
        try:
            if os.getsid(pid) == leader and os.getpgid(pid) != leader:
                os.kill(pid, sig)
                signalled += 1
        except (ProcessLookupError, PermissionError):
            continue
    return signalled


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def group_rss(pgid: int) -> int:
    """Bytes resident in memory of every process of group `pgid`: what PBS MoM sums for `mem`
    (resi_sum). Linux only (it reads /proc/PID/stat); elsewhere 0."""
    total = 0
    try:
        pids = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except FileNotFoundError:
        return 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()  # after the command name, which may hold spaces
        except OSError:
            continue
        if len(fields) > 22 and int(fields[2]) == pgid:  # fields[2]: pgrp; fields[21]: rss in pages
            total += int(fields[21]) * PAGE_SIZE
    return total


# What sudo sets for the target user itself (-H sets HOME): never asked to preserve.
_SUDO_SETS = frozenset({"HOME", "USER", "LOGNAME", "SHELL", "MAIL", "USERNAME"})


class JobUser:
    """Starts and stops a job's processes as the job user (HYPER_JOB_USER), or as the caller when
    `name` is None.

    Why: the agent's user holds the worker's credentials and the scheduler's
    settings in its environment and files; a job run as another, unprivileged
    user can read neither (and on an EC2 fleet a firewall rule keeps that user
    from the instance metadata). How:

    - as root, Popen drops to the user (uid, gid, no supplementary groups)
      before exec, with the user's HOME, USER and LOGNAME;
    - otherwise through `sudo -n -u USER -H --preserve-env=NAMES -- ARGV`,
      which the worker image's sudoers allows the agent's user (as the job
      user only, with SETENV so the job's variables pass).

    Signals. Through sudo the job's process group is led by sudo, which runs
    as root: the agent may signal sudo (it forwards a TERM to the command
    only), but not the job user's processes. So a signal to the group goes
    out twice, as the agent (reaching sudo) and as the job user through
    `sudo -u USER kill -s SIG -- -PGID` (reaching every process of the job
    still in its group), which is what a plain process group kill reaches.
    """

    def __init__(self, name: str | None, *, as_root: bool | None = None, sudo: str = "sudo"):
        self.name = name or None
        self.as_root = os.geteuid() == 0 if as_root is None else as_root
        self.sudo = sudo
        self._account = pwd.getpwnam(self.name) if self.name and self.as_root else None

    def popen(self, argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str], dict]:
        """The argv, environment and extra Popen arguments that run `argv` with `env` as the job user."""
        if self.name is None:
            return argv, env, {}
        if self._account is not None:
            account = self._account
            env = {**env, "HOME": account.pw_dir, "USER": self.name, "LOGNAME": self.name}
            return argv, env, {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        kept = ",".join(sorted(name for name in env if name not in _SUDO_SETS))
        return [self.sudo, "-n", "-u", self.name, "-H", f"--preserve-env={kept}", "--", *argv], env, {}

    def share(self, path: Path) -> None:
        """Let the job user work in a directory (or read and run a file) the agent made."""
        if self.name is not None:
            os.chmod(path, 0o777 if path.is_dir() else 0o755)

    def signal(self, pgid: int, sig: int) -> bool:
        """Signal a job's process group (see the class docstring); False if nothing was there."""
        sent = signal_group(pgid, sig)
        if self.name is not None and self._account is None and pgid > 1:
            name = signal.Signals(sig).name.removeprefix("SIG")
            try:
                subprocess.run([self.sudo, "-n", "-u", self.name, "--", "kill", "-s", name, "--", f"-{pgid}"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=10, check=False)
            except (OSError, subprocess.TimeoutExpired):
                pass  # the signal to the group itself went out; the next escalation tries again
        return sent

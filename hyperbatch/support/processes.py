"""Signalling a process group, the one way jobs and workers are stopped; running jobs as their own user."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from pathlib import Path


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

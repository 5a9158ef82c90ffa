"""Local mode's home directory and the daemon's files in it: what the daemon writes, what `hyper local`
may believe.

$HYPERBATCH_HOME holds the database (scripts, -v values), the logs, the bearer token and daemon.json,
which tells `hyper local` where the daemon listens. Three rules keep those trustworthy:

1. The home is private. `check_home` refuses a home that another user owns or that other users may
   read, write or enter (any group or other permission bit): they could read the token and the
   jobs, or plant a daemon.json that makes `hyper local status` send the token to their own
   listener. It is refused rather than fixed: files may have been planted already, so the owner
   should look before running `chmod 700`. A home this code creates is 0700.
2. The daemon is proven, not guessed. The daemon holds an exclusive flock on `daemon.lock` for as
   long as it lives (the kernel drops it when the process ends, however it ends) and writes its pid
   there once it holds it. `lock_holder` answers None when no process holds the lock, so a stale
   daemon.json naming a pid that has since been recycled is never acted upon; when the lock is held,
   the pid in the lock file is the daemon's. Only that pid is ever signalled.
3. Damaged files say so. `read_state` validates daemon.json and raises DaemonFileError with one line
   (never a TypeError from a `null` pid), and deletes nothing: only a caller that has proven no
   daemon runs removes a stale file.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

LOCK_FILE = "daemon.lock"
STATE_FILE = "daemon.json"
TOKEN_FILE = "token"
_START_WINDOW = 0.2  # seconds: between taking the lock and writing its pid, a daemon's lock file is stale


class HomeError(Exception):
    """The home directory or one of the daemon's files cannot be trusted or used; the message says why
    and what to do, in one line."""


class DaemonFileError(HomeError):
    """daemon.json is there but damaged."""


def ensure_home(home: Path) -> Path:
    """Create the home (0700) if it is missing, then `check_home` it."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_home(home)
    return home


def check_home(home: Path) -> None:
    """Refuse a home that is not a directory of the current user's, or that others may use (rule 1)."""
    try:
        info = os.stat(home)
    except FileNotFoundError:
        return  # nothing to trust or distrust yet
    except OSError as exc:
        raise HomeError(f"HYPERBATCH_HOME {home} cannot be read ({exc.strerror})") from None
    if not stat.S_ISDIR(info.st_mode):
        raise HomeError(f"HYPERBATCH_HOME {home} is not a directory")
    if info.st_uid != os.getuid():
        raise HomeError(f"HYPERBATCH_HOME {home} belongs to another user (uid {info.st_uid}): "
                        f"use a directory of your own")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise HomeError(f"HYPERBATCH_HOME {home} is open to other users (mode {mode:04o}): they could read "
                        f"the token and the jobs, or plant files; check what is in it, then run chmod 700 {home}")


def take_lock(home: Path) -> int:
    """For the daemon: hold the home's lock for the life of this process and write our pid into it.

    Returns the lock's file descriptor (keep it open: closing it releases the lock; it is not
    inherited by children). HomeError if another process holds it: a daemon already serves this home.
    """
    fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise HomeError(f"a HyperBatch daemon already serves {home} (pid {_pid_in(home) or 'unknown'})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def lock_holder(home: Path, expected: int | None = None) -> int | None:
    """The pid of the daemon serving `home`, or None when no process holds its lock (rule 2).

    A daemon that has just taken the lock may not have written its pid yet, so a pid is believed
    when it is `expected` (daemon.json's, written after it), or else once it reads the same twice,
    `_START_WINDOW` apart, while the lock stays held.
    """
    try:
        fd = os.open(home / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: a daemon lives
        else:
            return None  # we got it: nobody holds it (closing our descriptor lets it go again)
        first = _pid_in(home)
        if first is not None and first == expected:
            return first
        time.sleep(_START_WINDOW)
        second = _pid_in(home)
        if first is None or first != second:
            raise HomeError(f"a HyperBatch daemon holds {home / LOCK_FILE} but has not written its pid: "
                            f"it may be starting; try again in a moment")
        return first
    finally:
        os.close(fd)


def read_state(home: Path) -> dict[str, Any] | None:
    """daemon.json, checked: {"pid": int, "url": "http://127.0.0.1:PORT", "port": int, "config_dir": str, ...};
    None if there is none; DaemonFileError if it is damaged (rule 3)."""
    path = home / STATE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DaemonFileError(f"{path} cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        state = json.loads(text)
    except ValueError:
        raise DaemonFileError(f"{path} is damaged (not JSON)") from None
    if not isinstance(state, dict):
        raise DaemonFileError(f"{path} is damaged (not a JSON object)")
    pid, port, url = state.get("pid"), state.get("port"), state.get("url")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        raise DaemonFileError(f"{path} is damaged (no valid pid)")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise DaemonFileError(f"{path} is damaged (no valid port)")
    if url != f"http://127.0.0.1:{port}":
        raise DaemonFileError(f"{path} is damaged (its url is not http://127.0.0.1:{port})")
    if not isinstance(state.get("config_dir"), str):
        raise DaemonFileError(f"{path} is damaged (no configuration directory)")
    return state


def _pid_in(home: Path) -> int | None:
    try:
        text = (home / LOCK_FILE).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 1 else None

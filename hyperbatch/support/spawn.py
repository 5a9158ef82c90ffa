"""Starting a job's process: what a tiny task costs most, so done with as little as possible around fork and exec.

subprocess.Popen (CPython 3.11 to 3.13) starts its child with vfork and exec,
which is cheap. What it does around them is not, next to a task that runs
`true`: on every call it encodes the whole environment again, opens /dev/null,
builds an object, and its child tries exec in every PATH directory in turn
until one holds the program (nine failed execs for `true` under a long PATH).
An array's tasks share all of that but a few variables, so `Program` does it
once per item: the environment block (`block`), the directories worth trying
(`executables`), /dev/null; `Program.start` then calls the helper Popen calls,
`_posixsubprocess.fork_exec`, with Popen's own arguments (vfork, signals
restored, every other descriptor closed, the process group, the umask, the
directory), and reads the child's exec-error pipe as Popen does, so a program
that cannot start raises the OSError Popen raises. Where that private helper's
arguments are not the ones known here (another Python), or the job drops to
another user (setuid rules out vfork anyway), Popen starts it.

os.posix_spawn would be as cheap but can neither change the directory nor set
the umask. Measured on the project's 2-core machine (2026-12-07, loaded, the
median of six interleaved rounds of 400 starts of `true`, each waited for):
Popen with a job's environment (65 variables), directory, process group and
umask 0.86 ms a start, `Popen(["true"])` (what bench/local_throughput.py's
spawn limit runs) 0.86 ms, this path 0.71 ms, os.posix_spawn 0.77 ms.
"""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
from typing import Any, Mapping

_fork_exec: Any = None  # private: called only with the arguments of KNOWN
try:
    import _posixsubprocess

    _fork_exec = _posixsubprocess.fork_exec
except ImportError:  # not POSIX
    pass

# The Pythons whose fork_exec takes the arguments below (the same as their subprocess.Popen passes).
KNOWN = ((3, 11), (3, 12), (3, 13))
FAST = _fork_exec is not None and sys.version_info[:2] in KNOWN and hasattr(subprocess, "_USE_VFORK")

_devnull: int | None = None


_ENCODING, _ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()  # os.fsencode's


def block(env: Mapping[str, str]) -> list[bytes]:
    """`env` as exec takes it (NAME=value, encoded as Popen encodes it: os.fsencode); a name with '='
    is refused as Popen refuses it. Each pair is encoded in one call: a task's own variables are
    encoded at each start."""
    out = []
    for name, value in env.items():
        if type(name) is not str or type(value) is not str:  # bytes, or what os.fsencode refuses as Popen does
            key = os.fsencode(name)
            if b"=" in key:
                raise ValueError("illegal environment variable name")
            out.append(key + b"=" + os.fsencode(value))
            continue
        if "=" in name:
            raise ValueError("illegal environment variable name")
        out.append(f"{name}={value}".encode(_ENCODING, _ERRORS))
    return out


def executables(program: str, env: Mapping[str, str]) -> tuple[bytes, ...]:
    """Where the child tries exec, as Popen would (`program` itself if it names a directory, else it
    in each of the environment's PATH directories), less the leading ones where it is not: those
    would only fail with ENOENT. Looked up once per item: a program that appears in an earlier
    PATH directory while the item runs is not seen until the next."""
    name = os.fsencode(program)
    if os.path.dirname(name):
        return (name,)
    candidates = [os.path.join(os.fsencode(d), name) for d in os.get_exec_path(dict(env))]
    while len(candidates) > 1 and not _present(candidates[0]):
        candidates.pop(0)
    return tuple(candidates)


def _present(path: bytes) -> bool:
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True  # exec may fail there with another reason, which the child reports as Popen's would
    return True


class Child:
    """A started process, as much of a Popen as the agent uses: its pid and, once waited for, its returncode."""

    __slots__ = ("pid", "returncode")

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None


class Program:
    """A command to start many times with one environment but a few variables (an array's tasks):
    in its own process group, in `cwd`, with `umask`, stdin from /dev/null. `user`: Popen's
    user/group/extra_groups, to run it as another user (then Popen starts it)."""

    def __init__(self, argv: list[str], env: Mapping[str, str], cwd: str, umask: int, user: Mapping | None = None):
        self.argv, self.env, self.cwd, self.umask, self.user = argv, env, cwd, umask, dict(user or {})
        self.fast = FAST and not self.user
        if self.fast:
            self.args = [os.fsencode(a) for a in argv]
            self.block = block(env)
            self.executables = executables(argv[0], env)

    def start(self, extra: Mapping[str, str], stdout: int, stderr: int) -> Child | subprocess.Popen:
        """Start it with `extra` added to its environment (names the environment given at creation
        does not hold), stdout and stderr to those descriptors."""
        if not self.fast:
            return subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=self.cwd,
                                    env={**self.env, **extra}, process_group=0, umask=self.umask, **self.user)
        env = self.block + block(extra)
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            try:
                pid = _fork_exec(self.args, self.executables, True, (write_end,), self.cwd, env,
                                 _null(), -1, -1, stdout, -1, stderr, read_end, write_end,
                                 True, False, 0, None, None, None, self.umask, None, subprocess._USE_VFORK)
            finally:
                os.close(write_end)
            error = bytearray()
            while True:  # empty once exec succeeded (the pipe closes on exec); else why it failed
                part = os.read(read_end, 50000)
                error += part
                if not part or len(error) > 50000:
                    break
        finally:
            os.close(read_end)
        if error:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            raise _child_error(bytes(error), self.argv[0], self.cwd)
        return Child(pid)


def _null() -> int:
    """One descriptor on /dev/null for every job's stdin (the child gets a copy of it as fd 0)."""
    global _devnull
    if _devnull is None:
        _devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _devnull


def _child_error(data: bytes, program: str, cwd: str) -> Exception:
    """The exception the child reported (`name:hex errno:message`), built as subprocess.Popen builds it."""
    try:
        name, hex_errno, raw = data.split(b":", 2)
        message = raw.decode()
    except ValueError:
        return subprocess.SubprocessError(f"Bad exception data from child: {data!r}")
    kind = getattr(builtins, name.decode("ascii"), subprocess.SubprocessError)
    if issubclass(kind, OSError) and hex_errno:
        number = int(hex_errno, 16)
        filename = cwd if message == "noexec" else program  # "noexec": exec was never tried: chdir failed
        if number:
            message = os.strerror(number)
        elif message == "noexec":
            message = ""
        return kind(number, message, filename)
    return kind(message)

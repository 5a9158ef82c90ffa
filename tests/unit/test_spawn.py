"""A job's process as hyperbatch.support.spawn starts it: what subprocess.Popen would have given it.

Both ways are run (`fast`: the helper Popen calls, with the environment encoded once; else Popen
itself, for other Pythons and other users), and each is held to the same facts: the environment
exactly, the directory, the umask, a process group of its own, stdin from /dev/null, the output
descriptors, nothing else inherited, and the errors Popen raises for a program that cannot start.
"""

from __future__ import annotations

import errno
import json
import os
import sys

import pytest

from hyperbatch.support import spawn

REPORT = """
import json, os, sys
mask = os.umask(0)
print(json.dumps({"env": dict(os.environ), "cwd": os.getcwd(), "umask": mask,
                  "own_group": os.getpgid(0) == os.getpid(), "stdin": sys.stdin.read(),
                  "fds": sorted(int(f) for f in os.listdir("/proc/self/fd"))}))
print("to stderr", file=sys.stderr)
"""


def run(program: spawn.Program, extra: dict, tmp_path) -> tuple[dict, str, int]:
    out = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    err = os.open(tmp_path / "err", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        child = program.start(extra, out, err)
        _, status, _ = os.wait4(child.pid, 0)
    finally:
        os.close(out)
        os.close(err)
    return json.loads((tmp_path / "out").read_text()), (tmp_path / "err").read_text(), os.waitstatus_to_exitcode(status)


@pytest.fixture(params=[True, False], ids=["fast", "popen"])
def fast(request, monkeypatch):
    if request.param and not spawn.FAST:
        pytest.fail(f"this Python ({sys.version_info[:2]}) should take the fast path: {spawn.KNOWN}")
    monkeypatch.setattr(spawn, "FAST", request.param)
    return request.param


def test_the_process_gets_its_environment_directory_umask_group_and_descriptors_only(fast, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "A": "one", "SPACED": "a b=c", "EMPTY": ""}
    program = spawn.Program([sys.executable, "-c", REPORT], env, str(work), 0o027)
    assert program.fast is fast
    leak = os.open(tmp_path / "leak", os.O_WRONLY | os.O_CREAT, 0o600)  # the agent's own: never the job's
    os.set_inheritable(leak, True)
    try:
        seen, stderr, code = run(program, {"PBS_ARRAY_INDEX": "7"}, tmp_path)
    finally:
        os.close(leak)
    assert code == 0 and stderr == "to stderr\n"
    assert seen["env"] == {**env, "PBS_ARRAY_INDEX": "7"}
    assert (seen["cwd"], seen["umask"], seen["own_group"], seen["stdin"]) == (str(work), 0o027, True, "")
    assert seen["fds"][:3] == [0, 1, 2] and leak not in seen["fds"]


def test_each_start_has_only_its_own_extra_variables(fast, tmp_path):
    program = spawn.Program([sys.executable, "-c", REPORT], {"PATH": os.environ["PATH"]}, str(tmp_path), 0o077)
    first, _, _ = run(program, {"PBS_ARRAY_INDEX": "1"}, tmp_path)
    second, _, _ = run(program, {"PBS_ARRAY_INDEX": "2"}, tmp_path)
    assert (first["env"]["PBS_ARRAY_INDEX"], second["env"]["PBS_ARRAY_INDEX"]) == ("1", "2")


def test_a_program_found_on_the_environments_path_runs(fast, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "hello-tool"
    tool.write_text("#!/bin/sh\necho hello from $0\n")
    tool.chmod(0o755)
    env = {"PATH": f"{tmp_path / 'nothing-here'}:{bin_dir}:/usr/bin:/bin"}
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        child = spawn.Program(["hello-tool"], env, str(tmp_path), 0o077).start({}, out, out)
        os.wait4(child.pid, 0)
    finally:
        os.close(out)
    assert (tmp_path / "out").read_text() == f"hello from {tool}\n"


def test_the_path_is_looked_through_once_skipping_directories_without_the_program(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "prog").write_text("")
    env = {"PATH": f"{tmp_path / 'a'}:{tmp_path / 'b'}:{tmp_path / 'c'}"}
    assert spawn.executables("prog", env) == (os.fsencode(tmp_path / "b" / "prog"), os.fsencode(tmp_path / "c" / "prog"))
    assert spawn.executables("./prog", env) == (b"./prog",)
    assert spawn.executables("missing", env) == (os.fsencode(tmp_path / "c" / "missing"),)  # the last: its error


@pytest.mark.parametrize("argv, cwd, kind, filename", [
    (["no-such-program-here"], None, FileNotFoundError, "no-such-program-here"),
    (["./not-executable"], None, PermissionError, "./not-executable"),
    (["true"], "/no/such/dir", FileNotFoundError, "/no/such/dir"),
])
def test_a_program_that_cannot_start_raises_what_popen_raises(fast, tmp_path, argv, cwd, kind, filename):
    (tmp_path / "not-executable").write_text("echo hi\n")
    program = spawn.Program(argv, {"PATH": "/usr/bin:/bin"}, cwd or str(tmp_path), 0o077)
    with pytest.raises(kind) as raised:
        program.start({}, 1, 2)
    assert raised.value.filename == filename
    assert raised.value.strerror == os.strerror(raised.value.errno)
    assert raised.value.errno in (errno.ENOENT, errno.EACCES)


@pytest.mark.parametrize("env, extra, words", [
    ({"A=B": "x"}, {}, "illegal environment variable name"),
    ({"A": "x\0y"}, {}, "embedded null byte"),
    ({}, {"B=C": "x"}, "illegal environment variable name"),
])
def test_an_environment_exec_cannot_take_is_refused_with_popens_words(fast, tmp_path, env, extra, words):
    with pytest.raises(ValueError, match=words):
        spawn.Program(["true"], {"PATH": "/usr/bin:/bin", **env}, str(tmp_path), 0o077).start(extra, 1, 2)

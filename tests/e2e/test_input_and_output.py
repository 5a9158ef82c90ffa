"""What goes in and what comes out, end to end (issue 9): output comes back byte for byte; input a
worker could not run is refused with one line; the commands say what they are waiting for."""

from __future__ import annotations

import json
import os
import random
import select
import subprocess
import urllib.error
import urllib.request

import pytest

from tests.e2e.conftest import BIN, one_line, task_id

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_input_and_output")]

RANDOM_BYTES = 3_000_026  # the size the issue saw come back as 2,498,322 bytes; three pages of the API's 1 MiB
SEED = 9


def qlog_bytes(hb, *args: str) -> subprocess.CompletedProcess:
    """`qlog ARGS` with stdout as bytes, as a file or a pipe gets them."""
    return subprocess.run([str(BIN / "qlog"), *args], env=hb.env, cwd=hb.workdir, capture_output=True, timeout=60)


def test_qlog_gives_back_random_bytes_exactly(hb):
    """Item 8: non-UTF-8 bytes were dropped or replaced, and the read offset drifted."""
    writer = f"import random, sys; sys.stdout.buffer.write(random.Random({SEED}).randbytes({RANDOM_BYTES}))"
    job_id = hb.submit("--", "python3", "-c", writer)
    hb.wait_state(job_id, "SUCCEEDED")
    out = qlog_bytes(hb, job_id)
    assert out.returncode == 0 and out.stderr == b""
    expected = random.Random(SEED).randbytes(RANDOM_BYTES)
    assert len(out.stdout) == RANDOM_BYTES
    assert out.stdout == expected


def test_qlog_of_an_array_task_keeps_a_cut_character_and_a_stray_byte(hb):
    script = hb.script("#!/bin/bash\nprintf 'caf\\xc3'; printf '\\xa9 \\xff%s\\n' \"$PBS_ARRAY_INDEX\"\n", "bytes.sh")
    job_id = hb.submit("-J", "1-2", script)
    hb.wait_state(job_id, "SUCCEEDED")
    out = qlog_bytes(hb, task_id(job_id, 2))
    assert (out.returncode, out.stdout) == (0, "café ".encode() + b"\xff2\n")



def test_an_arrays_output_is_exact_per_task_in_a_few_files_and_delivered_as_pbs_names_it(hb):
    """Item 6 of issue 11: two new log files per task left 2,000,000 files for a million tasks."""
    script = hb.script("#!/bin/bash\necho \"out $PBS_ARRAY_INDEX\"\n"
                       "if [ \"$PBS_ARRAY_INDEX\" = 4 ]; then echo \"err 4\" >&2; fi\n", "packed.sh")
    job_id = hb.submit("-J", "1-120", script)
    hb.wait_state(job_id, "SUCCEEDED")
    assert qlog_bytes(hb, task_id(job_id, 7)).stdout == b"out 7\n"
    assert qlog_bytes(hb, "-e", task_id(job_id, 4)).stdout == b"err 4\n"
    assert qlog_bytes(hb, "-e", task_id(job_id, 7)).stdout == b""
    seq = job_id.split(".")[0].rstrip("[]")
    assert (hb.workdir / f"packed.sh.o{seq}.7").read_bytes() == b"out 7\n"
    assert (hb.workdir / f"packed.sh.e{seq}.4").read_bytes() == b"err 4\n"
    assert (hb.workdir / f"packed.sh.e{seq}.7").read_bytes() == b""
    kept = [p for p in (hb.home / "logs" / seq).rglob("*") if p.is_file()]
    assert 1 <= len(kept) <= 4  # a pack per worker that ran tasks of it, not 240 files

def _post(hb, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(hb.url + "/jobs", data=body, method="POST", headers={
        "Authorization": f"Bearer {hb.token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize("body, field", [
    ({"command": ["true"], "env": {"A": "x\0y"}}, "env"),
    ({"command": ["true"], "env": {"A=B": "x"}}, "env"),
    ({"command": ["echo", "a\0b"]}, "command"),
    ({"command": ["true"], "workdir": "/a\0b"}, "workdir"),
    ({"command": ["true"], "walltime": 10**400}, "walltime"),
])
def test_input_that_killed_workers_is_refused_and_nothing_runs(hb, body, field):
    """Item 6: the API answered 201, the worker crashed in a loop, and the job ended FAILED "worker lost"."""
    before = {j["id"] for j in hb.jobs()}
    status, answer = _post(hb, json.dumps(body).encode())
    assert status == 400 and answer["message"].startswith(f"{field}: "), answer
    assert {j["id"] for j in hb.jobs()} == before


def test_deeply_nested_json_is_a_400_not_a_500(hb):
    """Item 7: a RecursionError in the API was an HTTP 500."""
    status, answer = _post(hb, b"[" * 50_000 + b"]" * 50_000)
    assert status == 400 and "nests" in answer["message"], answer


def test_qsub_with_an_empty_array_range_is_refused(hb):
    """Item 11: `qsub -J ""` exited 0 and submitted a plain job."""
    before = {j["id"] for j in hb.jobs()}
    proc = hb.run("qsub", "-J", "", "--", "true", check=False)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert one_line(proc.stderr) == "qsub: option -J needs a value"
    assert {j["id"] for j in hb.jobs()} == before


def test_qsub_of_a_fifo_is_refused_at_once(hb):
    """Item 11: `qsub FIFO` hung."""
    os.mkfifo(hb.workdir / "a-fifo")
    proc = hb.run("qsub", "a-fifo", check=False, timeout=15)
    assert proc.returncode == 2
    assert one_line(proc.stderr) == "qsub: script a-fifo is a FIFO, not a file; to submit what it gives, use qsub < a-fifo"


def test_qlog_follow_of_a_held_job_says_it_is_held(hb):
    """Item 11: `qlog -f` on a held job waited without a word."""
    job_id = hb.submit("-h", "--", "echo", "released")
    follower = hb.popen("qlog", "-f", job_id)
    try:
        ready, _, _ = select.select([follower.stderr], [], [], 30)  # said at once, while the job is held
        assert ready, "qlog -f said nothing about the held job"
        line = follower.stderr.readline()
        assert line == f"qlog: {job_id} is held: it starts once released with qrls; waiting for its output " \
                       "(Ctrl-C stops waiting)\n"
        hb.run("qrls", job_id)
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert (follower.returncode, out, err) == (0, "released\n", "")

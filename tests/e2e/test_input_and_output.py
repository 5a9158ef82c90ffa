"""What goes in and what comes out, end to end (issue 9): output comes back byte for byte; input a
worker could not run is refused with one line; the commands say what they are waiting for."""

from __future__ import annotations

import random
import subprocess

import pytest

from tests.e2e.conftest import BIN

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
    out = qlog_bytes(hb, f"{job_id}[2]")
    assert (out.returncode, out.stdout) == (0, "café ".encode() + b"\xff2\n")

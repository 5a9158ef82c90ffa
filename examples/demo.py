"""`make demo`: start local mode, submit the example jobs with the real commands, show them finish, stop.

Uses a fresh state directory so it never touches ~/.hyperbatch, and submits from a
scratch copy of examples/ and configurations/ inside it, so the jobs' output files
(NAME.oSEQ, NAME.eSEQ, written where a job was submitted, as PBS does) stay out of the
checkout; prints each command before running it, so the output reads like a terminal session.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = {"cwd": ROOT}  # where the commands run: the scratch directory, once main() has made it
BIN = Path(sys.executable).parent
FINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


def run(*args: str, quiet: bool = False, check: bool = True) -> str:
    if not quiet:
        print(f"\n$ {shlex.join(args)}", flush=True)
    proc = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=HERE["cwd"], capture_output=True, text=True)
    if not quiet:
        sys.stdout.write(proc.stdout)
        sys.stdout.write(proc.stderr)
        sys.stdout.flush()
    if check and proc.returncode != 0:
        raise SystemExit(f"demo: `{' '.join(args)}` failed with exit code {proc.returncode}")
    return proc.stdout.strip()


def wait_all(ids: list[str], timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs = json.loads(run("qstat", "-x", "--json", *ids, quiet=True))
        if all(j["state"] in FINAL for j in jobs):
            return
        time.sleep(0.5)
    raise SystemExit("demo: jobs did not finish in time")


def main() -> int:
    home = tempfile.mkdtemp(prefix="hyperbatch-demo-")
    os.environ["HYPERBATCH_HOME"] = home
    os.environ.pop("HYPERBATCH_HOST", None)
    print(f"HyperBatch demo: local mode with its state in {home}")
    submit_dir = Path(home) / "submit"
    for folder in ("examples", "configurations"):
        shutil.copytree(ROOT / folder, submit_dir / folder)
    HERE["cwd"] = submit_dir
    run("hyper", "local", "up", "--port", "0", "--config", "configurations")
    try:
        hello = run("qsub", "examples/hello.sh")
        squares = run("qsub", "examples/squares.sh")
        prepare = run("qsub", "examples/prepare.sh")
        analyze = run("qsub", "-W", f"depend=afterok:{prepare}", "examples/analyze.sh")
        flaky = run("qsub", "examples/flaky.sh")
        broken = run("qsub", "examples/broken.sh")
        west = run("qsub", "-q", "west", "-N", "in-the-west", "--", "bash", "-c", "echo ran in region ${HYPER_REGION:-?}")
        run("qstat")
        wait_all([hello, squares, prepare, analyze, flaky, broken, west])
        run("qstat", "-x")
        run("qlog", hello)
        run("qstat", "-x", "-t", squares)
        run("qlog", squares.replace("[]", "[7]"))  # one task of the array: 2[7].server
        run("qlog", analyze)
        run("qstat", "-x", "-f", flaky)
        run("qstat", "-x", "-f", broken)
        run("qlog", "-e", broken)
        run("qlog", west)
        run("qsub", "--wait", "-N", "waited", "--", "echo", "qsub --wait returns the job's exit status")
        run("hyper", "local", "status")
        files = sorted(p.name for p in submit_dir.iterdir() if p.is_file())
        print(f"\nOutput files written where the jobs were submitted ({submit_dir}):\n  " + "  ".join(files))
    finally:
        run("hyper", "local", "down", check=False)
    print("\nDemo finished: every job above reached a final state.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

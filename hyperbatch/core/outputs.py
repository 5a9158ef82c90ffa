"""Where a job's standard output and error end up, as PBS names them.

By default `NAME.oSEQ` and `NAME.eSEQ` in the submit directory (an array task's
`NAME.oSEQ.INDEX`), written when the run ends; `-o`/`-e` name other files (a
directory: `JOBID.OU`/`JOBID.ER` inside it; `^array_index^` becomes the task's
index), `-j oe` sends both streams to the output file, `-k o/e` keeps a stream
in the home directory instead, `-R o/e` removes it. `qlog` shows the same
streams live from the log store.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

from hyperbatch.core.ids import display_id

ARRAY_INDEX = "^array_index^"


@lru_cache(maxsize=64)  # asked once per array task, of a few jobs
def sequence(job_id: str) -> str:
    """SEQ in NAME.oSEQ: the sequence number of a job's id (`123`, or `123` of `123.server` or
    `123[].server`). The one place output names take the sequence from."""
    match = re.match(r"([0-9]+)(?:\[[0-9]*\])?(?:\.|$)", job_id)
    return match.group(1) if match else job_id


def streams(join: str | None) -> tuple[str, ...]:
    """The streams that get a file of their own: -j oe puts stderr into the output file."""
    if join == "oe":
        return ("stdout",)
    if join == "eo":
        return ("stderr",)
    return ("stdout", "stderr")


def destinations(job: dict, index: int | None, home: str | None) -> list[tuple[str, str]]:
    """(stream, path) for each file to write when a run of `job` (task `index`) ends; `home` is
    the directory `-k` keeps files in. A job without a submit directory and without -o/-e (one
    submitted over the API) gets none: its output stays in the log store."""
    name = os.path.basename(job.get("name") or "STDIN")
    suffix = f".{index}" if index is not None else ""
    seq = sequence(job["id"])
    keep = job.get("keep") or "n"
    remove = job.get("remove_files") or ""
    out = []
    for stream in streams(job.get("join")):
        letter = "o" if stream == "stdout" else "e"
        if letter in remove:
            continue
        default = f"{name}.{letter}{seq}{suffix}"
        if letter in keep and "d" not in keep:
            if home:
                out.append((stream, os.path.join(home, default)))
            continue
        given = job.get("output_path" if letter == "o" else "error_path")
        if given:
            path = given.replace(ARRAY_INDEX, str(index) if index is not None else "")
            if path.endswith("/"):
                path += f"{display_id(job, index)}.{'OU' if letter == 'o' else 'ER'}"
        elif job.get("workdir"):
            path = os.path.join(job["workdir"], default)
        else:
            continue
        out.append((stream, path))
    return out


@lru_cache(maxsize=64)
def file_mode(umask: str | None) -> int:
    """Permissions of a delivered file: 0666 less the job's umask (077 unless -W umask, as PBS)."""
    return 0o666 & ~int(umask or "077", 8)

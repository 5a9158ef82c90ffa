"""LogStore on files under $HYPERBATCH_HOME/logs: the child writes straight into them, so output is live.

A read returns the file's bytes as they are, from a byte offset: output that is not UTF-8
(binary, or a multi-byte character cut by a read) comes back exactly as the job wrote it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class FileSink:
    def __init__(self, out: Path, err: Path):
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC  # a new attempt replaces the last one's output, as PBS does
        self.stdout = os.open(out, flags, 0o644)
        try:
            self.stderr = os.open(err, flags, 0o644)
        except OSError:
            os.close(self.stdout)
            raise

    def close(self) -> None:
        os.close(self.stdout)
        os.close(self.stderr)


class FileLogStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._made: set[str] = set()  # job folders this process created already (one mkdir per job, not per task)

    def _path(self, job_id: str, index: int | None, stream: str) -> Path:
        return self.root / job_id / f"{'job' if index is None else index}.{stream}"

    def sink(self, job_id: str, index: int | None, attempt: int) -> FileSink:
        if job_id not in self._made:
            (self.root / job_id).mkdir(parents=True, exist_ok=True)
            self._made.add(job_id)
        return FileSink(self._path(job_id, index, "stdout"), self._path(job_id, index, "stderr"))

    def deliver(self, job_id: str, index: int | None, stream: str, path: str, mode: int) -> None:
        """Write a finished run's stream to `path` (its output file in the submit directory): the whole
        file replaced, created with `mode` (an empty stream still makes its file, as PBS does)."""
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as dst:
            try:
                with open(self._path(job_id, index, stream), "rb") as src:
                    shutil.copyfileobj(src, dst)
            except FileNotFoundError:
                pass

    def read(self, job_id: str, index: int | None, stream: str, offset: int, limit: int) -> tuple[bytes, int]:
        try:
            with open(self._path(job_id, index, stream), "rb") as f:
                f.seek(offset)
                data = f.read(limit)
        except FileNotFoundError:
            return b"", offset
        return data, offset + len(data)

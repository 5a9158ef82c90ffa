"""LogStore on files under $HYPERBATCH_HOME/logs: the child writes straight into them, so output is live."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class FileSink:
    def __init__(self, out: Path, err: Path):
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC  # a new attempt replaces the last one's output, as PBS does
        self.stdout = os.open(out, flags, 0o644)
        self.stderr = os.open(err, flags, 0o644)

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

    def read(self, job_id: str, index: int | None, stream: str, offset: int, limit: int) -> tuple[str, int]:
        try:
            with open(self._path(job_id, index, stream), "rb") as f:
                f.seek(offset)
                data = f.read(limit)
        except FileNotFoundError:
            return "", offset
        # Stop before a multi-byte character cut in half; the next read starts there.
        text = data.decode("utf-8", errors="ignore") if not _cut(data) else data[: _cut(data)].decode("utf-8", "replace")
        return text, offset + len(text.encode("utf-8"))


def _cut(data: bytes) -> int:
    """Length of `data` without a trailing incomplete UTF-8 sequence (0 if it is complete)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # continuation byte: keep looking for the lead byte
        need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
        return len(data) - back if need > back else 0
    return 0

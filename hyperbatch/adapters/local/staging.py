"""Local mode's Stager (hyperbatch.core.ports): files staged in and out on this machine.

The worker runs where the job was submitted, so a pair's HOST must be this machine (localhost or
its own name); any other host, and S3, it cannot reach, and it says so in the job's comment. What
the pairs mean, and PBS's rules for failures, are hyperbatch.core.staging's.
"""

from __future__ import annotations

import socket
from pathlib import Path

from hyperbatch.core import staging
from hyperbatch.core.staging import Stage
from hyperbatch.support import stage_files
from hyperbatch.support.stage_files import Destination, RunStager


class Unreachable(Exception):
    """A pair names a place this machine cannot copy from or to."""


class LocalStager(RunStager):
    """Copies (or links, or moves) files between the job's directory and this machine's paths.

    It remembers, for each run it staged in, what it created, so that after the run it removes
    those and only those: a file or directory that was already in the job's directory is
    replaced by the staged one (as PBS does) but never removed.
    """

    def __init__(self, host: str | None = None):
        super().__init__()
        self.host = host or socket.gethostname()

    def _fetch(self, stage: Stage, target: Path) -> int:
        return stage_files.place(Path(self._reachable(stage)), target)

    def _unusable(self, stage: Stage) -> str | None:
        try:
            self._reachable(stage)
        except Unreachable as exc:
            return str(exc)
        return None

    def _destination(self, job: dict, index: int | None, stage: Stage, path: Path, name: str,
                     several: bool) -> Destination:
        to = Path(stage_files.target(stage.path, path.name, several))

        def send() -> int:
            if stage_files.same_file(path, to):
                return stage_files.size_of(path)  # staged out onto itself: nothing to copy or remove
            return stage_files.move(path, to)

        return Destination(str(to), f"{stage.host}:{to}", send)

    def _reachable(self, stage: Stage) -> str:
        """The pair's path on this machine; Unreachable for S3 or another host."""
        if stage.is_s3:
            raise Unreachable("local mode stages files on this machine only; s3:// needs a deployment on AWS")
        host = stage.host or ""
        if not staging.same_host(host, self.host):
            raise Unreachable(f"host '{host}' is not this machine ({self.host}); local mode stages files "
                              "on this machine only")
        return stage.path


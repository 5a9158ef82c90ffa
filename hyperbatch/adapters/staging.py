"""What every Stager (hyperbatch.core.ports) does the same way, whichever platform moves the bytes.

Stage-in copies pair after pair into the run's directory and stops at the first that fails,
removing what it had copied (PBS); each run's stager remembers what its stage-in created, so that
after the run those files, and only those, are removed: a file that was already in the job's
directory is replaced by the staged one, as PBS does, but never removed. A platform's stager says
only how one pair's source reaches its target (`_fetch`) and how files leave (`stage_out`).
"""

from __future__ import annotations

from pathlib import Path

from hyperbatch.core import staging
from hyperbatch.core.ports import Staged, StagedFile
from hyperbatch.core.staging import Stage
from hyperbatch.support import stage_files


class RunStager:
    def __init__(self) -> None:
        self._created: dict[tuple[str, int | None], list[Path]] = {}  # what each run's stage-in made

    def _fetch(self, stage: Stage, target: Path) -> int:
        """Put the pair's source at `target`; the bytes it brought. Raises whatever stops it."""
        raise NotImplementedError

    def stage_in(self, job: dict, index: int | None, directory: Path) -> Staged:
        created: list[Path] = []
        files: list[StagedFile] = []
        self._created[(job["id"], index)] = created
        for stage in staging.stages(job, staging.STAGEIN, index):
            target = directory / stage.local.rstrip("/")
            try:
                existed = target.exists() or target.is_symlink()
                size = self._fetch(stage, target)
            except Exception as exc:  # any of them (boto's are no OSError): the job must not run
                for path in reversed(created):
                    stage_files.remove(path)
                self._created.pop((job["id"], index), None)
                return Staged(tuple(files), (f"{stage.text()}: {why(exc)}",))
            if not existed:
                created.append(target)
            files.append(StagedFile(stage.local, stage.remote, size))
        return Staged(tuple(files))

    def _remove_staged_in(self, job: dict, index: int | None) -> None:
        """After the run: the files its stage-in created, as PBS removes them after the job."""
        for path in self._created.pop((job["id"], index), []):
            stage_files.remove(path)


def why(exc: Exception) -> str:
    """An OS error's own words; else the exception's message."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__

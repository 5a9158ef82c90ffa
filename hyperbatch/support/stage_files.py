"""The file work of staging on one machine: what a stage-out pattern matches in a job's directory,
where each match goes, and copying, linking or moving files and directories into place.

The rules of staging are hyperbatch.core.staging's; this module only touches files, so that every
stager (local mode's, and a worker's own directory on AWS) finds and names files the same way.

`RunStager` is what every stager does the same way, whichever platform moves the bytes: stage-in
copies pair after pair into the run's directory and stops at the first that fails, removing what it
had copied (PBS); it remembers what each run's stage-in created, so that after the run those files,
and only those, are removed (a file already in the job's directory is replaced by the staged one, as
PBS does, but never removed). Stage-out is shared too: each pair's pattern is matched in the job's directory (a
pair that matches nothing is named in the failures), and every match is sent on its own, so that
one that cannot go stays where the job left it and does not stop the others (PBS). A platform's
stager says only how one pair's source reaches its target (`_fetch`), whether a stage-out pair can
go at all (`_unusable`) and where and how one matched file goes (`_destination`).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, NamedTuple

from hyperbatch.core import staging
from hyperbatch.core.errors import why
from hyperbatch.core.ports import Staged, StagedFile
from hyperbatch.core.staging import Stage


def matches(directory: Path, pattern: str) -> list[Path]:
    """What `pattern` (a path or glob relative to `directory`) names there, sorted; [] for nothing.
    Hidden files match a wildcard only when the pattern says so, as in a shell."""
    if not glob.has_magic(pattern):
        path = directory / pattern
        return [path] if path.exists() or path.is_symlink() else []
    return sorted(Path(p) for p in glob.glob(os.path.join(glob.escape(str(directory)), pattern)))


def is_pattern(pattern: str) -> bool:
    """Whether a stage-out's path is a glob (its destination is then a directory)."""
    return glob.has_magic(pattern)


def target(dest: str, name: str, several: bool) -> str:
    """Where a file `name` staged out to `dest` lands: inside `dest` when it names a directory (it
    ends in '/', is one already, or a pattern may match several files), else `dest` itself."""
    if several or dest.endswith("/") or os.path.isdir(dest):
        return os.path.join(dest, name)
    return dest


def size_of(path: Path) -> int:
    """Bytes in a file, or in every file under a directory (links not followed)."""
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())


def place(src: Path, dest: Path) -> int:
    """Copy a file or directory from `src` to `dest` (made, with its parents; replaced if there),
    hard-linking files that nothing can write through the link (read-only to all) when both sides
    are on one filesystem; returns the bytes placed. A file appears whole or not at all."""
    _make_parent(dest)
    if src.is_dir():
        shutil.copytree(src, dest, symlinks=True, copy_function=_link_or_copy, dirs_exist_ok=True)
    else:
        _link_or_copy(str(src), str(dest))
    return size_of(dest)


def move(src: Path, dest: Path) -> int:
    """Move a file or directory to `dest` (made, with its parents; a file there is replaced): a
    rename on one filesystem, else a copy and then the removal of `src`; returns the bytes moved."""
    _make_parent(dest)
    size = size_of(src)
    try:
        if not (src.is_dir() and dest.exists()):
            os.replace(src, dest)
            return size
    except OSError as exc:
        if exc.errno != errno.EXDEV:  # another filesystem: copied below
            raise
    if src.is_dir():
        shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
    else:
        _copy(str(src), str(dest))
    remove(src)
    return size


def remove(path: Path) -> None:
    """Remove a file or directory; nothing if it is gone."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _make_parent(dest: Path) -> None:
    """`dest`'s directory, made with its parents; a file in the way is 'Not a directory'."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(dest.parent)) from None


def _link_or_copy(src: str, dest: str) -> str:
    """A hard link when the file is read-only to all and on dest's filesystem, else a copy: a job
    writing into a linked file in place would change the original."""
    info = os.stat(src)
    if not info.st_mode & 0o222 and info.st_dev == os.stat(os.path.dirname(dest) or ".").st_dev:
        tmp = f"{dest}.{os.getpid()}.link"
        try:
            os.link(src, tmp)
            os.replace(tmp, dest)
            return dest
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    _copy(src, dest)
    return dest


def _copy(src: str, dest: str) -> None:
    """Copy a file beside `dest`, then rename it into place: readers never see half of it."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest) or ".", prefix=f".{os.path.basename(dest)}.")
    os.close(fd)
    try:
        shutil.copy2(src, tmp, follow_symlinks=True)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Destination(NamedTuple):
    """Where one stage-out file goes: `dest`, recorded in `stageout_files`; `shown`, how a failure
    names it (PBS's LOCAL@HOST:PATH); `send`, which moves it there and returns its bytes."""

    dest: str
    shown: str
    send: Callable[[], int]


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
                    remove(path)
                self._created.pop((job["id"], index), None)
                return Staged(tuple(files), (f"{stage.text()}: {why(exc)}",))
            if not existed:
                created.append(target)
            files.append(StagedFile(stage.local, stage.remote, size))
        return Staged(tuple(files))

    def _unusable(self, stage: Stage) -> str | None:
        """Why no file of this stage-out pair can go (a place this platform cannot reach); None: it can."""
        return None

    def _destination(self, job: dict, index: int | None, stage: Stage, path: Path, name: str,
                     several: bool) -> Destination:
        """Where the matched file `path` (`name` in the job's directory) of this pair goes, and how
        (`several`: the pattern may match more than one)."""
        raise NotImplementedError

    def stage_out(self, job: dict, index: int | None, directory: Path) -> Staged:
        files: list[StagedFile] = []
        failures: list[str] = []
        for stage in staging.stages(job, staging.STAGEOUT, index):
            unusable = self._unusable(stage)
            if unusable:
                failures.append(f"{stage.text()}: {unusable}")
                continue
            found = matches(directory, stage.local)
            if not found:
                failures.append(f"{stage.text()}: no such file in the job's directory")
                continue
            several = is_pattern(stage.local)
            for path in found:
                name = path.relative_to(directory).as_posix()
                out = self._destination(job, index, stage, path, name, several)
                try:
                    size = out.send()
                except Exception as exc:  # a failure names its file, which stays; the others still go (PBS)
                    failures.append(f"{name}@{out.shown}: {why(exc)}")
                    continue
                files.append(StagedFile(name, out.dest, size))
        self._remove_staged_in(job, index)  # the files staged in, as PBS removes them after the job
        return Staged(tuple(files), tuple(failures))

    def _remove_staged_in(self, job: dict, index: int | None) -> None:
        """After the run: the files its stage-in created, as PBS removes them after the job."""
        for path in self._created.pop((job["id"], index), []):
            remove(path)


"""LogStore on files under $HYPERBATCH_HOME/logs: runs' output packed per job, a few files per job, not two per task.

A running job writes straight into a spool (live output, no copy while it runs);
when the run ends its output is appended to a pack with a header that says
whose it is. A million-task array that prints leaves a few hundred files, one
that prints nothing leaves none, and a job's output is its directory: deleting
it removes a handful of files, not two per task.

    logs/.runs/<slot>.stdout, <slot>.stderr   the spool: the output of the run a writer runs now
    logs/.runs/<slot>.now                     which run that is (a generation, job, index, attempt, start)
    logs/<job>/<bucket>.<slot>.pack           finished runs' output: records (header + bytes), appended
    logs/<job>/<bucket>.<slot>.<n>.<stream>   an output of more than BIG bytes: the spool, linked in whole

A slot is one writer: an agent process's (`<pid>.<n>`, n counting sinks open at
once in one process, as in-process tests run several agents). A bucket is
`job` for a plain job, else the array index // BUCKET: a read scans one
bucket's packs, never the whole array's.

Why a spool and not the pack itself: a run owns its output file whole, as it
does under PBS. A job may truncate or reopen it (`echo x > /dev/stderr` opens
the file again with O_TRUNC), which in a shared pack would destroy the output
of the runs before it. The spool is the same two files for every run of a
slot, emptied when the next run starts if the last one wrote (no new file); only a
run whose processes outlive it (its process group still has members when it
ends) gets fresh spool files for the next run, so a leftover background
process never writes into another run's output.

Records. A run that printed gets one record per stream it wrote; a run that
printed nothing gets none (it costs no write at all), except a retry (attempt
> 1), which writes an empty stdout record so that it hides the earlier
attempt's output, as the AWS adapter does with its streams. A read shows the
latest run of the task: the live run of a writer whose process lives, else the
packed run with the highest (attempt, start). A run that did not run to its
end for the run's sake (its worker stopped it, or its lease was lost:
`close(kept=False)`) is not packed: it has no result, and its rerun's output
replaces it. A run whose writer died mid-run (SIGKILL) is lost, and its output
with it: a read shows the task's packed run before it, if there is one.

A read of a live run checks the generation in the `.now` file before and after
it reads the spool: the writer packs a finished run before it moves the
generation on and empties the spool only after that, so bytes read between two
equal generations are the live run's.

Output written before this layout (one file per task and stream,
`logs/<job>/<index|job>.<stream>`) is still read.
"""

from __future__ import annotations

import errno
import itertools
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hyperbatch.support.processes import process_alive

STREAMS = ("stdout", "stderr")
BUCKET = 4096  # array indices per pack file: a read of one task scans at most this many tasks' records
BIG = 1 << 20  # an output larger than this keeps a file of its own (linked in whole), rather than a copy in a pack
RUNS = ".runs"
NOW_BYTES = 128  # the .now record, written whole at offset 0
COPY = 1 << 20
RECENT = 16384  # finished runs whose outputs' places a store remembers (a chunk is at most 10,000 tasks)

# A record: magic, index (-1: a plain job), start (ns), attempt, stream (0 stdout, 1 stderr), flags, length.
HEADER = struct.Struct("<4sqqIBBQ")
MAGIC = b"HBo1"
EXTERNAL = 1  # the record's bytes are the name of a file, in the job's folder, that holds the output
_SLOTS = itertools.count(1)  # slot numbers, unique in the process whatever the number of stores


def bucket_of(index: int | None) -> str:
    return "job" if index is None else str(index // BUCKET)


@dataclass
class _Run:
    job_id: str
    index: int | None
    attempt: int
    started: int  # ns, wall clock: orders the runs of one task


class _Slot:
    """One writer's spool, `.now` file and open pack: reused run after run."""

    def __init__(self, root: Path, name: str):
        self.root, self.name = root, name
        self.runs = root / RUNS
        self.gen = 0
        self.fds: dict[str, int] = {}
        self.written = set(STREAMS)  # spool files that may hold bytes (only those are emptied for the next run)
        self.lingering = False  # the last run's processes may still hold the spool
        self.external = 0  # outputs linked out of the spool so far (their names)
        self.pack: tuple[str, str, int] | None = None  # (job, bucket, fd) of the pack open for appends
        self.now = os.open(self.runs / f"{name}.now", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self._open_spool()
        self.run: _Run | None = None
        self.last: tuple[str, int | None] | None = None  # the run packed last: (job, index)
        self.outputs: dict[str, tuple[str, int, int]] = {}  # its outputs: stream -> (file, start, length)

    def _open_spool(self) -> None:
        for stream in STREAMS:
            path = self.runs / f"{self.name}.{stream}"
            if stream in self.fds:
                os.close(self.fds[stream])
                os.unlink(path)  # whoever still holds the old file writes into nothing anyone reads
            self.fds[stream] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.written = set()

    def _mark(self, run: _Run | None) -> None:
        self.gen += 1
        if run is None:
            text = f"{self.gen} -"
        else:
            index = "-" if run.index is None else run.index
            text = f"{self.gen} {run.started} {run.attempt} {index} {run.job_id}"
        os.pwrite(self.now, text.encode().ljust(NOW_BYTES - 1) + b"\n", 0)

    def begin(self, job_id: str, index: int | None, attempt: int) -> None:
        if self.lingering:
            self._open_spool()
            self.lingering = False
        else:
            for stream, fd in self.fds.items():
                if stream in self.written:
                    os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
            self.written = set()
        self.run = _Run(job_id, index, attempt, time.time_ns())
        self._mark(self.run)

    def end(self, kept: bool, lingering: bool) -> None:
        run, self.run = self.run, None
        self.last, self.outputs = None, {}
        self.written = set(STREAMS)  # unless packing finds out
        try:
            if run is not None and kept:
                self._pack(run)
                self.last = (run.job_id, run.index)
        finally:
            self._mark(None)
            self.lingering = self.lingering or lingering

    def _pack(self, run: _Run) -> None:
        """Append the run's outputs to its bucket's pack (a retry's empty stdout too: it hides the last attempt's)."""
        index = -1 if run.index is None else run.index
        sizes = {stream: os.fstat(fd).st_size for stream, fd in self.fds.items()}
        self.written = {stream for stream, size in sizes.items() if size}
        for code, stream in enumerate(STREAMS):
            fd, size = self.fds[stream], sizes[stream]
            if not size and not (stream == "stdout" and run.attempt > 1):
                continue
            folder = self.root / run.job_id
            pack = self._pack_fd(run.job_id, bucket_of(run.index))
            if size > BIG:  # its own file: a link to the spool, which the next run replaces rather than empties
                self.external += 1
                name = f"{bucket_of(run.index)}.{self.name}.{self.external}.{stream}"
                os.link(self.runs / f"{self.name}.{stream}", folder / name)
                self.lingering = True
                data, flags = name.encode(), EXTERNAL
                self.outputs[stream] = (str(folder / name), 0, size)
            else:
                data, flags = os.pread(fd, size, 0), 0
                if len(data) != size:  # the job cut its file while we read: take what is there
                    size = len(data)
            header = HEADER.pack(MAGIC, index, run.started, run.attempt, code, flags, len(data))
            start = os.lseek(pack, 0, os.SEEK_END)
            _write_all(pack, header + data, start)
            if not flags:
                self.outputs[stream] = (str(folder / f"{bucket_of(run.index)}.{self.name}.pack"),
                                        start + HEADER.size, len(data))

    def _pack_fd(self, job_id: str, bucket: str) -> int:
        if self.pack is not None and self.pack[:2] == (job_id, bucket):
            return self.pack[2]
        if self.pack is not None:
            os.close(self.pack[2])
            self.pack = None
        folder = self.root / job_id
        folder.mkdir(exist_ok=True)
        fd = os.open(folder / f"{bucket}.{self.name}.pack", os.O_WRONLY | os.O_CREAT, 0o644)
        self.pack = (job_id, bucket, fd)
        return fd


def _write_all(fd: int, data: bytes, at: int) -> None:
    """Write a whole record at `at`, or none of it (a short write, the disk full: cut back, then raise)."""
    done = 0
    try:
        while done < len(data):
            done += os.pwrite(fd, data[done:], at + done)
    except OSError:
        os.ftruncate(fd, at)
        raise


class FileSink:
    """A run's stdout and stderr: the descriptors of its writer's spool, packed at `close`."""

    def __init__(self, store: FileLogStore, slot: _Slot):
        self.store, self.slot = store, slot
        self.stdout, self.stderr = slot.fds["stdout"], slot.fds["stderr"]
        self._closed = False

    def close(self, kept: bool = True, lingering: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.slot.end(kept, lingering)
        finally:
            self.store._free(self.slot)


class FileLogStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._lock = threading.Lock()
        self._free_slots: list[_Slot] = []
        self._made = False  # logs/.runs made (and dead writers' spools tidied) by this store
        # The runs this process packed lately and where their outputs lie, for `deliver` (newest last).
        self._recent: dict[tuple[str, int | None], dict[str, tuple[str, int, int]]] = {}

    # ---- writing ----------------------------------------------------------------------------------
    def sink(self, job_id: str, index: int | None, attempt: int) -> FileSink:
        slot = self._take()
        try:
            slot.begin(job_id, index, attempt)
        except OSError:
            self._free(slot)
            raise
        return FileSink(self, slot)

    def _take(self) -> _Slot:
        with self._lock:
            if self._free_slots:
                return self._free_slots.pop()
        if not self._made:
            (self.root / RUNS).mkdir(parents=True, exist_ok=True)
            _tidy(self.root / RUNS)
            self._made = True
        return _Slot(self.root, f"{os.getpid()}.{next(_SLOTS)}")

    def _free(self, slot: _Slot) -> None:
        with self._lock:
            if slot.last is not None:
                self._recent.pop(slot.last, None)
                self._recent[slot.last] = slot.outputs
                if len(self._recent) > RECENT:
                    del self._recent[next(iter(self._recent))]
            self._free_slots.append(slot)

    def deliver(self, job_id: str, index: int | None, stream: str, path: str, mode: int) -> None:
        """Write a finished run's stream to `path` (its output file in the submit directory): the whole
        file replaced, created with `mode` (an empty stream still makes its file, as PBS does). A run
        this process packed lately (a chunk's worth) is copied from where it lies, without looking for it."""
        outputs = self._recent.get((job_id, index))
        dst = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            if outputs is not None:
                if stream in outputs:  # else it wrote nothing there: the empty file is all there is to do
                    file, start, length = outputs[stream]
                    _copy(file, start, length, dst)
                return
            offset = 0
            while True:
                data, offset = self.read(job_id, index, stream, offset, COPY)
                if not data:
                    return
                _write_all(dst, data, offset - len(data))
        finally:
            os.close(dst)

    # ---- reading ----------------------------------------------------------------------------------
    def read(self, job_id: str, index: int | None, stream: str, offset: int, limit: int) -> tuple[bytes, int]:
        for _ in range(5):  # a run that ends while it is read is read again, from its pack
            live = self._live(job_id, index)
            packed = self._latest_packed(job_id, index)
            if live is not None and (packed is None or live[0] >= packed[0]):
                _, slot, gen = live
                data = _pread_path(self.root / RUNS / f"{slot}.{stream}", offset, limit)
                if _generation(self.root / RUNS / f"{slot}.now") == gen:
                    return data, offset + len(data)
                continue
            if packed is not None:
                where = packed[1].get(stream)
                if where is None:
                    return b"", offset
                file, start, length = where
                data = _pread_path(file, start + offset, max(0, min(limit, length - offset)))
                return data, offset + len(data)
            break
        old = self.root / job_id / f"{'job' if index is None else index}.{stream}"  # the layout before packs
        data = _pread_path(old, offset, limit)
        return data, offset + len(data)

    def _live(self, job_id: str, index: int | None) -> tuple[tuple[int, int], str, int] | None:
        """((attempt, start), slot, generation) of a live writer's run of the task, if one runs it now."""
        want = "-" if index is None else str(index)
        try:
            names = os.listdir(self.root / RUNS)
        except FileNotFoundError:
            return None
        found = None
        for name in names:
            if not name.endswith(".now"):
                continue
            slot = name[:-4]
            try:
                fields = _pread_path(self.root / RUNS / name, 0, NOW_BYTES).split()
            except OSError:
                continue
            if len(fields) != 5 or fields[4].decode() != job_id or fields[3].decode() != want:
                continue
            if not process_alive(int(slot.split(".")[0])):
                continue  # its writer died mid-run: the run is lost, its spool is no one's output
            key = (int(fields[2]), int(fields[1]))
            if found is None or key > found[0]:
                found = (key, slot, int(fields[0]))
        return found

    def _latest_packed(self, job_id: str, index: int | None) -> tuple[tuple[int, int], dict] | None:
        """((attempt, start), {stream: (file, start, length)}) of the latest packed run of the task."""
        folder = self.root / job_id
        bucket = bucket_of(index)
        want = -1 if index is None else index
        try:
            names = [n for n in os.listdir(folder) if n.startswith(bucket + ".") and n.endswith(".pack")]
        except (FileNotFoundError, NotADirectoryError):
            return None
        best: tuple[tuple[int, int], dict] | None = None
        for name in names:
            path = folder / name
            for (idx, started, attempt, code, flags, at, length) in _records(path):
                if idx != want:
                    continue
                key = (attempt, started)
                if best is None or key > best[0]:
                    best = (key, {})
                if key == best[0]:
                    if flags & EXTERNAL:
                        target = _pread_path(path, at, length).decode()
                        best[1][STREAMS[code]] = (str(folder / target), 0, os.stat(folder / target).st_size)
                    else:
                        best[1][STREAMS[code]] = (str(path), at, length)
        return best


def _records(path: Path):
    """(index, start, attempt, stream code, flags, data offset, length) of each whole record of a pack."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        at = 0
        while at + HEADER.size <= size:
            magic, idx, started, attempt, code, flags, length = HEADER.unpack(os.pread(fd, HEADER.size, at))
            if magic != MAGIC or at + HEADER.size + length > size:
                return  # a record being written, or cut short: nothing after it is whole
            yield idx, started, attempt, code, flags, at + HEADER.size, length
            at += HEADER.size + length
    finally:
        os.close(fd)


def _generation(path: Path) -> int | None:
    try:
        return int(_pread_path(path, 0, NOW_BYTES).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _pread_path(path: str | Path, offset: int, limit: int) -> bytes:
    if limit <= 0:
        return b""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return b""
    try:
        return os.pread(fd, limit, offset)
    finally:
        os.close(fd)


def _copy(file: str, start: int, length: int, dst: int) -> None:
    """`length` bytes of `file` from `start` to the start of the descriptor `dst`."""
    src = os.open(file, os.O_RDONLY)
    try:
        done = 0
        while done < length:
            data = os.pread(src, min(COPY, length - done), start + done)
            if not data:
                return
            _write_all(dst, data, done)
            done += len(data)
    finally:
        os.close(src)


def _tidy(runs: Path) -> None:
    """Remove the spools of writers that died (once per process): a dead writer's run is lost anyway."""
    for name in os.listdir(runs):
        pid = name.split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            try:
                os.unlink(runs / name)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise

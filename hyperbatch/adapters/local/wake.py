"""Wake idle local workers when work is sent, instead of having them poll the store every few milliseconds.

Every process that waits for work of a queue has a FIFO of its own,
`$HYPERBATCH_HOME/wake/<queue>/<pid>.<n>`, which it opens for reading and
writing (so it never reads end-of-file) and polls with a timeout. Whoever
commits work to a queue (the daemon for submits, releases and recoveries, a
worker for the retries and the positions it gives back) then writes one byte
into every FIFO of that queue: a waiter wakes within a scheduling delay,
claims, and drains what its FIFO holds. Where claims place work by resources,
a lease that ends (an ack, a release) wakes every queue's waiters, since the
CPUs it held may let work that did not fit run now. A FIFO without a reader (its process
is gone) cannot be opened for a write without blocking (ENXIO) and is removed
by the first sender that finds it so. A full FIFO already holds a wake-up.

No wake-up is lost: a waiter's first wait makes its FIFO and returns at
once, so the waiter claims again with its FIFO in place, and work committed
after any claim that found nothing writes into it: the poll returns at once. The waiter's timeout stays as a slow fallback (a FIFO
that could not be made, work that becomes visible later by its delay).
"""

from __future__ import annotations

import errno
import itertools
import math
import os
import select
import stat
from pathlib import Path

_NAMES = itertools.count(1)


class Waiter:
    """One process's FIFO for one queue: `wait` returns when a sender wrote into it, or at the timeout."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{os.getpid()}.{next(_NAMES)}"
        os.mkfifo(self.path, 0o600)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)

    def wait(self, timeout: float) -> bool:
        """True when woken (the wake-ups so far are drained), False at the timeout."""
        if not self._poll.poll(max(0, math.ceil(timeout * 1000))):
            return False
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass
        return True

    def close(self) -> None:
        os.close(self.fd)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class Wakeups:
    """The wake folder of a home: waiters per queue, and the wake-up a send makes."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def waiter(self, queue: str) -> Waiter:
        return Waiter(self.root / queue)

    def wake_all(self) -> None:
        """Wake the waiters of every queue."""
        try:
            queues = os.listdir(self.root)
        except FileNotFoundError:
            return
        for queue in queues:
            self.wake(queue)

    def wake(self, queue: str) -> None:
        """One byte into every waiter's FIFO of `queue`; FIFOs whose process is gone are removed."""
        folder = self.root / queue
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return
        for name in names:
            path = folder / name
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # nobody reads it: its waiter died without removing it
                    _remove_fifo(path)
                continue
            try:
                os.write(fd, b"!")
            except BlockingIOError:
                pass  # full: it holds a wake-up already
            finally:
                os.close(fd)


def _remove_fifo(path: Path) -> None:
    try:
        if stat.S_ISFIFO(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass

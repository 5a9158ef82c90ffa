"""Several jobs at once on one worker: a worker whose definition has room for more than one job
(a 4-vCPU container, four 1-CPU jobs) runs one agent per CPU, in threads of one process, sharing
the container's CPUs, memory and GPUs (`Room`), so a big container is not spent on one tiny job.

Each agent (a slot) claims and runs one job at a time, as a worker of one slot does. A slot claims
only while the room has a CPU free. Before it starts what it claimed, it reads the job's request:
if that does not fit what the other slots hold, it keeps the work (unstarted, its lease extended)
and waits until it does, which it must in the end, since the scheduler routed the job to a size
that fits it whole (hyperbatch.core.resources.route). It never gives work back to wait, which
would count a receive on SQS and a run on the job. The GPUs a run is given are named in its
CUDA_VISIBLE_DEVICES, distinct from its neighbours'.
"""

from __future__ import annotations

import logging
import signal
import threading

from hyperbatch.core.resources import Amount, assign_gpus

log = logging.getLogger("hyperbatch.slots")


class Room:
    """What one worker gives its jobs, and what its running jobs hold of it."""

    def __init__(self, amount: Amount):
        self.amount = amount
        self.gpus = [str(i) for i in range(amount.gpus)]
        self.used = Amount(0, 0, 0)
        self.given: set[str] = set()
        self._changed = threading.Condition()

    def free(self) -> Amount:
        return self.amount.minus(self.used)

    def has_a_cpu(self) -> bool:
        with self._changed:
            return self.free().cpus >= 1

    def take(self, request: Amount) -> list[str] | None:
        """Hold `request` if it fits what is free: the GPUs given; None (nothing held) if it does not."""
        with self._changed:
            if not request.fits(self.free()):
                return None
            gpus = assign_gpus([g for g in self.gpus if g not in self.given], request.gpus)
            self.used = Amount(self.used.cpus + request.cpus, self.used.mem + request.mem, self.used.gpus + request.gpus)
            self.given.update(gpus)
            return gpus

    def give(self, request: Amount, gpus: list[str]) -> None:
        """What a run held, back when it ends."""
        with self._changed:
            self.used = Amount(self.used.cpus - request.cpus, self.used.mem - request.mem,
                               self.used.gpus - request.gpus)
            self.given.difference_update(gpus)
            self._changed.notify_all()

    def wait(self, timeout: float) -> None:
        """Until something is given back, or `timeout` seconds."""
        with self._changed:
            self._changed.wait(timeout)


def slots_of(amount: Amount) -> int:
    """How many jobs at once a worker of this size may run: one a whole CPU, at least one."""
    return max(1, int(amount.cpus))


class Slots:
    """The agents of one worker process, served together: stopped together (SIGTERM), exiting when
    all of them have (idle), with the first non-zero exit code of any."""

    def __init__(self, agents: list):
        self.agents = agents

    def stop(self) -> None:
        for agent in self.agents:
            agent.stop()

    def serve(self) -> int:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
        codes: list[int] = [0] * len(self.agents)

        def run(i: int) -> None:
            try:
                codes[i] = self.agents[i].serve()
            except BaseException:
                log.exception("slot %d failed", i)
                codes[i] = 1
                self.stop()

        threads = [threading.Thread(target=run, args=(i,), name=f"slot-{i}", daemon=True)
                   for i in range(len(self.agents))]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)  # a timed join, so the main thread still takes signals
        return next((c for c in codes if c), 0)

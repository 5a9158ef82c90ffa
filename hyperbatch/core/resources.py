"""What a job asks for and what a worker offers, in CPUs, bytes of memory and GPUs: the one place
that decides whether a request fits, which queued work starts next, and which GPUs it gets.

A job's request comes from its Resource_List (hyperbatch.core.options.resource_list: ncpus, mem,
ngpus, one select chunk). A queue adds `default_resources` for what a job did not ask for, and caps
requests with `max_resources`; a request larger than any worker of its queue could ever give is
refused at submit (`route`), naming what the queue offers, rather than left queued forever.

Placement (`pick`): work is considered in the order it would start (priority, then age); the first
item that fits the free capacity starts, so small jobs fill cores a larger one cannot use yet
(backfill). That alone would starve a large job behind a stream of small ones, so an item that has
waited longer than `starve_after` seconds without fitting reserves the machine: nothing behind it
starts until it has, and the cores freed meanwhile stay free for it.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any, Iterable, Mapping, Sequence

from hyperbatch.core.errors import PBSE_EXCQRESC, SpecError
from hyperbatch.core.options import CHUNK_RESOURCES, check_resources, parse_select, size_bytes

LIMITED = ("ncpus", "mem", "ngpus")  # what placement counts; the rest of Resource_List is informational


class Amount(namedtuple("Amount", "cpus mem gpus", defaults=(0, 0))):
    """CPUs, bytes of memory (0: none asked, or none counted) and GPUs: a request or a capacity."""

    __slots__ = ()

    def fits(self, free: "Amount") -> bool:
        """Whether this request fits `free`. Memory counts only where both sides know it."""
        return (self.cpus <= free.cpus and self.gpus <= free.gpus
                and (not self.mem or not free.mem or self.mem <= free.mem))

    def minus(self, used: "Amount") -> "Amount":
        """What is left of this capacity once `used` is taken (memory all taken: -1, which no request
        that asks for memory fits; uncounted memory stays 0)."""
        return Amount(self.cpus - used.cpus, (self.mem - used.mem or -1) if self.mem else 0, self.gpus - used.gpus)

    def describe(self) -> str:
        """PBS's words: `ncpus=2,mem=8gb,ngpus=0`."""
        return f"ncpus={self.cpus},mem={format_size(self.mem) if self.mem else 'any'},ngpus={self.gpus}"


def format_size(n: int) -> str:
    """Bytes as the largest whole PBS unit (`8gb`, `1536mb`, `100b`)."""
    for unit, shift in (("tb", 40), ("gb", 30), ("mb", 20), ("kb", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return f"{n}b"


def request_of(resources: Mapping[str, Any] | None) -> Amount:
    """A job's request from its Resource_List: 1 CPU, no memory and no GPU unless asked."""
    resources = resources or {}
    mem = resources.get("mem")
    return Amount(int(resources.get("ncpus") or 1), size_bytes(str(mem)) if mem else 0,
                  int(resources.get("ngpus") or 0))


def limits_of(resources: Mapping[str, Any]) -> dict[str, int]:
    """A queue's `max_resources` ({"ncpus": 8, "mem": "32gb"}) as numbers (mem in bytes)."""
    checked = check_resources(dict(resources))
    out = {}
    for key in LIMITED:
        if key in checked:
            out[key] = size_bytes(str(checked[key])) if key == "mem" else int(checked[key])
    return out


def with_defaults(given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """A queue's default_resources under what the job asked for (PBS's resources_default): a default
    fills only what the job's own -l or select did not name."""
    named = set(given)
    if "select" in given:
        named |= set(parse_select(str(given["select"])))
    out = {k: v for k, v in defaults.items() if k not in named and not (k == "select" and named & set(CHUNK_RESOURCES))}
    return {**out, **given}


def route(request: Amount, queue: str, limits: Mapping[str, int], offers: Sequence[tuple[str, Amount]]) -> str:
    """The smallest of a queue's sizes (`offers`: definition name, what one worker of it gives) that
    fits the request, so a big worker is not spent on a small job; refused (PBS: Job exceeds queue
    resource limits) when it is over the queue's max_resources or no size fits, naming what the queue
    runs at most."""
    ceilings = [(name, _capped(offer, limits)) for name, offer in offers]
    fitting = [(name, offer) for name, offer in ceilings if not _over(request, offer)]
    if fitting:
        return min(fitting, key=lambda f: (f[1].gpus, f[1].cpus, f[1].mem))[0]
    most = max((offer for _, offer in ceilings), key=lambda o: (o.cpus, o.mem, o.gpus))
    over = _over(request, most) or [k for _, o in ceilings for k in _over(request, o)]
    key = over[0]
    value = {"ncpus": request.cpus, "mem": request.mem, "ngpus": request.gpus}[key]
    shown = format_size(value) if key == "mem" else value
    runs = " or ".join(dict.fromkeys(o.describe() for _, o in ceilings))
    raise SpecError(f"Job exceeds queue resource limits: {key}={shown} asked, and queue {queue} "
                    f"runs jobs of at most {runs}", pbs_errno=PBSE_EXCQRESC)


def _capped(offer: Amount, limits: Mapping[str, int]) -> Amount:
    return Amount(_cap("ncpus", offer.cpus, limits.get("ncpus")), _cap("mem", offer.mem, limits.get("mem")),
                  _cap("ngpus", offer.gpus, limits.get("ngpus")))


def _over(request: Amount, ceiling: Amount) -> list[str]:
    """The resources of `request` above `ceiling` (memory only where the ceiling counts it)."""
    asked = {"ncpus": request.cpus, "mem": request.mem, "ngpus": request.gpus}
    most = {"ncpus": ceiling.cpus, "mem": ceiling.mem, "ngpus": ceiling.gpus}
    return [k for k in LIMITED if asked[k] > most[k] and (k != "mem" or most[k])]


def _cap(key: str, offered: int, limit: int | None) -> int:
    """What a queue can run of one resource: its workers' offer under its max_resources (memory a
    worker does not count is capped by the limit alone)."""
    if limit is None:
        return offered
    return limit if key == "mem" and not offered else min(offered, limit)


class Candidate(namedtuple("Candidate", "key request waited mine", defaults=(True,))):
    """Queued work in start order: its `key` (what the caller claims), `request`, the seconds it has
    `waited`, and whether it is `mine` to take (the claiming worker's queue)."""

    __slots__ = ()


def pick(candidates: Iterable[Candidate], free: Amount, starve_after: float,
         total: Amount | None = None) -> Candidate | None:
    """The first of my candidates that fits `free`, in start order; None when none does, or when one
    before it has waited more than `starve_after` seconds without fitting (it holds the reservation).
    Others' candidates that fit are passed over: their own workers take them. One that could not fit
    even the whole of `total` (queued before the machine was made smaller) is passed over too: it
    would hold a reservation nothing can ever grant."""
    for candidate in candidates:
        if candidate.request.fits(free):
            if candidate.mine:
                return candidate
        elif candidate.waited > starve_after and (total is None or candidate.request.fits(total)):
            return None
    return None


def assign_gpus(free: Sequence[str], count: int) -> list[str]:
    """The `count` lowest free GPUs (their ids as CUDA_VISIBLE_DEVICES names them)."""
    if count > len(free):
        raise ValueError(f"{count} GPUs asked, {len(free)} free")
    return sorted(free, key=_gpu_order)[:count]


def _gpu_order(gpu: str) -> tuple[int, str]:
    return (int(gpu), "") if gpu.isdigit() else (1 << 30, gpu)

"""Workers on your own machines (hybrid): the `onprem` pseudo-region and the record each such worker keeps.

An on-premises worker is the ordinary agent (same claims, heartbeats, fencing
and accounting as any worker), started by `hyper worker start` on a machine
the scaler knows nothing about. Its region is `onprem`, so a job it runs has
exec_host `onprem/NAME`, which is also its PBS node name. It keeps a record
(on AWS an item in the job table: its queue, definition, what it offers, when
it last said so), rewritten every REFRESH_SECONDS while it runs and deleted
when it stops: pbsnodes lists it from there, and the scaler counts it as the
queue's capacity. The scaler never starts, counts as Batch jobs or stops it.

A queue that weights `onprem` (above zero) uses those workers first: each
live one takes `jobs_to_workers_ratio` of the queue's work off what the scaler
sizes cloud workers on, and only the rest is split over the cloud regions by
their weights (equal weights when `onprem` is the only one). The value of the
`onprem` weight is not a share. A queue that does not weight `onprem` sizes
its cloud workers as if its on-premises workers were not there.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

from hyperbatch.core.errors import SpecError

ONPREM = "onprem"
# A live worker rewrites its record this often: one 1-WRU PutItem a minute is about $0.05 a month.
REFRESH_SECONDS = 60.0
# A record not rewritten for this long is a worker that is gone (it crashed, or lost its network):
# three missed refreshes, so a slow write or two does not make the scaler start cloud workers.
STALE_AFTER_SECONDS = 3 * REFRESH_SECONDS
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def check_name(name: str) -> str:
    """A worker name: letters, digits, `_ . -`, at most 63, so `onprem/NAME` is one path-free node name."""
    if not _NAME_RE.fullmatch(name):
        raise SpecError(f"worker name {name!r}: use letters, digits, '_', '.' and '-' (at most 63, "
                        "starting with a letter or digit)")
    return name


def node_name(worker: str) -> str:
    """The exec_host and PBS node name of on-premises worker `worker`."""
    return f"{ONPREM}/{worker}"


def alive(record: Mapping, now: float) -> bool:
    return now - float(record.get("seen_at") or 0) < STALE_AFTER_SECONDS


def live(records: Iterable[Mapping], now: float) -> list[dict]:
    return [dict(r) for r in records if alive(r, now)]


def per_queue(records: Iterable[Mapping], now: float) -> dict[str, int]:
    """Live on-premises workers per queue."""
    out: dict[str, int] = {}
    for record in live(records, now):
        out[record["queue"]] = out.get(record["queue"], 0) + 1
    return out


def cloud_share(work: int, weights: Mapping[str, float], workers: int, ratio: int,
                compute_regions: Iterable[str]) -> tuple[int, dict[str, float]]:
    """The work left for cloud workers and the weights to split them by.

    With `onprem` weighted above zero, the queue's `workers` live on-premises workers take
    `ratio` each of `work` first; the cloud weights are the others (equal over `compute_regions`
    when none is left). `onprem` never reaches the compute: it is not a region to start workers in.
    """
    cloud = {r: w for r, w in weights.items() if r != ONPREM}
    if not any(cloud.values()):
        cloud = {r: 1.0 for r in compute_regions}
    if weights.get(ONPREM, 0) > 0:
        work = max(0, work - workers * ratio)
    return work, cloud

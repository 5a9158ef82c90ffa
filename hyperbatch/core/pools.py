"""Pools: the workers of one (queue, definition), and the work queue they take their work from.

A queue runs its jobs on workers of one or more definitions (sizes: `definition`, the default,
then `definitions` in queues.json). Each size is a pool of its own: its own work queue (an SQS queue
on AWS, a name in the local lease table), scaled by its own backlog, so a job routed to a size is
only ever claimed by a worker of that size. The default definition's pool keeps the queue's own
name, so a queue of one size is what it always was; another's is `QUEUE--DEFINITION` (queue names
may not hold `--`).

Which pool a job goes to is decided at submit (and qmove, and a qalter of its resources) and kept
on the job as `pool`: None for the default pool (so a job stored before pools existed is in it),
else the pool's name. Everything that sends or checks a job's work reads it here.
"""

from __future__ import annotations

SEPARATOR = "--"


def pool_name(queue: str, definition: str, default_definition: str) -> str:
    """The work queue of `definition`'s workers of `queue`."""
    return queue if definition == default_definition else f"{queue}{SEPARATOR}{definition}"


def pool_field(queue: str, definition: str, default_definition: str) -> str | None:
    """What a job in that pool keeps as `pool`: None in its queue's default pool."""
    return None if definition == default_definition else pool_name(queue, definition, default_definition)


def work_queue(doc: dict) -> str:
    """The work queue a job's work is sent to."""
    return doc.get("pool") or doc["queue"]


def claimed_from(work: str) -> tuple[tuple[str, str | None], ...]:
    """What a job must still hold for work claimed from the work queue `work` to be its current
    work (an item left behind by a qmove or a resize is stale): Expect fields."""
    if SEPARATOR in work:
        return (("pool", work),)
    return (("queue", work), ("pool", None))

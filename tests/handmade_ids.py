"""Job ids for documents tests make by hand, without a store's sequence (hyperbatch.core.ids).

Increasing within a test process, so listings sort as the documents were made; a test that needs
ids reserved as the service reserves them calls `store.reserve_ids` instead.
"""

import itertools

_numbers = itertools.count(1000)


def new_job_id() -> str:
    return str(next(_numbers))


def new_job_ids(n: int) -> list[str]:
    """n consecutive ids (one submit's run)."""
    return [new_job_id() for _ in range(n)]

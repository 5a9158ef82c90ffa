"""Exponential backoff: the one rule for how long to wait before trying a failed call again."""

from __future__ import annotations

import time


def delay(attempt: int, base: float, cap: float = 30.0) -> float:
    """Seconds to wait after failed attempt number `attempt` (0-based): base, 2·base, 4·base, ... at most `cap`."""
    return min(cap, base * 2 ** max(0, attempt))


def pause(attempt: int, base: float, cap: float = 30.0) -> None:
    """Sleep `delay(attempt, base, cap)`."""
    time.sleep(delay(attempt, base, cap))

"""Regular expressions compiled on first use.

qsub reads the core's option table on every start, and a module that compiles its patterns at
import pays for all of them on every `qsub` (bench/latency.py); `lazy(...)` pays for a pattern
only when something matches with it. It answers as the compiled pattern does (`.fullmatch`,
`.match`, `.search`, `.pattern`, ...).
"""

from __future__ import annotations

import re


class lazy:  # noqa: N801 - used where re.compile was, and named to read like it
    __slots__ = ("_args", "_compiled")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self._args = (pattern, flags)
        self._compiled: re.Pattern[str] | None = None

    def __getattr__(self, name: str):
        if self._compiled is None:
            self._compiled = re.compile(*self._args)
        return getattr(self._compiled, name)

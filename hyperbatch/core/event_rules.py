"""Could a rule on the default EventBridge bus match a job state change? (Whether putting them is worth $1 a million.)

The release function puts "HyperBatch Job State Change" events (source
`hyperbatch`) on the main region's default bus for users' rules to route
(hyperbatch.adapters.aws.notices). EventBridge bills every event put, read or
not, so it puts them only while some enabled rule of that bus could match one.
The rule here reads a rule's EventPattern and errs towards "it could": a
pattern says no only when its `source` or its `detail-type` certainly excludes
ours (every matcher of the list fails: an exact string, a prefix, a suffix,
equals-ignore-case, a wildcard, anything-but of those); a matcher it does not
know, or a pattern it cannot read, counts as matching. Fields other than those
two (account, region, detail, ...) are never held against a rule: a rule on
`account` only matches. A `$or` matches when any of its branches could.
HyperBatch's own notifier rule matches only "HyperBatch Job Notice", so it
does not count. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hyperbatch.core.names import EVENT_SOURCE, STATE_CHANGE_DETAIL_TYPE

# The fields of a state-change event a pattern can exclude it by, and their values.
STATE_CHANGE = {"source": EVENT_SOURCE, "detail-type": STATE_CHANGE_DETAIL_TYPE}


def listens(rule: dict[str, Any]) -> bool:
    """Whether one rule of a ListRules answer could route a state change: enabled, with a pattern that could
    match one (a schedule alone matches no event)."""
    if rule.get("State") == "DISABLED" or not rule.get("EventPattern"):
        return False
    try:
        pattern = json.loads(rule["EventPattern"])
    except (TypeError, ValueError):
        return True
    return could_match(pattern)


def could_match(pattern: Any, event: dict[str, str] = STATE_CHANGE) -> bool:
    """False only when `pattern` (a parsed EventPattern) certainly excludes `event`'s top-level fields."""
    if not isinstance(pattern, dict):
        return True
    for name, value in event.items():
        if name in pattern and _field(pattern[name], value) is False:
            return False
    branches = pattern.get("$or")
    if isinstance(branches, list) and branches:
        return any(could_match(branch, event) for branch in branches)
    return True


def _field(matchers: Any, value: str) -> bool | None:
    """A field's list of matchers against `value`: True, False, or None (cannot tell)."""
    if not isinstance(matchers, list) or not matchers:
        return None
    return _any(_matcher(m, value) for m in matchers)


def _matcher(matcher: Any, value: str) -> bool | None:
    if isinstance(matcher, str):
        return matcher == value
    if matcher is None or isinstance(matcher, (bool, int, float)):
        return False  # null matches a missing field, a number a number: never a string that is there
    if not isinstance(matcher, dict) or len(matcher) != 1:
        return None
    ((kind, argument),) = matcher.items()
    if kind == "anything-but":
        excluded = _excluded(argument, value)
        return None if excluded is None else not excluded
    if kind == "exists":
        return argument if isinstance(argument, bool) else None
    return _test(kind, argument, value)


def _excluded(argument: Any, value: str) -> bool | None:
    """Whether anything-but's `argument` names `value`: a string, numbers, a list, or one content filter."""
    if isinstance(argument, list):
        return _any(_excluded(a, value) for a in argument)
    if isinstance(argument, str):
        return argument == value
    if argument is None or isinstance(argument, (bool, int, float)):
        return False
    if isinstance(argument, dict) and len(argument) == 1:
        ((kind, inner),) = argument.items()
        if isinstance(inner, list):
            return _any(_test(kind, i, value) for i in inner)
        return _test(kind, inner, value)
    return None


def _test(kind: str, argument: Any, value: str) -> bool | None:
    """A content filter on a string: prefix, suffix (either of them ignoring case), equals-ignore-case, wildcard."""
    if kind in ("prefix", "suffix"):
        fold = isinstance(argument, dict) and set(argument) == {"equals-ignore-case"}
        text = argument["equals-ignore-case"] if fold else argument
        if not isinstance(text, str):
            return None
        subject, text = (value.lower(), text.lower()) if fold else (value, text)
        return subject.startswith(text) if kind == "prefix" else subject.endswith(text)
    if kind == "equals-ignore-case" and isinstance(argument, str):
        return argument.lower() == value.lower()
    if kind == "wildcard" and isinstance(argument, str):
        return _wildcard(argument).fullmatch(value) is not None
    return None


def _wildcard(text: str) -> re.Pattern[str]:
    r"""EventBridge's wildcard: `*` is any run of characters; `\*` a star and `\\` a backslash."""
    parts = re.split(r"(\\\\|\\\*|\*)", text)
    return re.compile("".join(".*" if p == "*" else re.escape(p[1:] if p in ("\\\\", "\\*") else p) for p in parts),
                      re.DOTALL)


def _any(results) -> bool | None:
    """Three-valued or: True if one is, else None if one cannot tell, else False."""
    unknown = False
    for result in results:
        if result is True:
            return True
        unknown = unknown or result is None
    return None if unknown else False

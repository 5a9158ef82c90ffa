"""Job options shared by the API and script directives: walltime, `-l` resources, `-v` environment, priority."""

from __future__ import annotations

import re

from hyperbatch.core.errors import PBSE_BADATVAL, SpecError
from hyperbatch.core.limits import ENV_NAME_RE, NAME_RE, PRIORITY_MAX, PRIORITY_MIN
_CLOCK_RE = re.compile(r"(?:(?:([0-9]{1,9}):)?([0-9]{1,9}):)?([0-9]{1,9})")
_UNITS_RE = re.compile(r"(?:([0-9]{1,9})h)?(?:([0-9]{1,9})m)?(?:([0-9]{1,9})s)?", re.IGNORECASE)


def parse_walltime(text: str) -> int:
    """Seconds from `[[HH:]MM:]SS` (`01:30:00`, `90:00`, `45`) or units (`1h`, `30m`, `90s`, `2h30m`).

    The leading field may be any size (`100:00:00`, `90:00`); later fields must be below 60.
    """
    value = text.strip()
    hint = f"walltime '{value}': use HH:MM:SS, as in 01:30:00 (or 1h, 30m, 90s, 2h30m)"
    if clock := _CLOCK_RE.fullmatch(value):
        fields = [int(f) for f in clock.groups() if f is not None]
        if any(f >= 60 for f in fields[1:]):
            raise SpecError(f"{hint}; minutes and seconds after the first field must be below 60")
        seconds = 0
        for field in fields:
            seconds = seconds * 60 + field
    elif (units := _UNITS_RE.fullmatch(value)) and value:
        hours, minutes, secs = (int(f or 0) for f in units.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    else:
        raise SpecError(hint)
    if seconds <= 0:
        raise SpecError(f"walltime '{value}': must be more than zero, as in 01:30:00")
    return seconds


def parse_resources(text: str) -> dict[str, str]:
    """`-l` list `walltime=01:00:00,ncpus=2,mem=4gb` -> {key: raw value}; unknown keys are kept.

    `select=1:ncpus=2` keeps `1:ncpus=2` as the raw value of `select`. A repeated key: the last wins.
    """
    out: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise SpecError(f"resource '{item}': give key=value, as in walltime=01:00:00,ncpus=2,mem=4gb")
        out[key] = value
    return out


# One `-v` item: NAME[=VALUE] then a comma or the end; a value wholly in quotes may hold commas.
_ENV_ITEM_RE = re.compile(r"""\s*([^=,]*)(?:(=)(?:"([^"]*)"|'([^']*)'|([^,]*)))?(?:,|\Z)""")


def parse_env(text: str) -> dict[str, str]:
    """`-v` list `A=1,B=two words,C=` -> {"A": "1", "B": "two words", "C": ""}.

    Values are kept verbatim, except that a value wholly in quotes ('x,y' or "x,y") may contain
    commas and loses its quotes. A bare name is an error here: the CLI fills it in from its own
    environment before calling the API.
    """
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        match = _ENV_ITEM_RE.match(text, pos)
        if match is None:  # the pattern takes any rest of the text; this keeps the checker sure of it
            raise SpecError(f"environment list '{text}': give VAR=value[,VAR=value]")
        pos = match.end()
        name, eq, double, single, raw = match.groups()
        name = name.strip()
        if not name and not eq:
            continue  # empty item, as in a trailing comma
        if not eq or not name:
            item = match.group(0).strip().rstrip(",")
            raise SpecError(f"environment '{item}': give VAR=value, as in -v DEBUG=1,NAME=run1")
        if not ENV_NAME_RE.fullmatch(name):
            raise SpecError(
                f"environment variable name '{name}': use letters, digits and _, not starting with a digit"
            )
        out[name] = next(v for v in (double, single, raw) if v is not None)
    return out



def parse_name(text: str) -> str:
    """A job name: up to 64 letters, digits, '.', '_' and '-', not starting with a punctuation mark."""
    if not isinstance(text, str) or NAME_RE.fullmatch(text) is None:
        raise SpecError(f"job name '{text}': use up to 64 letters, digits, '.', '_' and '-', starting with a "
                        f"letter or digit", pbs_errno=PBSE_BADATVAL)
    return text


def parse_priority(text: str | int) -> int:
    """An integer from -1024 to 1023 (the PBS range); higher runs first."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif isinstance(text, str) and re.fullmatch(r"[+-]?[0-9]{1,9}", text.strip()):
        value = int(text.strip())
    else:
        raise SpecError(f"priority '{text}': give a whole number from {PRIORITY_MIN} to {PRIORITY_MAX}")
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise SpecError(f"priority {value}: must be from {PRIORITY_MIN} to {PRIORITY_MAX}")
    return value

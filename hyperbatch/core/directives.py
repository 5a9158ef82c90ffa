"""Options in a job script's header (`#PBS ...` and `#HYPER ...` lines), read the way qsub reads them.

The header is everything after an optional shebang up to the first line that is neither blank
nor a comment. Directive lines start with `#PBS` or `#HYPER` (leading spaces allowed) followed by
options, split like a shell would (`shlex.split`); several options may share a line and a later
line overrides an earlier one for single-valued options (`-l` and `-v` lists merge instead).

Recognised options -> result keys:
    -N name                    name         (1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit)
    -q queue                   queue
    -d def, --definition def   definition
    -J range, -t range         array        (canonical text, see arrays.parse_array)
    -W depend=LIST             depend       (canonical text, see dependencies.parse_depend)
    -p N                       priority     (int, -1024..1023)
    --retries N                max_attempts (N + 1, N from 0 to 99)
    -l walltime=...,key=val    walltime     (seconds) and resources (dict of the other keys)
    -v VAR=value,...           env          (dict)
    -h                         hold         (True)
For PBS compatibility -o, -e, -j, -m, -M, -A, -S (each with a value) and -V are accepted and
ignored: output goes to the log store, and the job environment is the definition's plus -v.
Explicit request fields win over directives; that merge belongs to the API, not here.
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Iterator

from hyperbatch.core.arrays import parse_array
from hyperbatch.core.dependencies import format_depend, parse_depend
from hyperbatch.core.errors import SpecError
from hyperbatch.core.limits import MAX_ATTEMPTS, check_name
from hyperbatch.core.options import parse_env, parse_priority, parse_resources, parse_walltime

PREFIXES = ("#PBS", "#HYPER")
MAX_RETRIES = MAX_ATTEMPTS - 1
_WITH_VALUE = {"-N", "-q", "-d", "--definition", "-J", "-t", "-W", "-p", "--retries", "-l", "-v"}
_IGNORED_WITH_VALUE = {"-o", "-e", "-j", "-m", "-M", "-A", "-S"}
_FLAGS = {"-h", "-V"}


def directive_lines(script: str) -> Iterator[tuple[int, str]]:
    """(line number, text after the prefix) for each directive line of the header."""
    lines = script.splitlines()
    first = 1 if lines and lines[0].startswith("#!") else 0
    for number, line in enumerate(lines[first:], start=first + 1):
        text = line.strip()
        if not text:
            continue
        if not text.startswith("#"):
            return
        for prefix in PREFIXES:
            rest = text[len(prefix):]
            if text.startswith(prefix) and (not rest or rest[0].isspace()):
                yield number, rest


def _options(tokens: list[str]) -> Iterator[tuple[str, str | None]]:
    """(option, value) pairs; accepts `-N x`, `-Nx`, `--retries 2` and `--retries=2`."""
    tokens = list(tokens)
    while tokens:
        token = tokens.pop(0)
        if token.startswith("#"):
            raise SpecError(f"remove the trailing comment '{token}...'; a directive line holds only options")
        if not token.startswith("-") or token == "-":
            raise SpecError(f"unexpected '{token}'; directives are options such as -N name or -l walltime=01:00:00")
        if token.startswith("--"):
            option, eq, attached = token.partition("=")
            value = attached if eq else None
        else:
            option, value = token[:2], token[2:] or None
        if option in _FLAGS:
            if value is not None:
                raise SpecError(f"option {option} takes no value")
        elif option in _WITH_VALUE or option in _IGNORED_WITH_VALUE:
            if value is None and tokens:
                value = tokens.pop(0)
            if not value:
                raise SpecError(f"option {option} needs a value")
        else:
            raise SpecError(f"unknown directive option '{option}'")
        yield option, value


def _apply(option: str, given: str | None, out: dict[str, Any]) -> None:
    value = given or ""  # the options that read it always come with one (_WITH_VALUE)
    if option == "-N":
        out["name"] = check_name(value)
    elif option == "-q":
        out["queue"] = value
    elif option in ("-d", "--definition"):
        out["definition"] = value
    elif option in ("-J", "-t"):
        out["array"] = str(parse_array(value))
    elif option == "-W":
        key, eq, rest = value.partition("=")
        if key.strip() != "depend" or not eq:
            raise SpecError(f"-W {key.strip()} is not supported; the only -W option is depend=afterok:ID")
        out["depend"] = format_depend(parse_depend(rest))
    elif option == "-p":
        out["priority"] = parse_priority(value)
    elif option == "--retries":
        if not re.fullmatch(r"[0-9]{1,3}", value) or int(value) > MAX_RETRIES:
            raise SpecError(f"--retries '{value}': give a whole number from 0 to {MAX_RETRIES}")
        out["max_attempts"] = int(value) + 1
    elif option == "-l":
        resources = parse_resources(value)
        if "walltime" in resources:
            out["walltime"] = parse_walltime(resources.pop("walltime"))
        if resources:
            out["resources"] = {**out.get("resources", {}), **resources}
    elif option == "-v":
        out["env"] = {**out.get("env", {}), **parse_env(value)}
    elif option == "-h":
        out["hold"] = True
    # everything else was accepted for PBS compatibility and is ignored


def parse_directives(script: str) -> dict[str, Any]:
    """The options a script's header sets, keyed as in the module docstring (absent when not set)."""
    out: dict[str, Any] = {}
    for number, text in directive_lines(script):
        try:
            for option, value in _options(shlex.split(text)):
                _apply(option, value, out)
        except SpecError as exc:
            raise SpecError(f"script line {number}: {exc}") from None
        except ValueError as exc:  # shlex: an unclosed quote
            raise SpecError(f"script line {number}: a quote is not closed ({exc})") from None
    return out

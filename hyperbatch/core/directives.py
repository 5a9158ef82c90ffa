"""Options in a job script's header (`#PBS ...` and `#HYPER ...` lines), read the way qsub reads them.

The header is everything after an optional shebang up to the first line that is neither blank
nor a comment. A directive line starts with the prefix (`#PBS` or `#HYPER` by default, qsub's
`-C PREFIX` or $PBS_DPREFIX otherwise; leading spaces allowed) followed by options, split like
a shell would (quotes, backslashes) and read like getopt reads qsub's own arguments (`-N x`,
`-Nx`, `-hN x`, `--retries 2`, `--retries=2`). A line ending in a backslash continues on the
next. Several options may share a line; a later one overrides an earlier one, except that
`-l` resources and `-v` variables merge.

Every option is the one of the option table (core/options.py): the same parser, the same
fields, and the same one-line reason when HyperBatch refuses it. Options given to qsub itself
win over directives; that merge (options.combine) belongs to the caller.
"""

from __future__ import annotations

import shlex

from hyperbatch.core.errors import SpecError
from hyperbatch.core.options import BY_FLAG, Context, merge_into, occurrence

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: qsub reads this module, and importing typing costs milliseconds
if TYPE_CHECKING:
    from typing import Any, Iterator, Sequence

PREFIXES = ("#PBS", "#HYPER")


def prefixes_for(prefix: str | None) -> tuple[str, ...]:
    """The prefixes to look for: the defaults, one given prefix, or none for ''."""
    if prefix is None:
        return PREFIXES
    return (prefix,) if prefix else ()


def directive_lines(script: str, prefix: str | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text after the prefix) for each directive of the header, continuations joined."""
    prefixes = prefixes_for(prefix)
    if not prefixes:
        return
    lines = script.splitlines()
    first = 1 if lines and lines[0].startswith("#!") else 0
    pending: tuple[int, str] | None = None
    for number, line in enumerate(lines[first:], start=first + 1):
        if pending is not None:
            start, text = pending
            text += " " + line.strip()
            pending = None
            if text.rstrip().endswith("\\"):
                pending = (start, text.rstrip()[:-1])
                continue
            yield start, text
            continue
        text = line.strip()
        if not text:
            continue
        if not text.startswith("#"):
            return
        for candidate in prefixes:
            rest = text[len(candidate):]
            if text.startswith(candidate) and (not rest or rest[0].isspace()):
                if rest.rstrip().endswith("\\"):
                    pending = (number, rest.rstrip()[:-1])
                else:
                    yield number, rest
                break
    if pending is not None:
        yield pending


def split_options(tokens: Sequence[str]) -> Iterator[tuple[str, str | None]]:
    """(flag, value) pairs from tokens, the way getopt reads them (clusters, attached values)."""
    tokens = list(tokens)
    while tokens:
        token = tokens.pop(0)
        if token.startswith("#"):
            raise SpecError(f"remove the trailing comment '{token}...'; a directive line holds only options")
        if not token.startswith("-") or token in ("-", "--"):
            raise SpecError(f"unexpected '{token}'; directives are options such as -N name or -l walltime=01:00:00")
        if token.startswith("--"):
            flag, eq, attached = token.partition("=")
            option = BY_FLAG.get(flag)
            if option is None:
                raise SpecError(f"unknown option '{flag}'")
            if option.metavar is None:
                if eq:
                    raise SpecError(f"option {flag} takes no value")
                yield flag, None
                continue
            value = attached if eq else (tokens.pop(0) if tokens else None)
            yield flag, value
            continue
        pos = 1
        while pos < len(token):
            flag = "-" + token[pos]
            option = BY_FLAG.get(flag)
            if option is None:
                raise SpecError(f"unknown option '{flag}'")
            if option.metavar is None:
                yield flag, None
                pos += 1
                continue
            rest = token[pos + 1:]
            yield flag, rest if rest else (tokens.pop(0) if tokens else None)
            break


def parse_directives(script: str, prefix: str | None = None, ctx: Context | None = None) -> dict[str, Any]:
    """The fields a script's header sets (absent when not set), as options.parse_occurrences gives them."""
    ctx = ctx or Context()
    out: dict[str, Any] = {}
    for number, text in directive_lines(script, prefix):
        try:
            tokens = shlex.split(text)
        except ValueError as exc:  # shlex: an unclosed quote
            raise SpecError(f"script line {number}: a quote is not closed ({exc})") from None
        try:
            for flag, value in split_options(tokens):
                merge_into(out, occurrence(flag, value, ctx, directive=True))
        except SpecError as exc:
            raise SpecError(f"script line {number}: {exc}") from None
    return out

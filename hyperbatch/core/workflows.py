"""Workflow files: a DAG of jobs submitted in one request (README "Workflows").

    name: sweep
    defaults: {queue: batch, walltime: "00:10:00"}
    jobs:
      prepare: {command: ["sh", "-c", "seq 1 100 > numbers"]}
      square:  {script: square.sh, array: "1-100%10", depends_on: [prepare]}
      report:  {command: [...], depends_on: {square: afterok}}

The rules every side shares, pure: what a step and a workflow may be called, the two forms of
`depends_on` (a list means afterok; a map names the kind), the order steps are created in (parents
first, so a cycle or an unknown step is refused before anything exists), and `-v KEY=VAL`
substitution. Every error names the field as a dotted path (`jobs.report.depends_on.squre: ...`),
which the CLI turns into the file's line.
"""

from __future__ import annotations

import re

from hyperbatch.core.dependencies import KINDS
from hyperbatch.core.errors import SpecError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

# A step's name is a key of the file and a part of an error's field path: no dots, nothing to escape.
STEP_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$"
STEP_RE = re.compile(STEP_PATTERN)
# A workflow's name is also a path segment of GET /workflows/NAME.
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
NAME_RE = re.compile(NAME_PATTERN)
# The jobs of one workflow: what one submission may hold (hyperbatch.core.limits.MAX_BATCH_JOBS); on
# DynamoDB they are written as one submission, so no transaction's 100-item limit applies (§8.2).
MAX_STEPS = 1000
VARIABLE_RE = re.compile(r"\$(\$?)\{([^}]*)\}")
VARIABLE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_name(name: object) -> str:
    """A workflow's name as NAME_PATTERN allows it; SpecError saying what to give (the bad name cut short)."""
    if isinstance(name, str) and NAME_RE.fullmatch(name):
        return name
    shown = repr(name)[1:-1] if isinstance(name, str) else str(name)
    shown = shown if len(shown) <= 70 else shown[:64] + "..."
    raise SpecError(f"workflow name '{shown}': use letters, digits, _, . and - (at most 64), not starting with . or -")


def parents(depends_on: list[str] | Mapping[str, str] | None) -> dict[str, str]:
    """`depends_on` as parent step -> kind: a list means afterok for each, a map names the kind."""
    if not depends_on:
        return {}
    if isinstance(depends_on, list) and all(isinstance(step, str) for step in depends_on):
        return {step: "afterok" for step in depends_on}
    if isinstance(depends_on, dict) and all(isinstance(step, str) for step in depends_on):
        return dict(depends_on)
    raise SpecError("give a list of steps (afterok), or a map of step to afterok, afterany or afternotok")


def order(jobs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The steps, every parent before its children (file order otherwise): what the jobs are created
    in, so each job's parents exist when its dependencies are resolved. SpecError for a kind that is
    not one, a step that depends on an unknown step or on itself, or a cycle."""
    graph: dict[str, dict[str, str]] = {}
    for step, spec in jobs.items():
        try:
            graph[step] = parents(spec.get("depends_on"))
        except SpecError as exc:
            raise SpecError(f"jobs.{step}.depends_on: {exc}") from None
        for parent, kind in graph[step].items():
            where = f"jobs.{step}.depends_on.{parent}"
            if kind not in KINDS:
                raise SpecError(f"{where}: '{kind}' is not a dependency kind; use afterok, afterany or afternotok")
            if parent == step:
                raise SpecError(f"{where}: a step cannot depend on itself")
            if parent not in jobs:
                raise SpecError(f"{where}: no step named '{parent}' (steps: {', '.join(jobs)})")
    done: dict[str, None] = {}
    visiting: list[str] = []

    def visit(step: str) -> None:
        if step in done:
            return
        if step in visiting:
            loop = visiting[visiting.index(step):] + [step]
            raise SpecError(f"jobs.{loop[0]}.depends_on: a cycle: {' -> '.join(loop)} (each waits for the next)")
        visiting.append(step)
        for parent in graph[step]:
            visit(parent)
        visiting.pop()
        done[step] = None

    for step in graph:
        visit(step)
    return list(done)


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """`${KEY}` replaced by the value `-v KEY=VAL` gave; `$${KEY}` is a literal `${KEY}` (for a shell's
    own variables); a `$` not followed by `{` stays as it is. An unknown KEY is a SpecError, so a typo
    never becomes an empty string."""

    def one(match: re.Match[str]) -> str:
        escaped, name = match.group(1), match.group(2)
        if escaped:
            return "${" + name + "}"
        if not VARIABLE_NAME_RE.fullmatch(name):
            raise SpecError(f"'${{{name}}}' is not a variable: give ${{NAME}}, NAME of letters, digits and _")
        if name not in variables:
            known = f" (given: {', '.join(sorted(variables))})" if variables else ""
            raise SpecError(f"unknown variable ${{{name}}}: give it with -v {name}=VALUE{known}")
        return variables[name]

    return VARIABLE_RE.sub(one, text)


def parse_variables(pairs: list[str]) -> dict[str, str]:
    """`-v KEY=VAL` occurrences, one pair each (a value may hold commas and `=`); a later KEY wins."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not VARIABLE_NAME_RE.fullmatch(key):
            raise SpecError(f"-v {pair}: give KEY=VALUE, KEY of letters, digits and _")
        out[key] = value
    return out

"""Reading a workflow file (hyperbatch.core.workflows) into the request `POST /workflows` takes.

The file is YAML. PyYAML's composer keeps each node's mark, so every field path
(`jobs.square.array`) has a line; an error, found here or by the API, names the
file, that line and the field: `sweep.yaml:5: jobs.square.array: ...`.

`-v KEY=VAL` substitutes `${KEY}` in the file's string values (never in keys or in
the structure, so a value cannot change the file's shape, and lines stay where they
are); `$${KEY}` is a literal `${KEY}`; an unknown KEY is an error. A step's
`script` is a path relative to the file: its text is sent, and the job is named
after the step unless the step or the script's header names it.

What YAML allows but a workflow cannot mean is refused before anything is built from the file
(`_check`): a key given twice in one mapping (YAML says keys are unique; PyYAML would keep the
last silently, so a step pasted twice would vanish), an alias inside the node it names (a value
with no end), nesting deeper than the API takes, and aliases that expand past MAX_VALUES (ten
lines of aliases can name 10^9 values).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hyperbatch.cli.errors import UsageError
from hyperbatch.core import limits, workflows
from hyperbatch.core.errors import SpecError

class _Loader(yaml.SafeLoader):
    """YAML read as the JSON the API takes: a timestamp stays the text it is written as (a job's
    `RUN_DATE: 2024-01-01` is text, and JSON has no dates)."""


_Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)
JSON_KINDS = (str, int, float, bool, type(None), dict, list)  # what else YAML makes (!!binary, !!set) JSON lacks

MAX_VALUES = 1_000_000  # what a file may hold once its aliases are expanded: more than a 10 MiB body can
MERGE_TAG = "tag:yaml.org,2002:merge"  # `<<: *defaults`, whose keys the mapping's own keys override


@dataclass
class WorkflowFile:
    """A file read: the request to send, and the line of every field path."""

    path: Path
    request: dict[str, Any]
    lines: dict[str, int] = field(default_factory=dict)

    def locate(self, message: str) -> str:
        """`message` (`jobs.square.array: ...`) prefixed with `FILE:LINE: ` for the longest field path it
        starts with (its key after the path too: `jobs.a.depends_on: b: ...` is the line of b)."""
        return f"{self.path}:{self.line_of(message)}: {message}"

    def line_of(self, message: str) -> int:
        parts = message.split(": ")
        path = parts[0].strip()
        if len(parts) > 2 and f"{path}.{parts[1]}" in self.lines:
            path = f"{path}.{parts[1]}"
        while path and path not in self.lines:
            path = path.rpartition(".")[0]
        return self.lines.get(path, 1)


def load(path: Path, variables: dict[str, str]) -> WorkflowFile:
    """Read, substitute and resolve the file; UsageError `FILE:LINE: field: what` for what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check(path, node)
        data = loader.construct_document(node) if node is not None else None
    except RecursionError:  # PyYAML's composer recurses once a level
        raise UsageError(f"{path}: lists and mappings nest more than {limits.MAX_JSON_DEPTH} deep") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise UsageError(f"{path}:{line}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise UsageError(f"{path}:1: a workflow is a mapping of name, defaults and jobs (see README, Workflows)")
    found = WorkflowFile(path, data)
    _lines(node, "", found.lines)
    try:
        found.request = _substituted(data, variables, "", found)
    except SpecError as exc:
        raise UsageError(found.locate(str(exc))) from None
    _read_scripts(found)
    jobs = found.request.get("jobs")
    if isinstance(jobs, dict) and all(isinstance(s, dict) for s in jobs.values()):
        try:
            workflows.order(jobs)  # a cycle or an unknown step: said here with its line, also checked by the API
        except SpecError as exc:
            raise UsageError(found.locate(str(exc))) from None
    return found


def _check(path: Path, root: yaml.Node) -> None:
    """UsageError `FILE:LINE: field: what` for a duplicate key, an alias inside itself, nesting deeper
    than limits.MAX_JSON_DEPTH or more than MAX_VALUES values once aliases are expanded (see the module)."""
    count = 0
    inside: list[int] = []  # the nodes being walked, outermost first: an alias of one of them never ends

    def refuse(node: yaml.Node, field: str, what: str) -> UsageError:
        return UsageError(f"{path}:{node.start_mark.line + 1}: {field + ': ' if field else ''}{what}")

    def walk(node: yaml.Node, field: str) -> None:
        nonlocal count
        count += 1
        if count > MAX_VALUES:
            raise refuse(node, field, f"the file's aliases expand to more than {MAX_VALUES:,} values")
        if id(node) in inside:
            raise refuse(node, field, "an alias of a value that contains it: the value would have no end")
        if len(inside) >= limits.MAX_JSON_DEPTH:
            raise refuse(node, field, f"lists and mappings nest more than {limits.MAX_JSON_DEPTH} deep")
        inside.append(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                if key.tag == MERGE_TAG:
                    walk(value, field)
                    continue
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else None
                child = f"{field}.{name}" if field else str(name)
                if name is not None and name in first:
                    raise refuse(key, child, f"given twice in one mapping (first on line {first[name]}): keep one")
                if name is not None:
                    first[name] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{field}.{i}" if field else str(i))
        inside.pop()

    walk(root, "")


def _lines(node: yaml.Node, path: str, out: dict[str, int]) -> None:
    """Every field path's line: a mapping entry's is its key's line, a list item's its own."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = f"{path}.{key.value}" if path else str(key.value)
            out.setdefault(child, key.start_mark.line + 1)
            _lines(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{path}.{i}"
            out.setdefault(child, item.start_mark.line + 1)
            _lines(item, child, out)


def _substituted(value: Any, variables: dict[str, str], path: str, found: WorkflowFile) -> Any:
    if isinstance(value, str):
        try:
            return workflows.substitute(value, variables)
        except SpecError as exc:
            raise SpecError(f"{path}: {exc}") from None
    if isinstance(value, dict):
        return {k: _substituted(v, variables, f"{path}.{k}" if path else str(k), found) for k, v in value.items()}
    if isinstance(value, list):
        return [_substituted(v, variables, f"{path}.{i}", found) for i, v in enumerate(value)]
    if not isinstance(value, JSON_KINDS):
        raise SpecError(f"{path}: give text, a number, true or false, a list or a mapping (YAML's "
                        f"{type(value).__name__} has no JSON form)")
    return value


def _read_scripts(found: WorkflowFile) -> None:
    """Each step's `script` path (relative to the file) replaced by the script's text, read as qsub reads
    a script (a regular file of text: a FIFO or /dev/zero would never end)."""
    from hyperbatch.cli.pbs.qsub import read_script_file

    jobs = found.request.get("jobs")
    if not isinstance(jobs, dict):
        return
    for step, spec in jobs.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("script"), str):
            continue
        where = found.path.parent / os.path.expanduser(spec["script"])
        try:
            text = read_script_file(str(where), stdin_hint=False)
        except UsageError as exc:
            raise UsageError(found.locate(f"jobs.{step}.script: {exc.message}")) from None
        spec.setdefault("script_name", where.name)
        spec["script"] = text


def plan(found: WorkflowFile) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The file's steps (file order) and dependencies (parent, child, kind), for drawing."""
    jobs = found.request.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        raise UsageError(found.locate("jobs: give one step or more, as in jobs: {hello: {command: [echo, hi]}}"))
    if not all(isinstance(spec, dict) for spec in jobs.values()):
        bad = next(step for step, spec in jobs.items() if not isinstance(spec, dict))
        raise UsageError(found.locate(f"jobs.{bad}: a step is a mapping, as in {{command: [echo, hi]}}"))
    try:
        workflows.order(jobs)
    except SpecError as exc:
        raise UsageError(found.locate(str(exc))) from None
    edges = [(parent, step, kind) for step, spec in jobs.items()
             for parent, kind in workflows.parents(spec.get("depends_on")).items()]
    return list(jobs), edges

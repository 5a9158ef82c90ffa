"""Job dependencies in PBS syntax (`afterok:A:B,afterany:C`) and the rule that says when they hold.

A dependency names a whole job or a whole array, never one array task.
"""

from __future__ import annotations

from collections import namedtuple

from hyperbatch.core.errors import PBSE_BADDEPEND, SpecError
from hyperbatch.core.ids import EXAMPLE, parse_job_ref
from hyperbatch.core.states import JobState

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: qsub reads this module, and importing typing costs milliseconds
if TYPE_CHECKING:
    from typing import Callable, Mapping

KINDS: tuple[str, ...] = ("afterok", "afterany", "afternotok")
_HINT = f"as in afterok:{EXAMPLE} or afterok:ID1:ID2,afterany:ID3"


class Dependency(namedtuple("Dependency", "kind job_id")):
    """One dependency: its kind (afterok, afterany, afternotok) and the job's id. A named tuple, not a
    dataclass: qsub reads this module on every start (bench/latency.py)."""

    __slots__ = ()

    def __new__(cls, kind: str, job_id: str) -> "Dependency":
        # parse_depend validates job ids; the constructor checks only the kind.
        if kind not in KINDS:
            raise SpecError(f"dependency kind '{kind}': use afterok, afterany or afternotok")
        return super().__new__(cls, kind, job_id)

    def __str__(self) -> str:
        return f"{self.kind}:{self.job_id}"


def _job_id(text: str, kind: str) -> str:
    try:
        ref = parse_job_ref(text)
    except SpecError:
        raise SpecError(f"dependency {kind}:{text}: '{text}' is not a job id, {_HINT}", pbs_errno=PBSE_BADDEPEND) from None
    if ref.index is not None:
        raise SpecError(
            f"dependency {kind}:{text}: an array task cannot be a dependency; "
            f"depend on the whole array, as in {kind}:{ref.seq}[]",
            pbs_errno=PBSE_BADDEPEND,
        )
    return ref.seq


def parse_depend(text: str) -> list[Dependency]:
    """Parse `[depend=]afterok:ID[:ID...][,afterany:ID][,afternotok:ID]`; duplicates dropped, order kept.

    An ID is given as PBS prints it or as its number alone (`1234.server`, `1234`); `ID[]` (PBS for
    a whole array) is read as `ID`. The result names jobs by their internal ids (`1234`).
    """
    body = text.strip()
    body = body[len("depend="):] if body.startswith("depend=") else body
    deps: dict[Dependency, None] = {}
    for group in (g.strip() for g in body.split(",")) if body else ():
        if not group:
            raise SpecError(f"dependency '{text.strip()}': remove the empty entry between commas, {_HINT}")
        given, _, ids = group.partition(":")
        kind = given.strip().lower()
        if kind not in KINDS:
            raise SpecError(
                f"dependency '{group}': unknown kind '{given.strip()}'; use afterok, afterany or afternotok, {_HINT}"
            )
        names = [n.strip() for n in ids.split(":")] if ids.strip() else []
        if not names or not all(names):
            raise SpecError(f"dependency '{group}': give one or more job ids after '{kind}:', {_HINT}")
        for name in names:
            deps[Dependency(kind, _job_id(name, kind))] = None
    return list(deps)


def format_depend(deps: list[Dependency]) -> str:
    """Inverse of parse_depend, grouping consecutive equal kinds: `afterok:A:B,afterany:C`."""
    groups: list[list[str]] = []
    for dep in deps:
        if groups and groups[-1][0] == dep.kind:
            groups[-1].append(dep.job_id)
        else:
            groups.append([dep.kind, dep.job_id])
    return ",".join(":".join(group) for group in groups)


def _check(dep: Dependency, state: JobState | None, name: str) -> tuple[str, str]:
    """("met" | "wait" | "never", why) for one dependency given its parent's state (None: no such job)."""
    if state is None:
        return "never", f"{name} does not exist"
    if not state.final:
        return "wait", ""
    succeeded = state is JobState.SUCCEEDED
    holds = {"afterok": succeeded, "afterany": True, "afternotok": not succeeded}[dep.kind]
    return ("met", "") if holds else ("never", f"{name} {state.value}")


def format_pbs(deps: list[Dependency], name: Callable[[str], str]) -> str:
    """The dependencies as users name the jobs (`name` turns an id into `1234.server`)."""
    return format_depend([Dependency(d.kind, name(d.job_id)) for d in deps])


def evaluate(deps: list[Dependency], states: Mapping[str, JobState],
             name: Callable[[str], str] = str) -> tuple[str, str]:
    """("met", "") when every dependency holds, ("never", reason) when one never can, else ("wait", "").

    afterok needs SUCCEEDED; afternotok needs FAILED or CANCELLED; afterany needs any final state.
    A parent missing from `states` can never satisfy anything. `name` shows an id in the reason.
    """
    waiting = False
    for dep in deps:
        state = states.get(dep.job_id)
        verdict, why = _check(dep, JobState(state) if state is not None else None, name(dep.job_id))
        if verdict == "never":
            return "never", f"dependency {dep.kind}:{name(dep.job_id)} can never be met: {why}"
        waiting = waiting or verdict == "wait"
    return ("wait", "") if waiting else ("met", "")

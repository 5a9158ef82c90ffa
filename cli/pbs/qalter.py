"""qalter: change jobs that have not started (PATCH /jobs/ID), as PBS Pro's qalter.

    qalter [-N name] [-p priority] [-l walltime=...,res=...] [-h u|o|s|n] [-W depend=...] job_identifier...

A running job (or an array with a task started) cannot be altered:
`qalter: Cannot modify attribute while job running  123.server`, exit 167;
a finished one exits 35. Options HyperBatch cannot honour yet are refused
with a one-line reason (`REFUSED`).
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds, and only checkers need it
if TYPE_CHECKING:
    from typing import Any, Callable

from hyperbatch.cli.errors import UsageError
from hyperbatch.cli.pbs.common import ShowUsage, each_job, job_path, parse, run, split_items

SPEC = "a:A:c:e:h:j:k:l:m:M:N:o:p:r:R:S:u:W:P:"
USAGE = """usage: qalter [-a date_time] [-A account_string] [-c interval] [-e path]
\t[-h hold_list] [-j y|n] [-k keep] [-l resource_list]
\t[-m mail_options] [-M user_list] [-N jobname] [-o path] [-p priority]
\t[-R o|e|oe] [-r y|n] [-S path] [-u user_list] [-W dependency_list]
\t[-P project_name] job_identifier...
       qalter --version
"""


def _illegal(flag: str) -> ShowUsage:
    return ShowUsage(f"qalter: illegal -{flag} value")


def _name(value: str, body: dict) -> None:
    from hyperbatch.core.limits import NAME_RE  # the API's rule; imported here, where -N is given: it loads typing

    if not NAME_RE.fullmatch(value):
        raise _illegal("N")
    body["name"] = value


def _priority(value: str, body: dict) -> None:
    if not re.fullmatch(r"[+-]?[0-9]{1,5}", value.strip()) or not -1024 <= int(value) <= 1023:
        raise _illegal("p")
    body["priority"] = int(value)


def _resources(value: str, body: dict) -> None:
    for item in split_items(value):
        key, sep, val = item.partition("=")
        if not sep or not key.strip() or not val.strip():
            raise _illegal("l")
        if key.strip().lower() == "walltime":
            body["walltime"] = val.strip()
        else:
            body.setdefault("resources", {})[key.strip()] = val.strip()


def _hold(value: str, body: dict) -> None:
    if not value or any(ch not in "uosn" for ch in value) or ("n" in value and len(value) > 1):
        raise _illegal("h")
    body["hold"] = value != "n"


def _attributes(value: str, body: dict) -> None:
    key, sep, val = value.partition("=")
    if key.strip().lower() != "depend" or not sep:
        raise UsageError(f"-W {key.strip() or value}: only -W depend=... can be altered")
    body["depend"] = val.strip()


# The options qalter takes, in one place: flag -> what it sets in the PATCH body. The qsub option
# table (one definition per option, shared by qsub, directives, the API and qalter) replaces it.
OPTIONS: dict[str, Callable[[str, dict], None]] = {
    "N": _name, "p": _priority, "l": _resources, "h": _hold, "W": _attributes,
}
REFUSED = {
    flag: f"-{flag} ({what}) cannot be altered yet: it comes with the qsub option of the same name"
    for flag, what in (
        ("a", "execution time"), ("A", "account"), ("c", "checkpoint"), ("e", "error path"), ("j", "join"),
        ("k", "keep files"), ("m", "mail points"), ("M", "mail users"), ("o", "output path"),
        ("r", "rerunable"), ("R", "remove files"), ("S", "shell"), ("u", "user list"), ("P", "project"),
    )
}


def request_body(opts: list[tuple[str, Any]]) -> dict:
    body: dict = {}
    for opt, value in opts:
        flag = opt.lstrip("-")
        if flag in REFUSED:
            raise UsageError(REFUSED[flag])
        OPTIONS[flag](value or "", body)
    return body


def qalter(args: list[str]) -> int:
    opts, ids = parse(args, SPEC)
    body = request_body(opts)
    if not ids or not body:
        raise ShowUsage()
    return each_job("qalter", ids, lambda client, text: client.request("PATCH", job_path(text), body=body))


def qalter_main(argv: list[str] | None = None) -> int:
    return run("qalter", qalter, argv, USAGE)

"""qalter: change jobs that have not started (PATCH /jobs/ID), as PBS Pro's qalter.

    qalter [-a date_time] [-A account] [-c interval] [-e path] [-h hold_list] [-j join] [-k keep]
           [-l resource_list] [-m mail_options] [-M user_list] [-N name] [-o path] [-p priority]
           [-R o|e|oe] [-r y|n] [-S path] [-W attr=value] [-P project] job_identifier...

Every option is read by qsub's option table (hyperbatch.core.options), so a value means what it
means to qsub; -h takes PBS's hold list (u, o, s; n releases). A running job (or an array with a
task started) cannot be altered: `qalter: Cannot modify attribute while job running  123.server`,
exit 167; a finished one exits 35. An option HyperBatch cannot honour is refused with the table's
one-line reason.
"""

from __future__ import annotations

from hyperbatch.cli.errors import UsageError
from hyperbatch.cli.pbs.common import ShowUsage, each_job, job_path, option_context, parse, run

SPEC = "a:A:c:e:h:j:k:l:m:M:N:o:p:r:R:S:u:W:P:"
USAGE = """usage: qalter [-a date_time] [-A account_string] [-c interval] [-e path]
\t[-h hold_list] [-j y|n] [-k keep] [-l resource_list]
\t[-m mail_options] [-M user_list] [-N jobname] [-o path] [-p priority]
\t[-R o|e|oe] [-r y|n] [-S path] [-u user_list] [-W dependency_list]
\t[-P project_name] job_identifier...
       qalter --version
"""


def _hold(value: str, body: dict) -> None:
    """qalter's -h takes PBS's hold list (u, o, s; n releases), unlike qsub's flag."""
    if not value or any(ch not in "uosn" for ch in value) or ("n" in value and len(value) > 1):
        raise ShowUsage("qalter: illegal -h value")
    body["hold"] = value != "n"


def request_body(opts: list[tuple[str, str | None]]) -> dict:
    """The PATCH body: each option read by the qsub option table (hyperbatch.core.options), as qsub
    reads it; an attribute a job that has not started cannot change (options.ALTERABLE) is refused."""
    from hyperbatch.core import options
    from hyperbatch.core.errors import SpecError

    ctx = option_context()
    body: dict = {}
    for flag, value in opts:
        if flag == "-h":
            _hold(value or "", body)
            continue
        try:
            found = options.occurrence(flag, value, ctx)
        except SpecError as exc:
            if str(exc).startswith("-"):  # a refusal, which names the option and says why
                raise UsageError(str(exc)) from None
            raise ShowUsage(f"qalter: illegal {flag} value") from None
        for key in found:
            if key not in options.ALTERABLE:
                raise UsageError(f"{flag} {key}: cannot be altered (qalter changes {', '.join(options.ALTERABLE)})")
        options.merge_into(body, found)
    return body


def qalter(args: list[str]) -> int:
    opts, ids = parse(args, SPEC)
    body = request_body(opts)
    if not ids or not body:
        raise ShowUsage()
    return each_job("qalter", ids, lambda client, text: client.request("PATCH", job_path(text), body=body))


def qalter_main(argv: list[str] | None = None) -> int:
    return run("qalter", qalter, argv, USAGE)

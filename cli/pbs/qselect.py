"""qselect: print the ids of the jobs that match, one per line, as PBS Pro's qselect.

    qselect [-a [op]date_time] [-A account] [-c [op]interval] [-h hold_list] [-H] [-J]
            [-l res.op.value[,...]] [-N name] [-p [op]priority] [-q destination] [-r y|n]
            [-s states] [-t subopt[op]date_time] [-T] [-P project] [-x] [-u user[,user]]

Operators are PBS's `.eq. .ne. .ge. .gt. .le. .lt.` (`-p .gt.10`,
`-l ncpus.ge.4,walltime.lt.01:00:00`); without one, `.eq.`. Only unfinished
jobs are considered unless -x or -H asks for finished ones, so a selection
costs what it lists, not what the history holds. Ids are printed as qsub
printed them (arrays `N[].SERVER`; with -T their tasks `N[I].SERVER` too).
"""

from __future__ import annotations

import re
import sys
import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds, and only checkers need it
if TYPE_CHECKING:
    from typing import Any, Callable

from hyperbatch.cli.errors import ApiError, CliError
from hyperbatch.cli.pbs.common import ShowUsage, api_client, iter_tasks, list_jobs, parse, run

SPEC = "a:A:c:h:HJl:N:p:q:r:s:t:Tu:xP:"
USAGE = """usage: qselect [-a [op]date_time] [-A account_string] [-c [op]interval]
\t[-h hold_list] [-H] [-J] [-l resource_list] [-N name] [-p [op]priority]
\t[-q destination] [-r y|n] [-s states] [-t subopt[op]date_time] [-T] [-P project_name]
\t[-x] [-u user_name]
       qselect --version
"""
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "ge": lambda a, b: a >= b,
    "gt": lambda a, b: a > b, "le": lambda a, b: a <= b, "lt": lambda a, b: a < b,
}
STATES = set("BEFHMQRSTUWX")
# -t sub-options: the job attribute each compares (PBS's c e g m q s t a).
TIMES = {"c": "ctime", "e": "etime", "g": "eligible_time", "m": "mtime", "q": "qtime", "s": "stime",
         "t": "estimated.start_time", "a": "Execution_Time"}

Test = "Callable[[dict], bool]"


def split_op(text: str) -> tuple[str, str]:
    """`.gt.10` -> ("gt", "10"); `10` -> ("eq", "10")."""
    match = re.match(r"\.(eq|ne|ge|gt|le|lt)\.", text)
    return (match[1], text[match.end():]) if match else ("eq", text)


def cvtdate(text: str, now: float | None = None) -> float:
    """PBS's [[[[CC]YY]MM]DD]hhmm[.SS] in local time; ValueError when malformed."""
    match = re.fullmatch(r"([0-9]{4}|[0-9]{6}|[0-9]{8}|[0-9]{10}|[0-9]{12})(?:\.([0-9]{2}))?", text.strip())
    if match is None:
        raise ValueError(text)
    digits, seconds = match[1], int(match[2] or 0)
    today = time.localtime(now)
    parts = {"CC": today.tm_year // 100, "YY": today.tm_year % 100, "MM": today.tm_mon, "DD": today.tm_mday}
    names = ["CC", "YY", "MM", "DD"][4 - (len(digits) - 4) // 2:]
    for i, name in enumerate(names):
        parts[name] = int(digits[2 * i:2 * i + 2])
    hour, minute = int(digits[-4:-2]), int(digits[-2:])
    if not (1 <= parts["MM"] <= 12 and 1 <= parts["DD"] <= 31 and hour < 24 and minute < 60 and seconds < 61):
        raise ValueError(text)
    return time.mktime((parts["CC"] * 100 + parts["YY"], parts["MM"], parts["DD"], hour, minute, seconds, 0, 0, -1))


def _seconds(text: str) -> float:
    total = 0.0
    for part in str(text).split(":"):
        total = total * 60 + float(part)
    return total


def _size(text: str) -> float:
    match = re.fullmatch(r"([0-9]+)\s*([kmgtp]?)([bw]?)", str(text).strip().lower())
    if match is None:
        raise ValueError(text)
    return int(match[1]) * 1024 ** " kmgtp".index(match[2] or " ") * (8 if match[3] == "w" else 1)


def _comparable(resource: str, value: Any) -> Any:
    text = str(value)
    if resource in ("walltime", "cput"):
        return _seconds(text)
    if resource in ("mem", "vmem"):
        return _size(text)
    return int(text) if text.lstrip("-").isdigit() else text


class Selection:
    """The command line as a listing query and tests on each job's PBS attributes."""

    def __init__(self, opts: list[tuple[str, str | None]]):
        self.history = self.only_history = self.arrays = self.tasks = False
        self.queue: str | None = None
        self.users: list[str] = []
        self.tests: list[tuple[str, Test]] = []  # (what, test) on a row of PBS attributes
        for opt, value in opts:
            self._option(opt.lstrip("-"), value or "")

    def _option(self, flag: str, value: str) -> None:
        if flag == "x":
            self.history = True
        elif flag == "H":
            self.history = self.only_history = True
        elif flag == "J":
            self.arrays = True
        elif flag == "T":
            self.tasks = True
        elif flag == "q":
            self.queue = split_op(value)[1].split("@", 1)[0] or None
        elif flag == "u":
            self.users += [u.split("@", 1)[0] for u in value.split(",") if u]
        elif flag == "N":
            self._test(lambda r: r.get("Job_Name") == value)
        elif flag == "A":
            self._test(lambda r: r.get("Account_Name") == value)
        elif flag == "P":
            self._test(lambda r: r.get("project") == value)
        elif flag == "r":
            answer = value.strip()[:1]
            if answer not in ("y", "n"):
                raise ShowUsage("qselect: illegal -r value")
            self._test(lambda r: (r.get("Rerunable") != "False") == (answer == "y"))
        elif flag == "s":
            op, letters = split_op(value)
            letters = letters.strip()
            if not letters or set(letters) - STATES or op not in ("eq", "ne"):
                raise ShowUsage("qselect: illegal -s value")
            self._test(lambda r: (r.get("job_state") in letters) == (op == "eq"))
        elif flag == "h":
            op, holds = split_op(value)
            if not holds or set(holds) - set("uosnp"):
                raise ShowUsage("qselect: illegal -h value")
            want = "n" if holds == "n" else "u"
            self._test(lambda r: OPERATORS[op](r.get("Hold_Types"), want))
        elif flag == "p":
            op, number = split_op(value)
            if not re.fullmatch(r"[+-]?[0-9]+", number.strip()):
                raise ShowUsage("qselect: illegal -p value")
            self._test(lambda r: OPERATORS[op](int(r.get("Priority") or 0), int(number)))
        elif flag == "c":
            op, interval = split_op(value)
            if not interval.strip():
                raise ShowUsage("qselect: illegal -c value")
            self._test(lambda r: OPERATORS[op](r.get("Checkpoint"), interval.strip()))
        elif flag == "l":
            self._resources(value)
        elif flag in ("a", "t"):
            self._time(flag, value)

    def _test(self, test: Test) -> None:
        self.tests.append(("", test))

    def _resources(self, value: str) -> None:
        for item in value.split(","):
            match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\.(eq|ne|ge|gt|le|lt)\.(.+)", item.strip())
            if match is None:
                raise ShowUsage(f"qselect: illegal -l value\nresource_list: {value}")
            resource, op, wanted = match[1], match[2], match[3]
            try:
                target = _comparable(resource, wanted)
            except ValueError:
                raise ShowUsage(f"qselect: illegal -l value\nresource_list: {value}") from None

            def test(row: dict, resource=resource, op=op, target=target) -> bool:
                have = row.get(f"Resource_List.{resource}")
                if have is None:
                    return False
                try:
                    mine = _comparable(resource, have)
                    return OPERATORS[op](mine, target)
                except (ValueError, TypeError):
                    return False

            self._test(test)

    def _time(self, flag: str, value: str) -> None:
        if flag == "t":
            if value[:1] not in TIMES:
                raise ShowUsage("qselect: illegal -t value")
            attribute, value = TIMES[value[0]], value[1:]
        else:
            attribute = "Execution_Time"
        op, text = split_op(value)
        try:
            when = cvtdate(text)
        except ValueError:
            raise ShowUsage(f"qselect: illegal -{flag} value") from None

        def test(row: dict) -> bool:
            have = row.get(attribute)
            if not have:
                return False
            try:
                mine = time.mktime(time.strptime(str(have), "%a %b %d %H:%M:%S %Y"))
            except ValueError:
                return False
            return OPERATORS[op](mine, when)

        self._test(test)

    def matches(self, row: dict) -> bool:
        if self.only_history and row.get("job_state") not in ("F", "M", "X"):
            return False
        return all(test(row) for _, test in self.tests)

    def states(self) -> str | None:
        return None if self.history else "WAITING,HELD,QUEUED,RUNNING"


def qselect(args: list[str]) -> int:
    from hyperbatch.cli import output

    opts, operands = parse(args, SPEC)
    if operands:
        raise ShowUsage()
    selection = Selection(opts)
    client = api_client()
    now = time.time()
    jobs: list[dict] = []
    try:
        for user in selection.users or ["*"]:
            jobs += list_jobs(client, {"owner": user, "queue": selection.queue, "state": selection.states()})
    except ApiError as exc:
        if exc.pbs_errno == 15018:
            raise CliError("Unknown queue", exit_code=exc.exit_code) from None
        raise
    if len(selection.users) > 1:
        jobs.sort(key=lambda j: int(j.get("seq") or 0))
    out = []
    for job in jobs:
        array = job.get("array") is not None
        if selection.arrays and not array:
            continue
        if not (selection.arrays and selection.tasks):
            row = output.row_of(output.job_attributes(job, now), job["id"])
            if selection.matches(row):
                out.append(job["id"])
        if selection.tasks and array:
            context = {k: job.get(k) for k in ("name", "owner", "queue", "server", "submitted_at")}
            for task in iter_tasks(client, job["id"]):
                task = {**context, **task, "array_id": job["id"]}
                if task.get("state") in output.FINAL_STATES and not selection.history:
                    continue
                row = output.row_of(output.task_attributes(task, now), task["id"])
                if selection.matches(row):
                    out.append(task["id"])
    sys.stdout.write("".join(f"{job_id}\n" for job_id in out))
    return 0


def qselect_main(argv: list[str] | None = None) -> int:
    return run("qselect", qselect, argv, USAGE)

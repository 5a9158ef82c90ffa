"""Every qsub option, defined once: its flag, whether a `#PBS` directive may carry it, the API
field it sets, its parser, its bounds and its help text.

The qsub command builds its click options from `OPTIONS`, the directive reader
(core/directives.py) parses `#PBS`/`#HYPER` lines with the same entries, and
the API's request model takes its fields from `FIELDS` (the canonical value of
each field, with the parser that reads it from PBS text). So a value is read
the same way on the command line, in a script and over the API, and an option
HyperBatch cannot honour is refused with the same one-line reason everywhere.

    occurrences ("-l", "walltime=1:00:00"), ("-N", "x"), ...
        -> parse_occurrences(...)  fields of the request ({"walltime": 3600, "name": "x"})
        -> combine(directives, command_line)   the command line wins, -l and -v merge per key
        -> finish(fields, ...)     cross-option rules and derived values (Resource_List, paths)

Keys of `CLIENT_KEYS` are for qsub itself (-V, -z, -C, -W block, --wait); the API never
sees them. Every bound is hyperbatch.core.limits'.
"""

from __future__ import annotations

import os
import re
import time
from collections import namedtuple

from hyperbatch.core import notices, staging
from hyperbatch.core.patterns import lazy
from hyperbatch.core.arrays import ArraySpec, parse_array
from hyperbatch.core.dependencies import format_depend, parse_depend
from hyperbatch.core.errors import SpecError

from hyperbatch.core.limits import (
    ENV_NAME_RE,
    MAX_ARRAY_SPEC_CHARS,
    MAX_ATTEMPTS,
    MAX_DEPEND_CHARS,
    MAX_ENV_VARS,
    MAX_NAME,
    MAX_NCPUS,
    MAX_NGPUS,
    MAX_TEXT,
    MAX_WALLTIME_SECONDS,
    PRIORITY_MAX,
    PRIORITY_MIN,
    check_name,
    check_priority,
    check_walltime,
)
from hyperbatch.core.limits import MAX_ENV_BYTES as MAX_ENV_VALUE
from hyperbatch.core.limits import MAX_PATH_BYTES as MAX_PATH
from hyperbatch.core.limits import MAX_REF_CHARS as MAX_QUEUE
from hyperbatch.core.limits import check_env as _check_env_bytes

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: qsub reads this module, and importing typing costs milliseconds
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Mapping

MAX_RETRIES = MAX_ATTEMPTS - 1
_CLOCK_RE = lazy(r"(?:(?:([0-9]{1,9}):)?([0-9]{1,9}):)?([0-9]{1,9})")
_UNITS_RE = lazy(r"(?:([0-9]{1,9})h)?(?:([0-9]{1,9})m)?(?:([0-9]{1,9})s)?", re.IGNORECASE)
_SIZE_RE = lazy(r"([0-9]{1,18})([kmgtp]?)([bw]?)", re.IGNORECASE)
_SIZE_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50}

# The fields qsub keeps for itself: never sent to the API.
CLIENT_KEYS = frozenset({"export_all", "quiet", "prefix", "block", "wait", "no_fork"})


# The small records below are named tuples, not dataclasses: qsub reads this module on every start,
# and dataclasses (with inspect) would double its import time (bench/latency.py).


class Context(namedtuple("Context", "now environ host cwd", defaults=(None, None, None, None))):
    """What parsing may depend on besides the text: the time `-a` counts from (`now`, epoch seconds,
    local time zone), qsub's environment (`environ`: `-v VAR` without a value, `-V`), the submit
    `host` and directory (`cwd`). None: not known (the API's requests)."""

    __slots__ = ()

    def clock(self) -> float:
        return time.time() if self.now is None else self.now


# =============================================================================================
# value parsers: text -> canonical value, or SpecError saying what to fix


def parse_walltime(text: str) -> int:
    """Seconds from `[[HH:]MM:]SS` (`01:30:00`, `90:00`, `45`) or units (`1h`, `30m`, `90s`, `2h30m`).

    The leading field may be any size (`100:00:00`, `90:00`, `0:5:0`); later fields must be below 60.
    """
    value = text.strip()
    hint = f"walltime '{value}': use HH:MM:SS, as in 01:30:00 (or 1h, 30m, 90s, 2h30m)"
    if clock := _CLOCK_RE.fullmatch(value):
        fields = [int(f) for f in clock.groups() if f is not None]
        if any(f >= 60 for f in fields[1:]):
            raise SpecError(f"{hint}; minutes and seconds after the first field must be below 60")
        seconds = 0
        for part in fields:
            seconds = seconds * 60 + part
    elif (units := _UNITS_RE.fullmatch(value)) and value:
        hours, minutes, secs = (int(f or 0) for f in units.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    else:
        raise SpecError(hint)
    if seconds <= 0:
        raise SpecError(f"walltime '{value}': must be more than zero, as in 01:30:00")
    if seconds > MAX_WALLTIME_SECONDS:
        raise SpecError(f"walltime '{value}': give 1 to {MAX_WALLTIME_SECONDS} seconds "
                        f"(up to {MAX_WALLTIME_SECONDS // 3600}:00:00, a year)")
    return seconds


def format_walltime(seconds: int) -> str:
    """`HH:MM:SS` (hours may exceed 24), the form qstat shows."""
    if seconds < 0:
        raise ValueError(f"walltime {seconds}: must not be negative")
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def parse_size(text: str, what: str = "mem") -> str:
    """A PBS size (`4gb`, `512MB`, `1024`, `100kb`, `2w`) in PBS's own lower-case form (`4gb`, `1024b`)."""
    value = text.strip()
    match = _SIZE_RE.fullmatch(value)
    if match is None:
        raise SpecError(f"{what} '{value}': give a whole number with an optional unit, as in 4gb, 512mb or 100kb")
    number, scale, unit = match.groups()
    if int(number) == 0:
        raise SpecError(f"{what} '{value}': must be more than zero, as in 4gb")
    return f"{int(number)}{scale.lower()}{(unit or 'b').lower()}"


def size_bytes(size: str) -> int:
    """Bytes in a size `parse_size` returned (a word is 8 bytes)."""
    match = _SIZE_RE.fullmatch(size)
    if match is None:
        raise SpecError(f"size '{size}': not a size parse_size returned")
    number, scale, unit = match.groups()
    return (int(number) << _SIZE_SHIFT[scale.lower()]) * (8 if unit.lower() == "w" else 1)


def _count(text: Any, what: str, low: int, high: int) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif isinstance(text, str) and re.fullmatch(r"\s*[+-]?[0-9]{1,9}\s*", text):
        value = int(text)
    else:
        raise SpecError(f"{what} '{text}': give a whole number from {low} to {high}")
    if not low <= value <= high:
        raise SpecError(f"{what} {value}: must be from {low} to {high}")
    return value


def parse_priority(text: str | int) -> int:
    """An integer from -1024 to 1023 (the PBS range); higher runs first."""
    if isinstance(text, int) and not isinstance(text, bool):
        return check_priority(text)  # an absurd number is not printed whole
    return _count(text, "priority", PRIORITY_MIN, PRIORITY_MAX)


def default_name(source: str | None) -> str:
    """The name of a job that names none: the script's file name (cleaned), else STDIN, as PBS."""
    base = os.path.basename(str(source or "").rstrip("/"))
    if not base or source in ("STDIN", "-"):
        return "STDIN"
    cleaned = "".join(c if c.isalnum() or c in "._+-" else "_" for c in base)[:MAX_NAME]
    return cleaned or "STDIN"


def _text(value: Any, what: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{what}: give a value")
    value = value.strip()
    if len(value) > limit or any(c in value for c in "\n\r\0"):
        raise SpecError(f"{what}: at most {limit} characters on one line")
    return value


# One `-v` item: NAME[=VALUE] then a comma or the end; a value wholly in quotes may hold commas.
_ENV_ITEM_RE = lazy(r"""\s*([^=,]*)(?:(=)(?:"([^"]*)"|'([^']*)'|([^,]*)))?(?:,|\Z)""")


def parse_env(text: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`-v` list `A=1,B=two words,C=,HOME` -> {"A": "1", "B": "two words", "C": "", "HOME": ...}.

    Values are kept verbatim, except that a value wholly in quotes ('x,y' or "x,y") may contain
    commas and loses its quotes. A bare name takes its value from `environ` (qsub's environment);
    with no `environ` (the API) it is an error.
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
        if not name:
            raise SpecError(f"environment '{match.group(0).strip().rstrip(',')}': give VAR=value, as in -v DEBUG=1")
        check_env_name(name)
        if eq:
            out[name] = next(v for v in (double, single, raw) if v is not None)
        elif environ is None:
            raise SpecError(f"environment '{name}': give VAR=value, as in -v DEBUG=1,NAME=run1")
        elif name in environ:
            out[name] = environ[name]
        else:
            raise SpecError(
                f"cannot send environment with the job: {name} is not set in your environment; "
                f"give a value with -v {name}=VALUE"
            )
    return out


def check_env_name(name: str) -> str:
    if not ENV_NAME_RE.fullmatch(name):
        raise SpecError(f"environment variable name '{name}': use letters, digits and _, not starting with a digit")
    if name.startswith("PBS_O_"):
        raise SpecError(f"environment variable {name}: PBS_O_* variables are set by qsub, not with -v")
    return name


def check_env(env: Any) -> dict[str, str]:
    """The API's `env` object: text names and values, within what execve takes (limits.check_env)."""
    if not isinstance(env, dict):
        raise SpecError("env: give an object of VAR: value")
    if len(env) > MAX_ENV_VARS:
        raise SpecError(f"env: at most {MAX_ENV_VARS} variables")
    for name, value in env.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise SpecError(f"environment variable {name!r}: give its value as text")
    return dict(_check_env_bytes(env))


# -V: what looks like a secret, or belongs to this login session rather than to the job, stays home.
_SECRETISH_RE = lazy(
    r"SECRET|TOKEN|PASSW|CREDENTIAL|PRIVATE|APIKEY|API_KEY|(^|_)KEY($|_)|(^|_)AUTH($|_)"
    r"|^(AWS_|SSH_|GPG_|HYPERBATCH_|BASH_FUNC_|PBS_O_)",
    re.IGNORECASE,
)
_SESSION_VARS = frozenset(
    {"_", "OLDPWD", "SHLVL", "DISPLAY", "XAUTHORITY", "DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR",
     "XDG_SESSION_ID", "WINDOWID", "TERM_SESSION_ID", "PWD"}
)


def exported_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What `qsub -V` sends: the whole environment less secrets, session variables and PBS_O_*."""
    return {
        k: v for k, v in environ.items()
        if k not in _SESSION_VARS and not _SECRETISH_RE.search(k) and ENV_NAME_RE.fullmatch(k)
        and len(v) <= MAX_ENV_VALUE and "\0" not in v
    }


# Variables qsub reads from the submitter's environment into PBS_O_* (PBS's order).
SUBMITTER_VARS = ("HOME", "LANG", "LOGNAME", "PATH", "MAIL", "SHELL", "TZ")


def submitter_environment(environ: Mapping[str, str], *, workdir: str | None, host: str | None,
                          system: str | None, user: str | None = None) -> dict[str, str]:
    """PBS_O_* as qsub sends them: HOME LANG LOGNAME PATH MAIL SHELL TZ (those set), WORKDIR, SYSTEM,
    HOST; the log-in name from USER or `user` (the account's) when LOGNAME is not set."""
    out = {f"PBS_O_{name}": environ[name] for name in SUBMITTER_VARS if environ.get(name)}
    out.setdefault("PBS_O_HOME", "/")
    login = environ.get("USER") or user
    if "PBS_O_LOGNAME" not in out and login:
        out["PBS_O_LOGNAME"] = login
    if workdir:
        out["PBS_O_WORKDIR"] = workdir
    if system:
        out["PBS_O_SYSTEM"] = system
    if host:
        out["PBS_O_HOST"] = host
    return out


def parse_execution_time(text: str, now: float) -> float:
    """`-a [[[[CC]YY]MM]DD]hhmm[.SS]` -> epoch seconds, local time, as PBS's cvtdate(): an hour
    and minute already past today mean tomorrow, a day already past this month means next month,
    a month already past this year means next year."""
    value = text.strip()
    bad = SpecError(f"illegal -a value '{value}': use [[[[CC]YY]MM]DD]hhmm[.SS], as in 1830 or 202612311830.00")
    digits, dot, seconds = value.partition(".")
    if dot and not re.fullmatch(r"[0-9]{2}", seconds) or not re.fullmatch(r"[0-9]+", digits):
        raise bad
    sec = int(seconds) if dot else 0
    if sec > 59 or len(digits) not in (4, 6, 8, 10, 12):
        raise bad
    local = time.localtime(now)
    year, month, day = local.tm_year, local.tm_mon, local.tm_mday
    given_year = given_month = given_day = False
    rest = digits
    if len(rest) == 12:
        year, rest, given_year = int(rest[:4]), rest[4:], True
    elif len(rest) == 10:
        yy = int(rest[:2])
        year, rest, given_year = (1900 + yy if yy > 68 else 2000 + yy), rest[2:], True
    if len(rest) == 8:
        month, rest, given_month = int(rest[:2]), rest[2:], True
        if not 1 <= month <= 12:
            raise bad
        if not given_year and month < local.tm_mon:
            year += 1
    if len(rest) == 6:
        day, rest, given_day = int(rest[:2]), rest[2:], True
        if not 1 <= day <= 31:
            raise bad
        if not given_month and day < local.tm_mday:
            month += 1
    hour, minute = int(rest[:2]), int(rest[2:])
    if hour > 23 or minute > 59:
        raise bad
    if not given_day and (hour, minute) <= (local.tm_hour, local.tm_min):
        day += 1  # that time has passed today: tomorrow
    # mktime normalises a day or month past the end (the 32nd, month 13), as PBS's does.
    return float(time.mktime((year, month, day, hour, minute, sec, 0, 0, -1)))


def check_execution_time(value: Any, now: float | None = None) -> float:
    if isinstance(value, str):
        return parse_execution_time(value, time.time() if now is None else now)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e11:
        return float(value)
    raise SpecError(f"execution time {value!r}: give epoch seconds or [[[[CC]YY]MM]DD]hhmm[.SS]")


def _letters(value: str, allowed: str, what: str, example: str, alone: str = "n") -> str:
    text = value.strip()
    if text == alone:
        return text
    if not text or any(c not in allowed for c in text) or len(set(text)) != len(text):
        raise SpecError(f"illegal {what} value '{text}': use {example}")
    return text


def parse_join(text: str) -> str:
    value = text.strip()
    if value not in ("oe", "eo", "n"):
        raise SpecError(f"illegal -j value '{value}': use oe (stderr into the output file), eo, or n")
    return value


def parse_keep(text: str) -> str:
    return _letters(text, "oed", "-k", "o, e, oe, d (write straight to the destination) or n")


def parse_remove(text: str) -> str:
    return _letters(text, "oe", "-R", "o, e or oe", alone="")


def parse_mail_points(text: str) -> str:
    return _letters(text, "abej", "-m", "any of a (aborted), b (began), e (ended), j (subjobs too), or n")


# One -M item as PBS parses it (OpenPBS parse_at.c, parse_at_item): a name of printable characters but
# '#' and '@', then optionally '@' and a host of the same.
_MAIL_USER_RE = lazy(r"[!-\"$-?A-~]+(?:@[!-\"$-?A-~]+)?")


def parse_mail_users(text: str) -> str:
    """-M: `user[@host][,user[@host]...]`; an empty item (`a,,b`, a trailing comma) or an item that is no
    name is refused, as PBS refuses it (parse_at_list)."""
    value = _text(text, "mail users")
    items = [item.strip() for item in value.split(",")]
    for item in items:
        if not _MAIL_USER_RE.fullmatch(item):
            raise SpecError(f"illegal -M value '{value[:80]}': give user[@host][,user[@host]...]"
                            + (f" ('{item[:40]}' is none)" if item else " with no empty item"))
    return ",".join(items)


def parse_checkpoint(text: str) -> str:
    value = text.strip()
    if value == "u" or not re.fullmatch(r"n|s|c|w|[cw]=[0-9]{1,9}", value):
        raise SpecError(f"illegal -c value '{value}': use n, s, c, c=MINUTES, w or w=MINUTES")
    return value


def parse_rerunnable(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    value = str(text).strip()
    if value not in ("y", "n"):
        raise SpecError(f"illegal -r value '{value}': use y (rerun the job if its worker is lost) or n")
    return value == "y"


def parse_umask(text: str | int) -> str:
    value = str(text).strip()
    if not re.fullmatch(r"[0-7]{1,4}", value):
        raise SpecError(f"umask '{value}': give octal digits, as in 022")
    return value.zfill(4)


def parse_sandbox(text: str) -> str:
    value = text.strip().upper()
    if value not in ("HOME", "PRIVATE"):
        raise SpecError(f"sandbox '{text.strip()}': use HOME (start in your home directory) or PRIVATE")
    return value


def parse_shell(text: str) -> str:
    value = _text(text, "-S", MAX_PATH)
    if "," in value or "@" in value:
        raise SpecError(f"illegal -S value '{value}': give one shell path, as in /bin/bash (no host lists)")
    if not value.startswith("/"):
        raise SpecError(f"illegal -S value '{value}': give the shell's absolute path, as in /bin/bash")
    return value


def parse_queue(text: str) -> str:
    value = _text(text, "queue", MAX_QUEUE + 256)
    if "@" in value:
        raise SpecError(f"destination '{value}': HyperBatch has one server; give the queue alone, as in -q batch")
    if len(value) > MAX_QUEUE:
        raise SpecError(f"queue '{value[:20]}...': at most {MAX_QUEUE} characters")
    return value


def parse_path(text: str, what: str, ctx: Context | None = None) -> str:
    """`[host:]path` for -o/-e: the path, absolute (relative to the submit directory when it is
    known); a trailing '/' names a directory. A host other than the submit host is refused:
    output is delivered where the job was submitted."""
    value = _text(text, what, MAX_PATH)
    host, colon, path = value.partition(":")
    if colon and "/" not in host and host:
        if ctx is not None and ctx.host and host.split(".")[0] != ctx.host.split(".")[0]:
            raise SpecError(f"illegal {what} value '{value}': output is delivered on the submit host; drop '{host}:'")
        value = path
    if not value:
        raise SpecError(f"illegal {what} value '{text.strip()}': give a file or directory path")
    if not value.startswith("/") and ctx is not None and ctx.cwd:
        is_dir = value.endswith("/")
        value = os.path.normpath(os.path.join(ctx.cwd, value)) + ("/" if is_dir else "")
    return value  # qsub adds a trailing '/' to an existing directory (it looks at the file system; the core does not)


# ---- -l resources -------------------------------------------------------------------------------

class Resource(namedtuple("Resource", "name parse help refused in_chunk", defaults=(None, False))):
    """One `-l` resource: its `parse` (text or number -> canonical value; None for select and the
    refused ones), `help`, why it is `refused`, and whether a select chunk may hold it (`in_chunk`)."""

    __slots__ = ()

    def read(self, raw: Any) -> Any:
        """The canonical value of `raw`; a resource with no parser of its own (select, refused ones) is
        read by parse_resource."""
        if self.parse is None:
            raise SpecError(f"-l {self.name}: {self.refused or 'give it on its own, as in -l select=1:ncpus=2'}")
        return self.parse(raw)


def _ncpus(v):
    return _count(v, "ncpus", 1, MAX_NCPUS)


def _ngpus(v):
    return _count(v, "ngpus", 0, MAX_NGPUS)


def _mpiprocs(v):
    return _count(v, "mpiprocs", 1, MAX_NCPUS)


def _ompthreads(v):
    return _count(v, "ompthreads", 1, MAX_NCPUS)


def _place(v) -> str:
    value = str(v).strip()
    parts = value.split(":")
    arrangement = {"free", "pack", "scatter", "vscatter"}
    sharing = {"excl", "shared", "exclhost"}
    if not parts or not 1 <= len(parts) <= 3 or any(
        p not in arrangement | sharing and not p.startswith("group=") for p in parts
    ):
        raise SpecError(
            f"place '{value}': use pack, scatter, free or vscatter, optionally with :excl, :shared or :exclhost"
        )
    return value


RESOURCES: dict[str, Resource] = {r.name: r for r in (
    Resource("walltime", parse_walltime, "time limit, HH:MM:SS; the job is killed when it runs longer"),
    Resource("ncpus", _ncpus, "CPUs the job is given (NCPUS and OMP_NUM_THREADS follow it)", in_chunk=True),
    Resource("mem", parse_size, "memory, as in 4gb; a job that uses more is killed (-27)", in_chunk=True),
    Resource("ngpus", _ngpus, "GPUs the job is given (CUDA_VISIBLE_DEVICES names them)", in_chunk=True),
    Resource("mpiprocs", _mpiprocs, "MPI ranks: lines of PBS_NODEFILE", in_chunk=True),
    Resource("ompthreads", _ompthreads, "OMP_NUM_THREADS (default ncpus)", in_chunk=True),
    Resource("select", None, "one chunk: select=1:ncpus=N:mem=M:ngpus=G"),
    Resource("place", _place, "placement (one chunk on one host satisfies every one)"),
    Resource("nodes", None, "", refused="a job runs on one host: ask with select=1:ncpus=N, not nodes="),
    Resource("cput", None, "", refused="CPU-time limits are not enforced; give walltime"),
    Resource("pcput", None, "", refused="CPU-time limits are not enforced; give walltime"),
    Resource("vmem", None, "", refused="virtual memory is not a resource here; ask for mem (Resource_List.mem)"),
    Resource("pvmem", None, "", refused="virtual memory is not a resource here; ask for mem (Resource_List.mem)"),
    Resource("pmem", None, "", refused="per-process memory is not a resource here; ask for mem (Resource_List.mem)"),
    Resource("nodect", None, "", refused="nodect is derived from select"),
)}


CHUNK_RESOURCES = ("ncpus", "mem", "ngpus", "mpiprocs", "ompthreads")  # what a select chunk may hold


def parse_select(text: str) -> dict[str, Any]:
    """`select=[N:]res=val[:res=val...]` with N = 1 -> the chunk's resources (plus `select`, canonical)."""
    value = str(text).strip()
    if "+" in value:
        raise SpecError(f"select '{value}': a job runs on one host, so give one chunk, as in select=1:ncpus=4")
    parts = value.split(":")
    count = 1
    if parts and re.fullmatch(r"[0-9]+", parts[0]):
        count = int(parts.pop(0))
    if count != 1:
        raise SpecError(
            f"select '{value}': {count} chunks need {count} hosts, and a job runs on one host here; "
            "ask for one chunk, as in select=1:ncpus=4"
        )
    chunk: dict[str, Any] = {}
    for part in parts:
        key, eq, raw = part.partition("=")
        resource = RESOURCES.get(key.strip())
        if not eq or not raw.strip():
            raise SpecError(f"select '{value}': give res=value after the count, as in select=1:ncpus=2:mem=4gb")
        if resource is None or not resource.in_chunk:
            raise SpecError(
                f"Unknown resource in select: {key.strip()} (a chunk takes {', '.join(CHUNK_RESOURCES)})"
            )
        chunk[resource.name] = resource.read(raw)
    return chunk


def _format_chunk(chunk: Mapping[str, Any]) -> str:
    return ":".join(["1", *(f"{k}={chunk[k]}" for k in CHUNK_RESOURCES if k in chunk)])


def parse_resource(name: str, raw: Any) -> tuple[str, Any]:
    """One `-l` item -> (name, canonical value); unknown and unhonourable resources are refused."""
    key = str(name).strip()
    resource = RESOURCES.get(key)
    if resource is None:
        known = ", ".join(n for n, r in RESOURCES.items() if not r.refused)
        raise SpecError(f"Unknown resource: {key} (HyperBatch knows {known})")
    if resource.refused:
        raise SpecError(f"-l {key}: not supported: {resource.refused}")
    if key == "select":
        return key, _format_chunk(parse_select(str(raw)))
    return key, resource.read(raw if isinstance(raw, int) and not isinstance(raw, bool) else str(raw))


def parse_resources(text: str) -> dict[str, Any]:
    """`-l walltime=01:00:00,ncpus=2,mem=4gb` or `-l select=1:ncpus=2:mem=4gb` -> canonical values."""
    out: dict[str, Any] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise SpecError(f"resource '{item}': give key=value, as in walltime=01:00:00,ncpus=2,mem=4gb")
        name, parsed = parse_resource(key, value)
        out[name] = parsed
    return out


def check_resources(value: Any) -> dict[str, Any]:
    """The API's `resources` object: each entry read as `-l` reads it (walltime belongs in `walltime`)."""
    if not isinstance(value, dict):
        raise SpecError("resources: give an object such as {\"ncpus\": 2, \"mem\": \"4gb\"}")
    out = {}
    for key, raw in value.items():
        if key == "walltime":
            raise SpecError("resources: give walltime in the walltime field")
        if key == "nodect":
            continue  # derived; what qstat showed may be sent back
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            raise SpecError(f"resources: {key}: give text or a whole number")
        name, parsed = parse_resource(key, raw)
        out[name] = parsed
    return out


def resource_list(resources: Mapping[str, Any]) -> dict[str, Any]:
    """Resource_List as PBS derives it: one select chunk and the job-wide ncpus/mem/ngpus agreeing
    with it, nodect 1, place pack; ncpus 1 when nothing is asked for."""
    given = dict(resources)
    chunk_keys = CHUNK_RESOURCES
    if "select" in given:
        chunk = parse_select(given["select"])
        clash = [k for k in chunk_keys if k in given and k in chunk and given[k] != chunk[k]]
        if clash:
            raise SpecError(
                f"-l {clash[0]}={given[clash[0]]} and select={given['select']} disagree: "
                f"give {clash[0]} inside select or alone"
            )
        chunk = {**{k: given[k] for k in chunk_keys if k in given}, **chunk}
    else:
        chunk = {k: given[k] for k in chunk_keys if k in given}
    chunk.setdefault("ncpus", 1)
    out = {**chunk, "select": _format_chunk(chunk), "nodect": 1, "place": given.get("place", "pack")}
    return dict(sorted(out.items()))


# =============================================================================================
# the option table


class Option(namedtuple("Option", "flag metavar help apply aliases directive refused pbs in_directive_refused",
                         defaults=(None, (), True, None, True, None))):
    """One qsub option: its `flag` and `aliases`; `metavar` (None: a flag without a value); `help`;
    `apply(value, ctx)`, the fields it sets (a flag's value is ""); whether a #PBS/#HYPER line may
    carry it (`directive`, else `in_directive_refused` says why); why HyperBatch cannot honour it
    (`refused`); and whether it is PBS's (`pbs`; False: a HyperBatch extension)."""

    __slots__ = ()

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.flag, *self.aliases)


def _one(key: str, parse: Callable[[str], Any]) -> Callable[[str, Context], dict[str, Any]]:
    return lambda value, ctx: {key: parse(value)}


def _illegal(flag: str, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """PBS says `illegal -X value`; ours adds what is wrong."""
    def wrapped(value: str) -> Any:
        try:
            return parse(value)
        except SpecError as exc:
            message = str(exc)
            if message.startswith(("illegal ", "Unknown resource", "cannot send", "Job name is too long", "-")):
                raise
            raise SpecError(f"illegal {flag} value: {message}") from None
    return wrapped


def _apply_array(value: str, ctx: Context) -> dict[str, Any]:
    return {"array": str(parse_array(_text(value, "array range", MAX_ARRAY_SPEC_CHARS)))}


def _apply_depend(text: str) -> str:
    return format_depend(parse_depend(_text(text, "depend", MAX_DEPEND_CHARS)))


def _apply_resources(value: str, ctx: Context) -> dict[str, Any]:
    resources = parse_resources(value)
    out: dict[str, Any] = {}
    if "walltime" in resources:
        out["walltime"] = resources.pop("walltime")
    if resources:
        out["resources"] = resources
    return out


def _apply_env(value: str, ctx: Context) -> dict[str, Any]:
    return {"env": parse_env(value, ctx.environ)}


def _apply_export(value: str, ctx: Context) -> dict[str, Any]:
    if ctx.environ is None:
        raise SpecError("-V needs qsub's environment; over the API, send the variables in env")
    return {"export_all": True}


def _apply_retries(value: str, ctx: Context) -> dict[str, Any]:
    if not re.fullmatch(r"[0-9]{1,3}", value.strip()) or int(value) > MAX_RETRIES:
        raise SpecError(f"--retries '{value}': give a whole number from 0 to {MAX_RETRIES}")
    return {"max_attempts": int(value) + 1}


# -W name=value attributes ---------------------------------------------------------------------

def _bool_word(key: str) -> Callable[[str], bool]:
    def parse(value: str) -> bool:
        word = value.strip().lower()
        if word not in ("true", "false"):
            raise SpecError(f"illegal -W value: {key}={value.strip()}: use true or false")
        return word == "true"
    return parse


def _interactive(value: str) -> dict[str, Any]:
    if _bool_word("interactive")(value):
        raise SpecError(INTERACTIVE_REFUSED)
    return {}


def _max_run(value: str) -> dict[str, Any]:
    return {"max_run_subjobs": _count(value, "max_run_subjobs", 1, 10_000_000)}


def _block(value: str) -> dict[str, Any]:
    return {"block": True} if _bool_word("block")(value) else {}


W_ATTRIBUTES: dict[str, tuple[Callable[[str, Context], dict[str, Any]] | None, str]] = {
    "depend": (lambda v, ctx: {"depend": _apply_depend(v)},
               "run after other jobs: afterok:ID[:ID...], afterany:ID, afternotok:ID"),
    "block": (lambda v, ctx: _block(v), "true: qsub waits for the job to end and exits with its exit status"),
    "umask": (lambda v, ctx: {"umask": parse_umask(v)}, "the job's umask, octal (default 077, as PBS)"),
    "sandbox": (lambda v, ctx: {"sandbox": parse_sandbox(v)},
                "HOME: start in your home directory (default); PRIVATE: in a fresh per-job directory"),
    "max_run_subjobs": (lambda v, ctx: _max_run(v), "an array's tasks running at once (as -J ...%N)"),
    "interactive": (lambda v, ctx: _interactive(v), "only false: interactive jobs are not supported"),
    "group_list": (None, "jobs run with the submitting user's own groups; -W group_list cannot change them"),
    "stagein": (lambda v, ctx: {"stagein": staging.check_field(v, "stagein", ctx.host)},
                "files copied into the job's directory before it starts: LOCAL@HOST:REMOTE[,...]"),
    "stageout": (lambda v, ctx: {"stageout": staging.check_field(v, "stageout", ctx.host)},
                 "files copied out of the job's directory after it ends: LOCAL@HOST:REMOTE[,...]"),
    "release_nodes_on_stageout": (None, "a job runs on one host; it holds no other nodes to release"),
    "tolerate_node_failures": (None, "a job runs on one host; there are no sister nodes to tolerate"),
    "run_count": (None, "run_count counts runs; it cannot be set"),
    "cred": (None, "credentials are not forwarded to jobs"),
    "reserve_start": (None, "reservations are not supported"),
    "reserve_end": (None, "reservations are not supported"),
}
W_SUPPORTED = tuple(k for k, (parse, _) in W_ATTRIBUTES.items() if parse is not None)


def split_w(text: str) -> list[tuple[str, str]]:
    """`name=value[,name=value]`; a comma item without `=` belongs to the value before it
    (`depend=afterok:1,afterany:2`)."""
    pairs: list[list[str]] = []
    for piece in text.split(","):
        key, eq, value = piece.partition("=")
        if eq and re.fullmatch(r"\s*[A-Za-z_][A-Za-z0-9_.]*\s*", key):
            pairs.append([key.strip(), value])
        elif pairs:
            pairs[-1][1] += "," + piece
        else:
            raise SpecError(f"illegal -W value '{text.strip()}': give name=value, as in -W depend=afterok:ID")
    return [(k, v) for k, v in pairs]


def _apply_w(value: str, ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not value.strip():
        raise SpecError("illegal -W value: give name=value, as in -W depend=afterok:ID")
    for key, raw in split_w(value):
        if key not in W_ATTRIBUTES:
            raise SpecError(f"-W {key}: unknown attribute; HyperBatch takes {', '.join(W_SUPPORTED)}")
        parse, reason = W_ATTRIBUTES[key]
        if parse is None:
            raise SpecError(f"-W {key}: not supported: {reason}")
        if not raw.strip():
            raise SpecError(f"illegal -W value: {key}= needs a value")
        merge_into(out, parse(raw, ctx))
    return out


INTERACTIVE_REFUSED = (
    "interactive jobs are not supported: HyperBatch runs batch jobs only; "
    "submit a script and follow its output with qlog -f"
)


def _refuse(reason: str) -> Callable[[str, Context], dict[str, Any]]:
    def apply(value: str, ctx: Context) -> dict[str, Any]:
        raise SpecError(reason)
    return apply


def _prefix(value: str, ctx: Context) -> dict[str, Any]:
    if len(value) > 32 or "\n" in value:
        raise SpecError("illegal -C value: a directive prefix is one short word, as in #PBS")
    return {"prefix": value}


OPTIONS: tuple[Option, ...] = (
    Option("-a", "DATE_TIME", "Defer the job: not eligible to run before [[[[CC]YY]MM]DD]hhmm[.SS] "
           "(local time; a time already past today means tomorrow). The job shows W until then.",
           lambda v, ctx: {"execution_time": _illegal("-a", lambda t: parse_execution_time(t, ctx.clock()))(v)}),
    Option("-A", "ACCOUNT", "Account string (stored as Account_Name; the job sees PBS_ACCOUNT).",
           _one("account", _illegal("-A", lambda t: _text(t, "account")))),
    Option("-c", "INTERVAL", "Checkpoint spec n, s, c, c=MIN, w or w=MIN: accepted and stored as Checkpoint; "
           "HyperBatch takes no checkpoints.", _one("checkpoint", parse_checkpoint)),
    Option("-C", "PREFIX", "Directive prefix instead of #PBS (and #HYPER); '' reads no directives. "
           "Default: $PBS_DPREFIX, else #PBS and #HYPER.", _prefix, directive=False,
           in_directive_refused="-C sets how directives are found: give it on the command line"),
    Option("-e", "PATH", "Standard error file (a directory: JOBID.ER inside it); written when the job ends. "
           "Default NAME.eSEQ in the submit directory.",
           lambda v, ctx: {"error_path": _illegal("-e", lambda t: parse_path(t, "-e", ctx))(v)}),
    Option("-f", None, "Accepted: qsub never forks a background process.", lambda v, ctx: {"no_fork": True}),
    Option("-h", None, "Submit the job held (state H); release it with qrls.", lambda v, ctx: {"hold": True}),
    Option("-I", None, "Interactive job: not supported.", refused=INTERACTIVE_REFUSED),
    Option("-j", "oe|eo|n", "Join: oe puts stderr into the output file, eo stdout into the error file.",
           _one("join", parse_join)),
    Option("-J", "RANGE", "Array job: START-END[:STEP][%LIMIT], as in 1-100, 0-10:2, 1-1000%10 (at most 10 "
           "tasks at once). Each task sees PBS_ARRAY_INDEX and PBS_ARRAY_ID.",
           lambda v, ctx: _illegal("-J", lambda t: _apply_array(t, ctx))(v), aliases=("-t", "--array")),
    Option("-k", "KEEP", "Keep output on the execution host instead of delivering it: o, e, oe (in your home "
           "directory, as NAME.oSEQ); d, n (default): to the destination (files are written when a run ends).",
           _one("keep", parse_keep)),
    Option("-l", "RESOURCES", "Resources: walltime=HH:MM:SS (enforced), ncpus=N, mem=SIZE, ngpus=N, "
           "select=1:ncpus=N:mem=SIZE:ngpus=N, place=...; stored as Resource_List. Repeatable.",
           lambda v, ctx: _illegal("-l", lambda t: _apply_resources(t, ctx))(v)),
    Option("-m", "MAIL_EVENTS", "Mail when the job is aborted (a, the default), begins (b), ends (e); n: no "
           "mail; j: each array task too (else an array mails once). Stored as Mail_Points.",
           _one("mail_points", parse_mail_points)),
    Option("-M", "USERS", "Mail recipients, user[@host][,...] (default: you at the submit host); stored as "
           "Mail_Users.",
           _one("mail_users", _illegal("-M", lambda t: parse_mail_users(t)))),
    Option("-N", "NAME", "Job name (default: the script's file name; STDIN for stdin or -- COMMAND).",
           _one("name", _illegal("-N", check_name)), aliases=("--name",)),
    Option("-o", "PATH", "Standard output file (a directory: JOBID.OU inside it); written when the job ends. "
           "Default NAME.oSEQ in the submit directory.",
           lambda v, ctx: {"output_path": _illegal("-o", lambda t: parse_path(t, "-o", ctx))(v)}),
    Option("-p", "PRIORITY", f"Priority {PRIORITY_MIN}..{PRIORITY_MAX}; higher runs first within a queue.",
           _one("priority", _illegal("-p", parse_priority)), aliases=("--priority",)),
    Option("-P", "PROJECT", "Project (stored as project).",
           _one("project", _illegal("-P", lambda t: _text(t, "project")))),
    Option("-q", "QUEUE", "Queue (default: the first configured queue).", _one("queue", _illegal("-q", parse_queue)),
           aliases=("--queue",)),
    Option("-r", "y|n", "Rerunnable: y (default) runs the job again if its worker is lost; n fails it.",
           _one("rerunnable", parse_rerunnable)),
    Option("-R", "o|e|oe", "Remove the output (o), error (e) or both files when the job ends instead of "
           "delivering them.",
           _one("remove_files", parse_remove)),
    Option("-S", "SHELL", "Shell that runs a script with no #! line (default: your login shell).",
           _one("shell", parse_shell)),
    Option("-u", "USER", "Run as another user: not supported.",
           refused="jobs run as the submitting user; -u cannot change that"),
    Option("-v", "VARS", "Variables for the job: VAR=value or VAR (taken from your environment), comma "
           "separated; quote values holding commas: -v \"LIST='a,b'\". Repeatable.", _apply_env),
    Option("-V", None, "Pass your whole environment to the job, except variables that look like secrets or "
           "belong to this login session (names with SECRET, TOKEN, PASSW, CREDENTIAL, PRIVATE, API_KEY, KEY or "
           "AUTH as a word; AWS_*, SSH_*, GPG_*, HYPERBATCH_*, PBS_O_*; DISPLAY, SHLVL, ...). -v values win.",
           _apply_export),
    Option("-W", "ATTR=VALUE", "depend=afterok:ID[:ID],afterany:ID,afternotok:ID; block=true (wait for the "
           "job and exit with its status); umask=022; sandbox=HOME|PRIVATE; max_run_subjobs=N; "
           "stagein=LOCAL@HOST:REMOTE[,...] and stageout=LOCAL@HOST:REMOTE[,...] (LOCAL in the job's directory, "
           "HOST:REMOTE on the submit host or s3://bucket/key). Repeatable.",
           _apply_w),
    Option("-X", None, "X11 forwarding: not supported.", refused=INTERACTIVE_REFUSED),
    Option("-G", None, "GUI session: not supported.", refused=INTERACTIVE_REFUSED),
    Option("-z", None, "Do not print the job id.", lambda v, ctx: {"quiet": True}),
    # HyperBatch's own
    Option("-d", "DEFINITION", "Job definition (image and sizing) to run under (HyperBatch).",
           _one("definition", lambda t: _text(t, "definition", MAX_QUEUE)), aliases=("--definition",), pbs=False),
    Option("--stage-in", "SRC[:DEST]", "Copy SRC (a file or directory here, or s3://bucket/key) into the job's "
           "directory before it starts, as DEST (default: its name). Repeatable (HyperBatch).",
           lambda v, ctx: {"stagein": [staging.parse_stage_in(v, ctx.host).text()]}, pbs=False),
    Option("--stage-out", "PATTERN[:DEST]", "After the job, whatever its exit status, move what PATTERN (a path "
           "or glob in the job's directory, as in results/*.csv) matches to DEST (a path here, or "
           "s3://bucket/prefix/; default: the submit directory). Repeatable (HyperBatch).",
           lambda v, ctx: {"stageout": [staging.parse_stage_out(v, ctx.host).text()]}, pbs=False),
    Option("--retries", "N", f"Run again up to N more times after a non-zero exit (0-{MAX_RETRIES}; default 0, "
           "as PBS) (HyperBatch).", _apply_retries, pbs=False),
    Option("--notify", "URL", "POST a signed JSON event to URL (http or https) when the job begins, ends or is "
           "aborted. Repeatable (HyperBatch).", lambda v, ctx: {"notify": [notices.check_url(v)]}, pbs=False),
    Option("--wait", None, "After printing the id, wait until the job finishes and exit with its exit status "
           "as a shell reports it (HyperBatch).", lambda v, ctx: {"wait": True}, pbs=False, directive=False,
           in_directive_refused="--wait belongs on the command line"),
)

BY_FLAG: dict[str, Option] = {flag: option for option in OPTIONS for flag in option.flags}


def option_for(flag: str) -> Option:
    try:
        return BY_FLAG[flag]
    except KeyError:
        raise SpecError(f"unknown option '{flag}'") from None


def occurrence(flag: str, value: str | None, ctx: Context, *, directive: bool = False) -> dict[str, Any]:
    """The fields one `flag [value]` sets, or the one-line reason it is refused."""
    option = option_for(flag)
    if option.refused:
        raise SpecError(f"{option.flag}: {option.refused}")
    if directive and not option.directive:
        raise SpecError(f"{option.flag}: {option.in_directive_refused}")
    if option.metavar is not None and (value is None or (value == "" and option.flag != "-C")):
        raise SpecError(f"option {flag} needs a value")
    assert option.apply is not None  # every option that is not refused has one
    return option.apply(value if value is not None else "", ctx)


# =============================================================================================
# fields: the API's names for what options set, and how occurrences combine


class Field(namedtuple("Field", "name check kind merge help examples", defaults=(str, "last", "", ()))):
    """One field of a job request: `check` reads an API value (JSON, or PBS text) into its canonical
    value or raises SpecError; `kind` is the JSON type(s) the API takes (its schema); `merge` says how
    occurrences combine: "last", "update" (objects merge per key), "join" (depend lists) or "extend"
    (lists: staging pairs)."""

    __slots__ = ()


def _join_depend(old: str, new: str) -> str:
    return _apply_depend(",".join(p for p in (old, new) if p))


def _str_or(parse: Callable[[str], Any], typed: Callable[[Any], Any] | None = None) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, str):
            return parse(value)
        if typed is not None:
            return typed(value)
        raise SpecError(f"give text, not {type(value).__name__}")
    return check


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise SpecError("give true or false")


def _walltime(value: Any) -> int:
    """Seconds, from HH:MM:SS text or a number; within limits.MAX_WALLTIME_SECONDS either way."""
    return parse_walltime(value) if isinstance(value, str) else check_walltime(value)


def _max_attempts(value: Any) -> int:
    return _count(value, "max_attempts", 1, MAX_RETRIES + 1)


FIELDS: dict[str, Field] = {f.name: f for f in (
    Field("name", _str_or(check_name), help="Job_Name (-N)", examples=("sweep",)),
    Field("queue", _str_or(parse_queue), help="queue (-q)"),
    Field("definition", _str_or(lambda t: _text(t, "definition", MAX_QUEUE)), help="job definition (-d)"),
    Field("array", _str_or(lambda t: _apply_array(t, Context())["array"]), help="array range (-J)",
          examples=("1-100", "0-10:2", "1-1000%10")),
    Field("max_run_subjobs", kind=int, check=lambda v: _count(v, "max_run_subjobs", 1, 10_000_000),
          help="array tasks running at once (-W max_run_subjobs)"),
    Field("depend", _str_or(_apply_depend), merge="join", help="dependencies (-W depend)",
          examples=("afterok:123",)),
    Field("priority", kind=int, check=parse_priority, help="Priority (-p)"),
    Field("max_attempts", kind=int, check=_max_attempts,
          help="runs allowed for non-zero exits: retries + 1 (--retries)"),
    Field("walltime", kind=int | str, check=_walltime,
          help="Resource_List.walltime in seconds, or HH:MM:SS (-l walltime)",
          examples=("01:00:00", 3600)),
    Field("resources", kind=dict[str, str | int], check=check_resources, merge="update",
          help="Resource_List (-l ncpus, mem, ngpus, select, place)",
          examples=({"ncpus": 2, "mem": "4gb"},)),
    Field("env", kind=dict[str, str], check=check_env, merge="update",
          help="Variable_List: -v, -V and qsub's PBS_O_* variables"),
    Field("hold", kind=bool, check=_bool, help="submit held (-h)"),
    Field("account", _str_or(lambda t: _text(t, "account")), help="Account_Name (-A)"),
    Field("project", _str_or(lambda t: _text(t, "project")), help="project (-P)"),
    Field("checkpoint", _str_or(parse_checkpoint), help="Checkpoint (-c; stored only)"),
    Field("output_path", _str_or(lambda t: parse_path(t, "-o")), help="Output_Path (-o)"),
    Field("error_path", _str_or(lambda t: parse_path(t, "-e")), help="Error_Path (-e)"),
    Field("join", _str_or(parse_join), help="Join_Path (-j)"),
    Field("keep", _str_or(parse_keep), help="Keep_Files (-k)"),
    Field("remove_files", _str_or(parse_remove), help="Remove_Files (-R)"),
    Field("shell", _str_or(parse_shell), help="Shell_Path_List (-S)"),
    Field("rerunnable", kind=bool | str, check=parse_rerunnable,
          help="Rerunable (-r): true reruns a job whose worker was lost"),
    Field("execution_time", kind=float | str, check=check_execution_time, help="Execution_Time (-a): epoch seconds or "
          "[[[[CC]YY]MM]DD]hhmm[.SS]"),
    Field("mail_points", _str_or(parse_mail_points), help="Mail_Points (-m)"),
    Field("mail_users", _str_or(lambda t: parse_mail_users(t)), help="Mail_Users (-M)"),
    Field("notify", kind=list[str] | str, check=notices.check_urls, merge="extend",
          help="webhook URLs told when the job begins, ends or is aborted (--notify)",
          examples=(["https://example.com/hook"],)),
    Field("umask", kind=str | int, check=_str_or(parse_umask, parse_umask), help="umask (-W umask)"),
    Field("sandbox", _str_or(parse_sandbox), help="sandbox (-W sandbox)"),
    Field("stagein", kind=list[str] | str, check=lambda v: staging.check_field(v, "stagein"), merge="extend",
          help="stagein (-W stagein, --stage-in): LOCAL@HOST:REMOTE pairs", examples=(["in.txt@myhost:/data/in.txt"],)),
    Field("stageout", kind=list[str] | str, check=lambda v: staging.check_field(v, "stageout"), merge="extend",
          help="stageout (-W stageout, --stage-out): LOCAL@HOST:REMOTE pairs, LOCAL may be a glob",
          examples=(["out.txt@myhost:/data/results/"],)),
)}
OPTION_FIELDS = tuple(FIELDS)

# Option fields stored on the job as they are (the others become its name, queue, array, ...).
ATTRIBUTES = (
    "account", "project", "checkpoint", "output_path", "error_path", "join", "keep", "remove_files", "shell",
    "rerunnable", "execution_time", "mail_points", "mail_users", "umask", "sandbox", "stagein", "stageout",
    "notify",
)
# What qalter may change on a job that has not started, by the name PBS gives the attribute (the
# words of its history entry): qalter, its request model and Scheduler.alter all read this.
ALTERABLE = {
    "name": "Job_Name", "priority": "Priority", "walltime": "Resource_List.walltime", "resources": "Resource_List",
    "depend": "depend", "hold": "Hold_Types", "account": "Account_Name", "project": "project",
    "checkpoint": "Checkpoint", "output_path": "Output_Path", "error_path": "Error_Path", "join": "Join_Path",
    "keep": "Keep_Files", "remove_files": "Remove_Files", "shell": "Shell_Path_List", "rerunnable": "Rerunable",
    "execution_time": "Execution_Time", "mail_points": "Mail_Points", "mail_users": "Mail_Users", "umask": "umask",
    "sandbox": "sandbox",
}


def merge_into(out: dict[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Fold one occurrence's fields into `out`: later wins, objects merge per key, depend lists join."""
    for key, value in new.items():
        rule = FIELDS[key].merge if key in FIELDS else "last"
        if key in out and rule == "update":
            out[key] = {**out[key], **value}
        elif key in out and rule == "join":
            out[key] = _join_depend(out[key], value)
        elif key in out and rule == "extend":
            out[key] = [*out[key], *value]
        else:
            out[key] = value
    return out


def parse_occurrences(pairs: Iterable[tuple[str, str | None]], ctx: Context, *,
                      directive: bool = False) -> dict[str, Any]:
    """Fields from (flag, value) pairs in the order given (one level: the command line, or a script)."""
    out: dict[str, Any] = {}
    for flag, value in pairs:
        merge_into(out, occurrence(flag, value, ctx, directive=directive))
    return out


def combine(lower: Mapping[str, Any], higher: Mapping[str, Any]) -> dict[str, Any]:
    """Two levels (script directives, then the command line): the higher wins per field, except that
    resources and environment merge per key, as PBS merges -l and -v across levels."""
    out = dict(lower)
    for key, value in higher.items():
        if key in out and key in FIELDS and FIELDS[key].merge == "update":
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def check_field(name: str, value: Any) -> Any:
    """An API field's value, canonical; SpecError naming what is wrong."""
    return FIELDS[name].check(value)


def finish(fields: Mapping[str, Any], *, workdir: str | None = None) -> dict[str, Any]:
    """The rules that tie options together, and derived values: an array's %limit from
    max_run_subjobs, Resource_List, paths relative to the submit directory."""
    out = {k: v for k, v in fields.items() if v is not None}
    if out.get("max_run_subjobs") is not None:
        if not out.get("array"):
            raise SpecError("max_run_subjobs applies to array jobs (-J)")
        spec = parse_array(out["array"])
        if spec.limit is not None and spec.limit != out["max_run_subjobs"]:
            raise SpecError("give the array's limit once: -J ...%N or -W max_run_subjobs=N")
        out["array"] = str(ArraySpec(spec.start, spec.end, spec.step, out["max_run_subjobs"]))
    out.pop("max_run_subjobs", None)
    if out.get("array") and out.get("rerunnable") is False:
        raise SpecError("cannot submit non-rerunable Array Job (-J with -r n)")
    if "j" in out.get("mail_points", "") and not out.get("array"):
        raise SpecError("mail option 'j' can not be used without array job")
    out["resources"] = resource_list(out.get("resources") or {})
    for key in ("output_path", "error_path"):
        path = out.get(key)
        if path and not path.startswith("/"):
            if not workdir:
                raise SpecError(f"{key} '{path}': give an absolute path (no submit directory is known)")
            out[key] = os.path.normpath(os.path.join(workdir, path)) + ("/" if path.endswith("/") else "")
    submit_host = (out.get("env") or {}).get("PBS_O_HOST")
    for key in (staging.STAGEIN, staging.STAGEOUT):
        if out.get(key):
            out[key] = staging.resolve(out[key], workdir, key, submit_host)
    return out


def describe_table() -> list[tuple[str, str, str]]:
    """(flag, 'supported'|'refused', help or reason) for every option: the table the docs print."""
    rows = []
    for option in OPTIONS:
        rows.append((" ".join(option.flags), "refused" if option.refused else "supported",
                     option.refused or option.help))
    return rows

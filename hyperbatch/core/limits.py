"""Input limits: every bound a job request must keep, in one place.

The API's request models and the scheduler (for what a script's directives set) both check
through the functions here, so a request that would fail later is refused up front with a
message that says what to fix. Each bound stands for something downstream:

- execve(2): a worker passes the command, the environment and PBS_O_WORKDIR to the kernel as C
  strings, so a NUL byte cannot pass and an environment name cannot hold '='. Linux takes at
  most 128 KiB per string and about 2 MiB for all of them together; the totals here stay well
  under that, leaving room for the worker's own environment.
- storage: a job is one DynamoDB item (400 KB at most), so the script and everything else a
  request carries must fit in one.
- time: a walltime is added to a clock reading (a float); a year bounds it far from overflow.
- parsing: JSON nested deeper than MAX_JSON_DEPTH is refused before it is validated (recursive
  code runs out of stack), and a body over MAX_BODY_BYTES (API Gateway's payload limit) is
  refused before it is read.

Plain data and pure functions: no I/O. Every check raises SpecError (a ValueError, so pydantic
validators can call them and report the field) with a message that names no field: callers
that check a whole request use `check_request`, which does.
"""

from __future__ import annotations

from hyperbatch.core.errors import SpecError
from hyperbatch.core.patterns import lazy

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: qsub reads this module, and importing typing costs milliseconds
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping

# -- the request as a whole ----------------------------------------------------------------------
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit; the local server keeps the same
MAX_JSON_DEPTH = 32  # a job request nests three deep ({"jobs": [{"env": {...}}]})
MAX_BATCH_JOBS = 1000

# -- names ---------------------------------------------------------------------------------------
MAX_NAME = 230  # PBS_MAXJOBNAME: a job name (-N), as PBS allows it
NAME_PATTERN = r"[A-Za-z0-9._+-]{1,%d}" % MAX_NAME
NAME_RE = lazy(NAME_PATTERN)
MAX_REF_CHARS = 64  # a queue or definition name (the configuration's names are shorter)
ENV_NAME_RE = lazy(r"[A-Za-z_][A-Za-z0-9_]*")  # what a shell can export

# -- what reaches the worker's execve -----------------------------------------------------------
MAX_SCRIPT_BYTES = 256 * 1024
MAX_ARGS = 4096
MAX_COMMAND_BYTES = 64 * 1024  # all arguments together, one NUL each
MAX_ENV_BYTES = 64 * 1024  # all NAME=value strings together, one NUL each
MAX_PATH_BYTES = 4096  # PATH_MAX: the submitting directory (PBS_O_WORKDIR)
MAX_SCRIPT_NAME_CHARS = 1024

# -- the rest of a request -----------------------------------------------------------------------
MAX_TEXT = 256  # -A, -P, -M, -c, -W values
MAX_NCPUS = 4096
MAX_NGPUS = 256
MAX_ENV_VARS = 4096
MAX_ARRAY_SPEC_CHARS = 64
MAX_DEPEND_CHARS = 4096
PRIORITY_MIN, PRIORITY_MAX = -1024, 1023  # the PBS range; higher runs first
MAX_ATTEMPTS = 100  # --retries 99
MAX_WALLTIME_SECONDS = 365 * 24 * 3600  # 8760:00:00

# -- reading -------------------------------------------------------------------------------------
MAX_OFFSET = 2**62  # a log offset or task position: far past any log, inside a file offset (off_t)


def no_nul(text: str) -> str:
    if "\0" in text:
        raise SpecError("contains a NUL byte, which no program can be given")
    return text


def check_name(text: str) -> str:
    """A job name as PBS allows it: up to 230 of A-Z a-z 0-9 . _ + - (a digit may come first); it
    names the output files (NAME.oSEQ), so nothing a file name could not hold."""
    value = text.strip() if isinstance(text, str) else text
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        if isinstance(value, str) and len(value) > MAX_NAME:
            raise SpecError(f"Job name is too long: at most {MAX_NAME} characters")
        raise SpecError(f"job name '{value}': use letters, digits, '.', '_', '+' or '-' (at most {MAX_NAME})")
    return value


def check_script(script: str) -> str:
    if not script.strip():
        raise SpecError("the script is empty")
    if len(script.encode("utf-8", "surrogatepass")) > MAX_SCRIPT_BYTES:
        raise SpecError(f"the script is larger than {MAX_SCRIPT_BYTES // 1024} KiB; stage data in files instead")
    if "\0" in script:
        raise SpecError("the script contains a NUL byte: a job script is text")
    return script


def check_command(argv: list[str]) -> list[str]:
    if not argv:
        raise SpecError("give the program to run and its arguments, as in [\"python3\", \"run.py\"]")
    if len(argv) > MAX_ARGS:
        raise SpecError(f"{len(argv)} arguments is more than the maximum of {MAX_ARGS}")
    for number, arg in enumerate(argv):
        if "\0" in arg:
            raise SpecError(f"argument {number} contains a NUL byte, which no program can be given")
    if not argv[0]:
        raise SpecError("the program to run (argument 0) is empty")
    if _exec_bytes(argv) > MAX_COMMAND_BYTES:
        raise SpecError(f"the arguments are larger than {MAX_COMMAND_BYTES // 1024} KiB together; "
                        "pass large inputs in files")
    return argv


def check_env(env: Mapping[str, str]) -> Mapping[str, str]:
    for name, value in env.items():
        if not ENV_NAME_RE.fullmatch(name):
            raise SpecError(
                f"environment variable name {name!r}: use letters, digits and _, not starting with a digit"
            )
        if "\0" in value:
            raise SpecError(f"the value of {name} contains a NUL byte, which no program can be given")
    if _exec_bytes(f"{k}={v}" for k, v in env.items()) > MAX_ENV_BYTES:
        raise SpecError(f"the variables are larger than {MAX_ENV_BYTES // 1024} KiB together; "
                        "pass large values in files")
    return env


def check_workdir(path: str) -> str:
    if "\0" in path:
        raise SpecError("contains a NUL byte, which no program can be given")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise SpecError(f"longer than {MAX_PATH_BYTES} bytes")
    return path


def check_walltime(seconds: Any) -> int:
    """Seconds, a whole number from 1 to MAX_WALLTIME_SECONDS (a bool is not a number here)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise SpecError("give seconds as a whole number, or HH:MM:SS as in 01:30:00")
    if not 1 <= seconds <= MAX_WALLTIME_SECONDS:
        raise SpecError(f"give 1 to {MAX_WALLTIME_SECONDS} seconds (up to {MAX_WALLTIME_SECONDS // 3600}:00:00, "
                        f"a year), not {_short(seconds)}")
    return seconds


def check_priority(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"give a whole number from {PRIORITY_MIN} to {PRIORITY_MAX}")
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise SpecError(f"give a whole number from {PRIORITY_MIN} to {PRIORITY_MAX}, not {_short(value)}")
    return value


# The fields `check_request` checks, each with its rule. Names and numbers the scheduler parses
# itself (queue, array, depend) are checked there, against the configuration and their grammar;
# resources by the option table (hyperbatch.core.options), which knows each one.
_RULES: dict[str, Callable[[Any], Any]] = {
    "name": check_name,
    "script": check_script,
    "script_name": lambda text: _bounded(no_nul(text), MAX_SCRIPT_NAME_CHARS),
    "command": check_command,
    "env": check_env,
    "workdir": check_workdir,
    "walltime": check_walltime,
    "priority": check_priority,
}


def check_request(fields: Mapping[str, Any]) -> None:
    """Check every field of a job (as the scheduler merges request and directives) that has a rule
    here; SpecError names the first field that breaks one. None means absent."""
    for field, rule in _RULES.items():
        value = fields.get(field)
        if value is None:
            continue
        try:
            rule(value)
        except SpecError as exc:
            raise SpecError(f"{field}: {exc}") from None


def nests_deeper(value: Any, most: int = MAX_JSON_DEPTH) -> bool:
    """Do arrays and objects in parsed JSON `value` nest more than `most` deep?

    Level by level, without recursion: pydantic and the code after it recurse, and deeper input
    is nothing a job request needs. (Python's json parser stops by itself, with RecursionError,
    at about a thousand levels: the API answers that the same way.)
    """
    level = [value] if isinstance(value, (dict, list)) else []
    for _ in range(most):
        if not level:
            return False
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, (dict, list))
        ]
    return bool(level)


def _exec_bytes(strings) -> int:
    return sum(len(s.encode("utf-8", "surrogatepass")) + 1 for s in strings)


def _bounded(text: str, most: int) -> str:
    if len(text) > most:
        raise SpecError(f"longer than {most} characters")
    return text


def _short(number: int) -> str:
    """A number for a message: an absurd one (10**400) is not printed whole."""
    if abs(number) < 10**18:
        return str(number)
    digits = len(str(abs(number))) if number.bit_length() < 14_000 else "thousands of"  # str() stops at 4300
    return f"a number of {digits} digits"

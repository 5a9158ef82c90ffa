"""Exit status as PBS reports it: the script's code 0-255, 256+N when killed by
signal N, negative for failures on the scheduler's side (always with a reason)."""

SCHEDULER_FAILURE = -1
WORKER_LOST = -2  # the worker stopped heart-beating; its lease ran out
WALLTIME_EXCEEDED = -3
EXEC_FAILED = -4  # the script or command could not be started


def from_returncode(returncode: int) -> int:
    """Popen's returncode (negative N for signal N) to a PBS exit status."""
    return 256 - returncode if returncode < 0 else returncode


def describe(status: int | None) -> str:
    if status is None:
        return ""
    if status > 255:
        return f"killed by signal {status - 256}"
    return f"exit status {status}"

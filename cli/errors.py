"""Errors the CLI reports as one line on stderr, each with the exit code to use."""

from __future__ import annotations


class CliError(Exception):
    """A failure to report as `PROG: message` and exit with `exit_code` (1 unless said otherwise)."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(CliError):
    """Bad command-line input caught on the client side (exit 2, like click's usage errors)."""

    exit_code = 2


class HostError(CliError):
    """No usable HyperBatch host: nothing configured, unknown name, unreadable hosts.json or token."""


class Unreachable(CliError):
    """The host's URL could not be reached (refused, timed out, DNS, TLS)."""


class ApiError(CliError):
    """The server answered with a non-2xx status and its `{"error": code, "message": text}`, plus the
    PBS error number (`pbs_errno`) and the job named (`job_id`, as PBS echoes it) when it sent them.

    Exit code: the PBS error number's low byte when there is one (as PBS's commands exit), else
    2 for bad input (400, 413, 422) and 1 for anything else (401, 403, 404, 409, 5xx).
    """

    def __init__(self, status: int, code: str, message: str, pbs_errno: int | None = None,
                 job_id: str | None = None) -> None:
        exit_code = (pbs_errno & 0xFF) if pbs_errno else (2 if status in (400, 413, 422) else 1)
        super().__init__(message, exit_code=exit_code)
        self.status = status
        self.code = code
        self.pbs_errno = pbs_errno
        self.job_id = job_id

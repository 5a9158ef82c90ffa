"""Errors the core raises; the API maps each to an HTTP status with a message that says what to fix.

An error PBS defines also carries its PBS error number (`pbs_errno`, from
OpenPBS's src/include/pbs_error.h): the API sends it along, and the PBS
commands print PBS's text for it (`PBS_TEXT`) and exit with the number's low
byte, as PBS's own commands do (`qstat` of an unknown id exits 153).
"""

# PBS error numbers (OpenPBS src/include/pbs_error.h) and their text (src/lib/Liblog/pbs_messages.c).
PBSE_UNKJOBID = 15001
PBSE_IVALREQ = 15004
PBSE_PERM = 15007
PBSE_UNKSIG = 15013
PBSE_BADATVAL = 15014
PBSE_MODATRRUN = 15015
PBSE_BADSTATE = 15016
PBSE_UNKQUE = 15018
PBSE_NOSUP = 15029
PBSE_UNKRESC = 15035
PBSE_EXCQRESC = 15036
PBSE_NORERUN = 15038
PBSE_BADDEPEND = 15054
PBSE_UNKNODE = 15062
PBSE_HISTJOBID = 15139
PBSE_NOHISTARRAYSUBJOB = 15159

PBS_TEXT = {
    PBSE_UNKJOBID: "Unknown Job Id",
    PBSE_IVALREQ: "Invalid request",
    PBSE_PERM: "Unauthorized Request ",
    PBSE_UNKSIG: "Unknown/illegal signal name",
    PBSE_BADATVAL: "Illegal attribute or resource value",
    PBSE_MODATRRUN: "Cannot modify attribute while job running ",
    PBSE_BADSTATE: "Request invalid for state of job",
    PBSE_UNKQUE: "Unknown queue",
    PBSE_NOSUP: "No support for requested service",
    PBSE_UNKRESC: "Unknown resource",
    PBSE_EXCQRESC: "Job exceeds queue resource limits",
    PBSE_NORERUN: "job is not rerunnable",
    PBSE_BADDEPEND: "Invalid Job Dependency",
    PBSE_UNKNODE: "Unknown node ",
    PBSE_HISTJOBID: "Job has finished",
    PBSE_NOHISTARRAYSUBJOB: "Request invalid for finished array subjob",
}


class HyperError(Exception):
    """Base of every error a caller can act on."""

    status = 400
    code = "BadRequest"
    pbs_errno: int | None = None
    job_id: str | None = None  # the job the request named, as PBS echoes it (`1234.server`): set by the API

    def __init__(self, message: str = "", *, pbs_errno: int | None = None):
        super().__init__(message)
        if pbs_errno is not None:
            self.pbs_errno = pbs_errno


class SpecError(HyperError, ValueError):
    """Malformed user input: a script header, an array range, a dependency, a walltime."""

    code = "InvalidSpec"


class NotFound(HyperError, LookupError):
    status = 404
    code = "NotFound"
    pbs_errno = PBSE_UNKJOBID


class Forbidden(HyperError):
    status = 403
    code = "Forbidden"
    pbs_errno = PBSE_PERM


class Conflict(HyperError):
    """The job is not in a state that allows the request (e.g. releasing a job that is not held)."""

    status = 409
    code = "Conflict"
    pbs_errno = PBSE_BADSTATE


class JobFinished(Conflict):
    """The job (or task) has finished: a request for live jobs only."""

    code = "JobFinished"
    pbs_errno = PBSE_HISTJOBID


class PayloadTooLarge(HyperError):
    """A request body over hyperbatch.core.limits.MAX_BODY_BYTES."""

    status = 413
    code = "PayloadTooLarge"


class StorageFull(HyperError):
    """The store cannot write: its disk (or its quota) is full. Nothing was changed; try again once
    there is room. 507, so that a client tells it from a fault of the server (5xx all the same)."""

    status = 507
    code = "InsufficientStorage"


class IllegalTransition(Exception):
    """A write would move a job between states the transition table (hyperbatch.core.states) forbids.

    A programming error, never a user's: it is raised before anything is written.
    """


class StaleTransition(Exception):
    """A conditional write lost: the job's (state, attempt) was no longer what the caller expected.

    Not a user error: the caller re-reads and decides again.
    """


class ConfigError(ValueError):
    """A configuration file is missing, malformed or inconsistent; the message names file, entry and field."""


def why(exc: BaseException) -> str:
    """What went wrong in a user's words: an OS error's own ('No space left on device', without the
    errno and path the job's comment names already), else the exception's message, else its kind.
    The one wording of a failure in a job's comment, whichever part of a worker saw it."""
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__

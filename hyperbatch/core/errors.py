"""Errors the core raises; the API maps each to an HTTP status with a message that says what to fix."""


class HyperError(Exception):
    """Base of every error a caller can act on."""

    status = 400
    code = "BadRequest"


class SpecError(HyperError, ValueError):
    """Malformed user input: a script header, an array range, a dependency, a walltime."""

    code = "InvalidSpec"


class NotFound(HyperError, LookupError):
    status = 404
    code = "NotFound"


class Forbidden(HyperError):
    status = 403
    code = "Forbidden"


class Conflict(HyperError):
    """The job is not in a state that allows the request (e.g. releasing a job that is not held)."""

    status = 409
    code = "Conflict"


class PayloadTooLarge(HyperError):
    """A request body over hyperbatch.core.limits.MAX_BODY_BYTES."""

    status = 413
    code = "PayloadTooLarge"


class StorageFull(HyperError):
    """The store cannot write: its disk (or its quota) is full. Nothing was changed; try again once
    there is room. 507, so that a client tells it from a fault of the server (5xx all the same)."""

    status = 507
    code = "InsufficientStorage"


class Finished(Conflict):
    """Too late: the job (or array task) has finished, so it can no longer be cancelled.

    The CLI reports it in PBS's words (`qdel: Job has finished ID`), by its code.
    """

    code = "JobFinished"


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

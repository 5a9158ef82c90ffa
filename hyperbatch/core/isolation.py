"""What a job may inherit from its worker's environment: the one rule that walls jobs off from the scheduler.

A worker's environment holds what the scheduler runs on: the credentials of
the worker's role (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI in a Batch container,
or keys and tokens given some other way), the task metadata endpoint, and the
scheduler's own settings (HYPER_CONFIG, HYPER_TABLE, HYPER_QUEUE_URLS, ...). A
job that saw the credentials could write any item of the job table and read or
delete any queue's messages, so owner isolation would not hold against a
hostile job. A job inherits none of it: its environment is built anew as PBS
builds one (hyperbatch.core.environment), and of the worker's own it keeps only
the region's names (AWS_REGION, AWS_DEFAULT_REGION, HYPER_REGION), which name no
secret and which AWS tools a job brings its own credentials to use.

Running the job as another user (HYPER_JOB_USER, hyperbatch.support.processes.JobUser)
keeps it from reading the agent's environment and files some other way.
"""

from __future__ import annotations

from typing import Mapping

KEPT = frozenset({"AWS_REGION", "AWS_DEFAULT_REGION", "HYPER_REGION"})


def inherited(env: Mapping[str, str]) -> dict[str, str]:
    """The part of a worker's environment a job may see: the region's names, nothing else."""
    return {name: env[name] for name in KEPT if name in env}

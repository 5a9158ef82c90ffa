"""What a job may inherit from its worker's environment: the one rule that walls jobs off from the scheduler.

A worker's environment holds what the scheduler runs on: the credentials of
the worker's role (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI in a Batch container,
or keys and tokens given some other way), the task metadata endpoint, and the
scheduler's own settings (HYPER_CONFIG, HYPER_TABLE, HYPER_QUEUE_URLS, ...). A
job that saw the credentials could write any item of the job table and read or
delete any queue's messages, so owner isolation would not hold against a
hostile job. A job inherits none of it:

- no AWS_* variable except the region (AWS_REGION, AWS_DEFAULT_REGION), which
  names no secret and which AWS tools a job brings its own credentials to use;
- no ECS_* variable (the container metadata endpoints);
- no HYPER_* or HYPERBATCH_* variable but HYPER_REGION (the region the job
  runs in, a name only): the agent sets the job-facing ones itself afterwards (HYPER_JOB_ID, HYPER_JOB_NAME, HYPER_ATTEMPT, HYPER_QUEUE,
  HYPER_OWNER, HYPER_ARRAY_ID, HYPER_ARRAY_INDEX and the PBS_* names), and the
  definition's environment and the job's own `-v` variables are the job's.

Running the job as another user (HYPER_JOB_USER, hyperbatch.support.processes.JobUser)
keeps it from reading the agent's environment and files some other way.
"""

from __future__ import annotations

from typing import Mapping

KEPT = frozenset({"AWS_REGION", "AWS_DEFAULT_REGION", "HYPER_REGION"})
WITHHELD_PREFIXES = ("AWS_", "ECS_", "HYPER_", "HYPERBATCH_")


def inherited(env: Mapping[str, str]) -> dict[str, str]:
    """The part of a worker's environment a job may see."""
    return {name: value for name, value in env.items() if name in KEPT or not name.startswith(WITHHELD_PREFIXES)}

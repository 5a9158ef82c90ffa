"""Physical names every part derives from the deployment name (settings.stack_name).

The CDK stacks build resources with these names, the AWS adapters and the CLI
find them by these names, and CloudFormation cannot pass values between
regions, so compute stacks compute the same names instead of importing them.
Change a rule only here, and only with a migration plan: these are the
physical names of deployed resources.
"""

from __future__ import annotations

from hyperbatch.core.errors import ConfigError

# Global secondary indexes of the job table: name -> (partition key, sort key).
INDEXES = {
    "by_owner": ("gsi1pk", "gsi1sk"),  # owner, job id (a lone job) or newest member id (a submission)
    "by_queue_state": ("gsi2pk", "gsi2sk"),  # "queue#waiting" (WAITING and HELD jobs only), job id
    "by_parent": ("gsi3pk", "gsi3sk"),  # parent job id, child id
}
# What each index projects besides the keys: None = ALL. The job indexes carry only what
# DynamoJobStore filters on in the index (queue; state) or needs to expand a submission
# (members), all written once per entry, so a job's state changes write no by_owner entry;
# a page's full items come from one BatchGetItem (see hyperbatch/adapters/aws/dynamo.py).
INDEX_PROJECTIONS: dict[str, tuple[str, ...] | None] = {
    "by_owner": ("queue", "members"),
    "by_queue_state": ("state",),
    "by_parent": None,
}

# Synth needs no credentials: with no account in settings.json and none from the
# CDK CLI's credentials (CDK_DEFAULT_ACCOUNT), stacks target this placeholder,
# whose availability zones are pinned in cdk.json (`hyper regions add` records
# a new region's). Resource ARNs use AWS::AccountId either way; only bootstrap
# asset locations carry the account.
PLACEHOLDER_ACCOUNT = "123456789012"

# The partition key of the scaler's single-flight lease item in the job table
# (hyperbatch/adapters/aws/lease.py); the scaler's role may write no other key (stacks/access.py).
SCALER_LEASE_KEY = "lease#scaler"

# The partition key of the records of workers on your own machines in the job table (sort key: the
# worker's name; hyperbatch/adapters/aws/onprem.py): one Query lists them for the scaler and pbsnodes.
ONPREM_WORKERS_KEY = "workers#onprem"

# The partition key of the registered runs in the job table (sort key: the worker's exec_host;
# hyperbatch/adapters/aws/runs.py): one Query a minute lists them for the reconciler.
REGISTERED_RUNS_KEY = "runs#registered"

# The prefixes of the files bucket (what each holds: hyperbatch/core/bucket.py); grants and
# lifecycle rules name them (stacks/access.py, stacks/storage.py).
SCRIPT_PREFIX = "scripts/"  # large job scripts: the API puts, workers get (hyperbatch/adapters/aws/scripts.py)
UPLOAD_PREFIX = "uploads/"  # stage-in files qsub uploads through presigned URLs: workers get
JOB_PREFIX = "jobs/"  # what runs left (stdout, stderr, stage-out files): workers put, owners get through the API
# A job may wait up to a work message's life (10 days) and its dead letter's 4 more before it runs,
# so what it reads (its script, its uploads) is kept this much longer than the job's record.
INPUT_EXTRA_DAYS = 14

_SQS_NAME_MAX = 80  # SQS rejects longer queue names
_BATCH_NAME_MAX = 128  # job queue, job definition and compute environment names
_S3_NAME_MAX = 63


def control_stack(deployment: str) -> str:
    return f"{deployment}-Control"


def compute_stack(deployment: str, region: str) -> str:
    return f"{deployment}-Compute-{region}"


def export(deployment: str, output: str) -> str:
    """CloudFormation export name of a control-plane output, unique per deployment."""
    return f"{control_stack(deployment)}-{output}"


def table(deployment: str) -> str:
    return f"{deployment}-jobs"


def queue(deployment: str, name: str) -> str:
    return _checked(f"{deployment}-{name}", _SQS_NAME_MAX, f"queue '{name}'")


def dead_letter_queue(deployment: str, name: str) -> str:
    return _checked(f"{deployment}-{name}-dlq", _SQS_NAME_MAX, f"queue '{name}'")


def stream_failures_queue(deployment: str) -> str:
    """Where the release function's event source mapping parks batches it gave up on."""
    return _checked(f"{deployment}-release-failures", _SQS_NAME_MAX, "the release-failures queue")


def log_group_prefix(deployment: str) -> str:
    """Job output lives in one log group per queue under this prefix, one stream per job."""
    return f"/hyperbatch/{deployment}/jobs/"


def job_log_group(deployment: str, queue_name: str) -> str:
    return f"{log_group_prefix(deployment)}{queue_name}"


def batch_job_queue(deployment: str, cluster: str) -> str:
    return _checked(f"{deployment}-{cluster}", _BATCH_NAME_MAX, f"cluster '{cluster}'")


# The events the release function puts on the main region's default EventBridge bus (hyperbatch.core.notices):
# every job state change, shaped like AWS Batch's, for users' rules; and one per mail or webhook a change
# makes, for the stack's rule that hands them to the notifier function.
EVENT_SOURCE = "hyperbatch"
STATE_CHANGE_DETAIL_TYPE = "HyperBatch Job State Change"
NOTICE_DETAIL_TYPE = "HyperBatch Job Notice"


def batch_job_definition(deployment: str, definition: str, platform: str, arch: str) -> str:
    """One job definition per (definition, EC2 or Fargate, CPU architecture) a region needs."""
    name = f"{deployment}-{definition}-{platform}-{arch}"
    return _checked(name, _BATCH_NAME_MAX, f"definition '{definition}'")


def auto_scaling_group(deployment: str, cluster: str) -> str:
    return f"{deployment}-{cluster}"


def _checked(name: str, limit: int, what: str) -> str:
    if len(name) > limit:
        raise ConfigError(
            f"settings.json: field 'stack_name': the name '{name}' of {what} is longer than the "
            f"{limit} characters AWS allows; choose a shorter stack_name (or entry name)"
        )
    return name


"""Least-privilege grants on the control plane's resources, by ARN.

ARNs come from `naming`, so the same grant works from the main region (Lambda
functions) and from any hub region (worker roles), where the resources
themselves cannot be referenced.
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam

from hyperbatch.config import Configuration
from hyperbatch.core.names import SCALER_LEASE_KEY

from stacks import naming
from stacks.nag import allow

TABLE_READ = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query")
TABLE_WRITE = (
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",  # conditional transitions inside transactions
)
# The scaler's single-flight lease (SCALER_LEASE_KEY): one item, taken and let go with conditional
# writes. The scaler may write no other item of the job table (IAM dynamodb:LeadingKeys).
LEASE_WRITE = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")
QUEUE_SEND = ("sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl")
LOG_READ = ("logs:GetLogEvents", "logs:FilterLogEvents", "logs:DescribeLogStreams")
LOG_WRITE = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents")


def job_table(principal: iam.IGrantable, config: Configuration, actions: tuple[str, ...]) -> None:
    """The job table and its indexes, named one by one (no index/* wildcard)."""
    deployment, main = config.settings.stack_name, config.settings.main_region
    allow(principal, actions, [naming.table_arn(deployment, main), *naming.index_arns(deployment, main)])


def scaler_lease(principal: iam.IGrantable, config: Configuration) -> None:
    """Conditional writes of the scaler's lease item (partition key SCALER_LEASE_KEY) and nothing else."""
    deployment, main = config.settings.stack_name, config.settings.main_region
    allow(
        principal,
        LEASE_WRITE,
        [naming.table_arn(deployment, main)],
        conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [SCALER_LEASE_KEY]}},
    )


def work_queues(principal: iam.IGrantable, config: Configuration, actions: tuple[str, ...]) -> None:
    """The work queues only (not their dead-letter queues)."""
    deployment, main = config.settings.stack_name, config.settings.main_region
    allow(principal, actions, [naming.queue_arn(main, naming.queue(deployment, p.name)) for p in config.pools])


def dead_letter_queues(principal: iam.IGrantable, config: Configuration, actions: tuple[str, ...]) -> None:
    """The work queues' dead-letter queues only."""
    deployment, main = config.settings.stack_name, config.settings.main_region
    allow(principal, actions, [naming.queue_arn(main, naming.dead_letter_queue(deployment, p.name))
                               for p in config.pools])


def job_logs(principal: iam.IGrantable, config: Configuration, actions: tuple[str, ...]) -> None:
    deployment, main = config.settings.stack_name, config.settings.main_region
    allow(
        principal,
        actions,
        naming.log_group_arns(deployment, main),
        wildcard_reason="Job output is one log stream per job, created at run time, in the per-queue "
        "log groups under this deployment's prefix; the prefix scopes the wildcard to this deployment.",
    )


def bucket_objects(principal: iam.IGrantable, config: Configuration, prefix: str, actions: tuple[str, ...]) -> None:
    """Objects under one prefix of this deployment's files bucket (hyperbatch/core/bucket.py)."""
    bucket = naming.files_bucket(config.settings.stack_name, config.settings.main_region)
    allow(
        principal,
        actions,
        [f"arn:{Aws.PARTITION}:s3:::{bucket}/{prefix}*"],
        wildcard_reason=f"Object keys under {prefix} are made at run time (a script's hash, an upload's or a job's "
        "id); the wildcard is confined to that prefix of this deployment's files bucket.",
    )


def bucket_listing(principal: iam.IGrantable, config: Configuration, prefixes: tuple[str, ...]) -> None:
    """ListBucket of this deployment's files bucket, only under `prefixes` (the s3:prefix condition)."""
    bucket = naming.files_bucket(config.settings.stack_name, config.settings.main_region)
    allow(principal, ["s3:ListBucket"], [f"arn:{Aws.PARTITION}:s3:::{bucket}"],
          conditions={"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}})


def bucket_uploads_in_progress(principal: iam.IGrantable, config: Configuration) -> None:
    """ListMultipartUploads of this deployment's files bucket (keys and upload ids, no data); S3 offers
    no prefix condition on it, so the API narrows each listing to the caller's key itself."""
    bucket = naming.files_bucket(config.settings.stack_name, config.settings.main_region)
    allow(principal, ["s3:ListBucketMultipartUploads"], [f"arn:{Aws.PARTITION}:s3:::{bucket}"])


def staging_locations(principal: iam.IGrantable, config: Configuration) -> None:
    """Read and write the S3 locations settings.staging_locations allows jobs to stage from and to."""
    for number, location in enumerate(config.settings.staging_locations):
        bucket, _, prefix = location[len("s3://"):].partition("/")
        allow(
            principal,
            ("s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"),
            [f"arn:{Aws.PARTITION}:s3:::{bucket}/{prefix}*"],
            wildcard_reason="Jobs stage files under the locations settings.staging_locations names; the wildcard "
            "is confined to each of them.",
        )
        allow(principal, ["s3:ListBucket"], [f"arn:{Aws.PARTITION}:s3:::{bucket}"],
              conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}})

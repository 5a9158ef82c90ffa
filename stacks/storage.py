"""The control plane's state: the job table, the work queues and the files bucket."""

from __future__ import annotations

import math
from dataclasses import dataclass

from aws_cdk import CfnOutput, CfnParameter, Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import custom_resources as cr
from constructs import Construct

from hyperbatch.config import Configuration
from hyperbatch.core.names import INPUT_EXTRA_DAYS, JOB_PREFIX, SCRIPT_PREFIX, UPLOAD_PREFIX

from stacks import naming
from stacks.nag import acknowledge, allow
from stacks.retention import log_group, removal_policy

MAX_RECEIVE_COUNT = 5  # deliveries before a message is parked in the DLQ
# A dead letter keeps its first enqueue time, so a DLQ only holds it for its own retention less the
# time it spent in the work queue. The DLQ keeps messages the SQS maximum and the work queues less,
# so every dead letter stays at least 4 days (a long weekend) for the reconciler or a person.
DEAD_LETTER_RETENTION = Duration.days(14)  # SQS maximum
WORK_RETENTION = Duration.days(10)  # a backlog may still wait long for capacity


@dataclass(frozen=True)
class WorkQueue:
    queue: sqs.Queue
    dead_letters: sqs.Queue


def job_table(scope: Construct, config: Configuration) -> dynamodb.Table:
    deployment = config.settings.stack_name
    table = dynamodb.Table(
        scope,
        "JobTable",
        table_name=naming.table(deployment),
        partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        # DynamoDB's own deletion protection is switched on after the stack's first create
        # (protect_after_create): on from the start, it would stop a failed create's rollback.
        removal_policy=removal_policy(config),
        time_to_live_attribute="expires_at",
        stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
    )
    for index, (pk, sk) in naming.INDEXES.items():
        projected = naming.INDEX_PROJECTIONS.get(index)
        table.add_global_secondary_index(
            index_name=index,
            partition_key=dynamodb.Attribute(name=pk, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=sk, type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL if projected is None else dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=None if projected is None else list(projected),
        )
    return table


def protect_after_create(stack: Stack, table: dynamodb.Table, config: Configuration) -> cr.AwsCustomResource:
    """Switch on the job table's deletion protection once everything else in `stack` exists.

    The call depends on every other resource of the stack, so it runs last: a first deploy that
    fails anywhere rolls back before the table is protected, and the rollback can delete it (its
    RetainExceptOnCreate policy allows that). Removing the call (deletion_protection set to false)
    switches the protection off again, so the stack can then be destroyed. The table itself stays
    when a protected deployment's stack is deleted: its deletion policy keeps it.
    """
    name = table.table_name
    # The call runs in a function of CDK's; like ours, it gets its own role and log group.
    role = iam.Role(stack, "JobTableProtectorRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    logs = log_group(stack, "JobTableProtectorLogs", config)
    allow(role, ["logs:CreateLogStream", "logs:PutLogEvents"], [logs.log_group_arn])
    call = dict(service="DynamoDB", action="UpdateTable", physical_resource_id=cr.PhysicalResourceId.of(name))
    guard = cr.AwsCustomResource(
        stack,
        "JobTableDeletionProtection",
        on_create=cr.AwsSdkCall(**call, parameters={"TableName": name, "DeletionProtectionEnabled": True}),
        on_delete=cr.AwsSdkCall(
            **call,
            parameters={"TableName": name, "DeletionProtectionEnabled": False},
            ignore_error_codes_matching="ResourceNotFoundException",
        ),
        policy=cr.AwsCustomResourcePolicy.from_statements(
            [iam.PolicyStatement(actions=["dynamodb:UpdateTable"], resources=[table.table_arn])]
        ),
        install_latest_aws_sdk=False,
        role=role,
        log_group=logs,
    )
    for child in stack.node.children:
        if child is not guard and not isinstance(child, (CfnOutput, CfnParameter)):
            guard.node.add_dependency(child)
    return guard


def secure_queue(
    scope: Construct, id: str, name: str, retention: Duration = DEAD_LETTER_RETENTION, **props
) -> sqs.Queue:
    """An SQS queue encrypted at rest, reachable only over TLS, keeping messages `retention` (the SQS maximum)."""
    return sqs.Queue(
        scope,
        id,
        queue_name=name,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=retention,
        **props,
    )


def work_queues(scope: Construct, config: Configuration) -> dict[str, WorkQueue]:
    """Per pool (a queue's workers of one size: hyperbatch.core.pools) a standard queue whose lease is the
    visibility timeout, plus its DLQ. A queue of one size has one, named after the queue."""
    deployment = config.settings.stack_name
    lease = Duration.seconds(math.ceil(config.settings.lease_seconds))
    queues = {}
    for q in config.pools:
        dead_letters = secure_queue(scope, f"Queue-{q.name}-DLQ", naming.dead_letter_queue(deployment, q.name))
        acknowledge(dead_letters, "This queue is itself the dead-letter queue of a work queue.", "AwsSolutions-SQS3")
        queue = secure_queue(
            scope,
            f"Queue-{q.name}",
            naming.queue(deployment, q.name),
            retention=WORK_RETENTION,
            visibility_timeout=lease,
            dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letters, max_receive_count=MAX_RECEIVE_COUNT),
        )
        queues[q.name] = WorkQueue(queue=queue, dead_letters=dead_letters)
    return queues


def files_bucket(scope: Construct, config: Configuration) -> s3.Bucket:
    """Job files (hyperbatch/core/bucket.py): large scripts, stage-in uploads and what runs left, each
    under its prefix. Users have no access of their own (the API hands out presigned URLs). Each
    prefix expires on its own: a job's files with the job's record (job_retention_days after it ended),
    what jobs read (scripts, uploads) INPUT_EXTRA_DAYS later, since a job may wait that long to run."""
    retention = config.settings.job_retention_days
    inputs = Duration.days(retention + INPUT_EXTRA_DAYS)
    bucket = s3.Bucket(
        scope,
        "Files",
        bucket_name=naming.files_bucket(config.settings.stack_name, config.settings.main_region),
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        removal_policy=removal_policy(config),
        lifecycle_rules=[
            s3.LifecycleRule(id="scripts", prefix=SCRIPT_PREFIX, expiration=inputs),
            s3.LifecycleRule(id="uploads", prefix=UPLOAD_PREFIX, expiration=inputs),
            s3.LifecycleRule(id="jobs", prefix=JOB_PREFIX, expiration=Duration.days(retention)),
            s3.LifecycleRule(id="unfinished-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)),
        ],
    )
    acknowledge(
        bucket,
        "Only the API function (scripts; presigned URLs for uploads and job files) and workers reach this "
        "bucket; access is already recorded by the API access log and CloudTrail, so S3 server access logs "
        "would duplicate it.",
        "AwsSolutions-S1",
    )
    return bucket

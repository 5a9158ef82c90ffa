"""IAM for workers in a compute region.

The job role is what the worker agent runs as: it reaches the main region's
queues, job table, job logs and the files bucket's prefixes it uses (and the S3
locations the settings allow), by ARN, and nothing else.
The execution role is what ECS uses to pull the image and ship container logs.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from hyperbatch.config import Configuration

from hyperbatch.core.names import JOB_PREFIX, SCRIPT_PREFIX, UPLOAD_PREFIX

from stacks import access, naming
from stacks.nag import allow

BATCH_LOG_GROUP = "/aws/batch/job"  # where Batch sends container output by default

WORKER_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:Query")
WORKER_QUEUE_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",  # the heartbeat extends the lease
    "sqs:SendMessage",
    "sqs:GetQueueAttributes",
)


def grant_worker(principal: iam.IGrantable | iam.ManagedPolicy, config: Configuration) -> None:
    """What the worker agent does against the control plane (shared by Batch and EC2 workers)."""
    access.work_queues(principal, config, WORKER_QUEUE_ACTIONS)
    access.job_table(principal, config, WORKER_TABLE_ACTIONS)
    access.job_logs(principal, config, access.LOG_WRITE)
    # Files: the agent stages, never the job (it holds no credentials: hyperbatch.core.isolation). It reads
    # scripts and uploads, writes what runs leave under the job prefix, and reaches the locations
    # settings.staging_locations allows; nothing else of S3.
    access.bucket_objects(principal, config, SCRIPT_PREFIX, ("s3:GetObject",))
    access.bucket_objects(principal, config, UPLOAD_PREFIX, ("s3:GetObject",))
    # (a stage-out over 16 MB goes in parts: one that fails is aborted, not left to the lifecycle rule)
    access.bucket_objects(principal, config, JOB_PREFIX, ("s3:PutObject", "s3:AbortMultipartUpload"))
    access.bucket_listing(principal, config, (UPLOAD_PREFIX,))  # a directory staged in is a prefix
    access.staging_locations(principal, config)


def onprem_worker_policy(scope: Construct, config: Configuration) -> iam.ManagedPolicy:
    """What a worker on your own machine needs (`hyper worker start`, hyperbatch.core.onprem): the agent's
    grants, as a container's job role has them, and the control stack's outputs, where it finds the
    names. None of the execution role's (image pulls, container logs): there is no container. Its
    record is an item of the job table, written with the agent's PutItem and UpdateItem."""
    deployment, main = config.settings.stack_name, config.settings.main_region
    policy = iam.ManagedPolicy(scope, "OnPremWorkers",
                               description=f"HyperBatch {deployment}: a worker on your own machine")
    grant_worker(policy, config)
    allow(policy, ["cloudformation:DescribeStacks"],
          [naming.arn("cloudformation", main, f"stack/{naming.control_stack(deployment)}/*")],
          wildcard_reason="The '*' is the stack id CloudFormation generates; the stack name is fixed.")
    return policy


class WorkerRoles(Construct):
    def __init__(self, scope: Construct, id: str, *, config: Configuration) -> None:
        super().__init__(scope, id)
        tasks = iam.ServicePrincipal("ecs-tasks.amazonaws.com")
        self.job_role = iam.Role(self, "JobRole", assumed_by=tasks, description="HyperBatch worker agent")
        grant_worker(self.job_role, config)
        # The image asset adds the pull from its own repository; this adds the rest.
        self.execution_role = iam.Role(self, "ExecutionRole", assumed_by=tasks, description="HyperBatch image pull")
        allow(
            self.execution_role,
            ["ecr:GetAuthorizationToken"],
            ["*"],
            wildcard_reason="ecr:GetAuthorizationToken supports no resource-level permissions; "
            "the pull actions themselves are scoped to the image repository.",
        )
        allow(
            self.execution_role,
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [naming.arn("logs", Stack.of(self).region, f"log-group:{BATCH_LOG_GROUP}:*")],
            wildcard_reason="Batch writes each container's stdout to its own stream in /aws/batch/job, "
            "created at run time; the wildcard is confined to that log group.",
        )

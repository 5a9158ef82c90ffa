"""IAM for workers in a compute region.

The job role is what the worker agent runs as: it reaches the main region's
queues, job table, job logs and staged scripts, by ARN, and nothing else.
The execution role is what ECS uses to pull the image and ship container logs.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from constructs import Construct

from hyperbatch.config import Configuration

from . import access

WORKER_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:Query")
WORKER_QUEUE_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",  # the heartbeat extends the lease
    "sqs:SendMessage",
    "sqs:GetQueueAttributes",
)


def grant_worker(principal: iam.IGrantable, config: Configuration) -> None:
    """What the worker agent does against the control plane (shared by Batch and EC2 workers)."""
    access.work_queues(principal, config, WORKER_QUEUE_ACTIONS)
    access.job_table(principal, config, WORKER_TABLE_ACTIONS)
    access.job_logs(principal, config, access.LOG_WRITE)
    access.script_objects(principal, config, ("s3:GetObject",))


class WorkerRoles(Construct):
    def __init__(self, scope: Construct, id: str, *, config: Configuration) -> None:
        super().__init__(scope, id)
        tasks = iam.ServicePrincipal("ecs-tasks.amazonaws.com")
        self.job_role = iam.Role(self, "JobRole", assumed_by=tasks, description="HyperBatch worker agent")
        grant_worker(self.job_role, config)
        # Left without statements: the image asset and the job definitions grant it
        # exactly the ECR repository pull and log-stream writes they need.
        self.execution_role = iam.Role(self, "ExecutionRole", assumed_by=tasks, description="HyperBatch image pull")

"""Managed policies for people: one to submit and follow jobs, one for admins.

Every API route is IAM-authorized, so a person needs `execute-api:Invoke` on
the routes; the control stack outputs both policies' ARNs, and an account
administrator attaches one to the role or group people use (docs/deployment.md).
What an admin may do in the API (see and manage every job) is decided by
`settings.admins`, not by IAM; the admin policy adds read-only access to the
deployment's own operations data (job logs, queue depths, alarms, stacks).
"""

from __future__ import annotations

import re

from aws_cdk import aws_iam as iam
from constructs import Construct

from hyperbatch.config import Configuration

from stacks import access, naming
from stacks.api import ROUTES
from stacks.nag import allow_in

ROUTE_WILDCARD_REASON = (
    "Each '*' of a route ARN stands for a path parameter (a job id) or the stage (the API has only "
    "$default); every statement names one route of this deployment's API."
)


def route_arns(config: Configuration, api_id: str) -> list[str]:
    """One execute-api ARN per API route: method and path, path parameters as '*'."""
    main = config.settings.main_region
    return [
        naming.arn("execute-api", main, f"{api_id}/*/{method}/{re.sub(r'{[^}]+}', '*', path.lstrip('/'))}")
        for method, path in ROUTES
    ]


def stack_arn(stack_name: str, region: str) -> str:
    return naming.arn("cloudformation", region, f"stack/{stack_name}/*")


class PeoplePolicies(Construct):
    """`submitters` and `admins`: managed policies attached to nothing here."""

    def __init__(self, scope: Construct, id: str, *, config: Configuration, api_id: str) -> None:
        super().__init__(scope, id)
        deployment, main = config.settings.stack_name, config.settings.main_region
        self.submitters = iam.ManagedPolicy(
            self, "Submitters", description=f"HyperBatch {deployment}: submit, follow and manage one's own jobs"
        )
        self.admins = iam.ManagedPolicy(
            self, "Admins", description=f"HyperBatch {deployment}: the API, and read-only operations data"
        )
        control = stack_arn(naming.control_stack(deployment), main)
        stack_id = "The '*' is the stack id CloudFormation generates; the stack names are fixed."
        for policy in (self.submitters, self.admins):
            allow_in(policy, ["execute-api:Invoke"], route_arns(config, api_id), ROUTE_WILDCARD_REASON)
        # `hyper hosts import-deployment` reads the control stack's outputs.
        allow_in(self.submitters, ["cloudformation:DescribeStacks"], [control], stack_id)
        computes = [stack_arn(naming.compute_stack(deployment, r), r) for r in config.compute_regions]
        allow_in(self.admins, ["cloudformation:DescribeStacks", "cloudformation:DescribeStackEvents"],
                 [control, *computes], stack_id)
        allow_in(self.admins, access.LOG_READ, naming.log_group_arns(deployment, main),
                 "Job output: one log stream per job in the per-queue log groups under this deployment's prefix.")
        queues = [naming.queue_arn(main, name) for p in config.pools
                  for name in (naming.queue(deployment, p.name), naming.dead_letter_queue(deployment, p.name))]
        allow_in(self.admins, ["sqs:GetQueueAttributes"],
                 [*queues, naming.queue_arn(main, naming.stream_failures_queue(deployment))])
        allow_in(self.admins, ["cloudwatch:DescribeAlarms"], [naming.arn("cloudwatch", main, f"alarm:{deployment}-*")],
                 "The deployment's alarms, all named with its prefix; the '*' is the rest of each name.")


"""How long things are kept: log retention and what a stack deletion takes with it."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Construct

from hyperbatch.config import Configuration


def removal_policy(config: Configuration) -> RemovalPolicy:
    """Protected deployments keep their data when the stack goes (or an update replaces it); others clean up.

    Never on a failed create (CloudFormation's RetainExceptOnCreate): what a failed first deploy
    made is deleted by its rollback, so a retry does not stop at fixed names that "already exist".
    """
    return RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE if config.settings.deletion_protection else RemovalPolicy.DESTROY


def log_group(scope: Construct, id: str, config: Configuration, name: str | None = None) -> logs.LogGroup:
    """A log group with the configured retention (the config models accept only values CloudWatch does)."""
    group = logs.LogGroup(scope, id, log_group_name=name, removal_policy=removal_policy(config))
    group.node.default_child.retention_in_days = config.settings.log_retention_days
    return group

"""Names, ARNs and URLs of deployed resources, as CloudFormation tokens.

The name rules themselves live in hyperbatch/names.py (the runtime and the
CLI need them without the CDK); this module adds what needs CDK tokens: the
account, the partition, ARNs and URLs.
"""

from __future__ import annotations

from aws_cdk import Aws

from hyperbatch.core.names import (  # noqa: F401 (re-exported for the stacks)
    INDEX_PROJECTIONS,
    INDEXES,
    PLACEHOLDER_ACCOUNT,
    _checked,
    _S3_NAME_MAX,
    auto_scaling_group,
    batch_job_definition,
    batch_job_queue,
    compute_stack,
    control_stack,
    dead_letter_queue,
    export,
    job_log_group,
    log_group_prefix,
    queue,
    stream_failures_queue,
    table,
)




def files_bucket(deployment: str, region: str, account: str = Aws.ACCOUNT_ID) -> str:
    """Globally unique by account and region; lower case as S3 requires."""
    name = f"{deployment.lower()}-files-{account}-{region}"
    # AWS::AccountId renders as 12 digits; check the length it will have.
    _checked(name.replace(Aws.ACCOUNT_ID, "0" * 12), _S3_NAME_MAX, "the files bucket")
    return name


# ARNs and URLs. The account is the AWS::AccountId pseudo parameter: every
# resource named here lives in the deploying account.


def arn(service: str, region: str, resource: str) -> str:
    return f"arn:{Aws.PARTITION}:{service}:{region}:{Aws.ACCOUNT_ID}:{resource}"


def table_arn(deployment: str, region: str) -> str:
    return arn("dynamodb", region, f"table/{table(deployment)}")


def index_arns(deployment: str, region: str) -> list[str]:
    return [f"{table_arn(deployment, region)}/index/{index}" for index in INDEXES]


def queue_arn(region: str, queue_name: str) -> str:
    return arn("sqs", region, queue_name)


def queue_url(region: str, queue_name: str, account: str = Aws.ACCOUNT_ID) -> str:
    return f"https://sqs.{region}.{Aws.URL_SUFFIX}/{account}/{queue_name}"


def auto_scaling_group_arn(region: str, group_name: str) -> str:
    """The '*' stands for the group's generated id; the name pins the group."""
    return arn("autoscaling", region, f"autoScalingGroup:*:autoScalingGroupName/{group_name}")


def log_group_arns(deployment: str, region: str) -> list[str]:
    """The job log groups and their streams (the two ARN forms CloudWatch Logs actions check)."""
    groups = arn("logs", region, f"log-group:{log_group_prefix(deployment)}*")
    return [groups, f"{groups}:log-stream:*"]

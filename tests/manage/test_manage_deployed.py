"""The "deployed" column of `hyper <kind> list` with an aws host selected, and the physical names behind it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyperbatch.cli import stack_outputs as deployed, host_registry as hosts
from hyperbatch import config
from hyperbatch.core import names
ROOT = Path(__file__).resolve().parents[2]

HOST = {"kind": "aws", "url": "https://abc.execute-api.us-east-1.amazonaws.com/prod/", "region": "us-east-1",
        "stack_name": "HyperBatch"}


def test_probes_parse_the_physical_names():
    # The probes strip "<deployment>-" from these names, and parse job definition names.
    assert names.queue("Dep", "q") == "Dep-q"
    assert names.batch_job_queue("Dep", "c") == names.auto_scaling_group("Dep", "c") == "Dep-c"
    assert names.batch_job_definition("Dep", "my-def", "fargate", "x86_64") == "Dep-my-def-fargate-x86_64"


def _deploy_some(boto3) -> None:
    """In moto: queue 'batch' (not 'west'); compute stacks in two of three regions; cluster 'default' in
    one region; definition 'standard' in two."""
    boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="HyperBatch-batch")
    template = json.dumps({"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}})
    for region in ("us-east-1", "us-west-2"):
        boto3.client("cloudformation", region_name=region).create_stack(
            StackName=f"HyperBatch-Compute-{region}", TemplateBody=template)
        boto3.client("batch", region_name=region).register_job_definition(
            jobDefinitionName="HyperBatch-standard-ec2-arm64", type="container",
            containerProperties={"image": "worker", "vcpus": 1, "memory": 128})
    role = boto3.client("iam", region_name="us-east-1").create_role(
        RoleName="batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    batch = boto3.client("batch", region_name="us-west-2")
    environment = batch.create_compute_environment(computeEnvironmentName="env", type="UNMANAGED", serviceRole=role)
    batch.create_job_queue(jobQueueName="HyperBatch-default", priority=1, state="ENABLED", computeEnvironmentOrder=[
        {"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}])


def test_statuses_per_kind(inprocess, env):
    import boto3
    from moto import mock_aws

    cfg = config.load(env.config)
    with mock_aws():
        _deploy_some(boto3)
        found = {kind: deployed.statuses(kind, cfg, HOST) for kind in ("regions", "clusters", "queues", "definitions",
                                                                      "images")}
    assert found == {
        "regions": {"us-east-1": "yes", "us-west-2": "yes", "eu-west-1": "no"},
        "clusters": {"default": "partial: us-west-2"},
        "queues": {"batch": "yes", "west": "no"},
        "definitions": {"standard": "partial: us-east-1, us-west-2"},
        "images": {"worker": "n/a"},
    }


def test_list_adds_the_column_for_an_aws_host_and_shows_failures_as_unknown(inprocess, env, call, monkeypatch):
    import boto3
    from moto import mock_aws

    hosts.register("prod", HOST, select=True)
    with mock_aws():
        _deploy_some(boto3)
        result = call("queues", "list")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.strip() and "─" not in line]
    assert rows[0][-1] == "deployed" and [row[-1] for row in rows[1:]] == ["yes", "no"]

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    result = call("queues", "list")  # no credentials at all: still a table
    assert result.returncode == 0 and result.stderr == ""
    assert [line.split()[-1] for line in result.stdout.splitlines()[2:] if line.strip()] == ["unknown", "unknown"]


@pytest.mark.parametrize("kind", ["local", None])
def test_no_column_without_an_aws_host(env, call, kind):
    if kind:
        hosts.register("local", {"kind": "local", "url": "http://127.0.0.1:1", "token_file": "/t"}, select=True)
    result = call("queues", "list")
    assert result.returncode == 0 and "deployed" not in result.stdout

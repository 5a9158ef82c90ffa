"""The compute stacks: one per compute region, Batch capacity and workers scoped to the main region."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match
from infra_templates import (
    architecture_mismatches,
    as_list,
    flat,
    machine_image_problems,
    resources,
    role_statements,
)

REGIONS = ["us-east-1", "us-west-2", "eu-west-1"]


def test_one_compute_stack_per_compute_region(synth):
    assert set(synth.templates) == {synth.control_name, *(synth.compute_name(r) for r in REGIONS)}
    assert synth.compute_name("us-west-2") == "HyperBatch-Compute-us-west-2"
    assert synth.control_name == "HyperBatch-Control"


@pytest.mark.parametrize("region", REGIONS)
def test_spot_compute_environment_follows_the_cluster(computes, synth, region):
    cluster = synth.config.cluster("default")
    computes[region].has_resource_properties(
        "AWS::Batch::ComputeEnvironment",
        {
            "Type": "managed",
            "ComputeResources": {
                "Type": "SPOT",
                "AllocationStrategy": cluster.allocation_strategy,
                "BidPercentage": cluster.spot_bid_percentage,
                "InstanceTypes": cluster.instance_types,
                "MaxvCpus": cluster.max_vcpus,
                "MinvCpus": cluster.min_vcpus,
                "InstanceRole": {"Fn::GetAtt": [Match.any_value(), "Arn"]},
                "Ec2Configuration": [{"ImageType": "ECS_AL2023"}],
            },
        },
    )


@pytest.mark.parametrize("region", REGIONS)
def test_job_queue_per_cluster_with_the_deterministic_name(computes, region):
    computes[region].has_resource_properties("AWS::Batch::JobQueue", {"JobQueueName": "HyperBatch-default"})


@pytest.mark.parametrize("region", REGIONS)
def test_job_definition_carries_the_definition_and_worker_environment(synth, region):
    template = synth.templates[synth.compute_name(region)]
    (job_definition,) = resources(template, "AWS::Batch::JobDefinition").values()
    props = job_definition["Properties"]
    definition = synth.config.definition("standard")
    assert props["JobDefinitionName"] == "HyperBatch-standard-ec2-x86_64"
    assert props["PlatformCapabilities"] == ["EC2"]
    assert props["RetryStrategy"]["Attempts"] == definition.retry_attempts
    assert props["Timeout"]["AttemptDurationSeconds"] == definition.timeout_seconds
    container = props["ContainerProperties"]
    requirements = {r["Type"]: r["Value"] for r in container["ResourceRequirements"]}
    assert requirements == {"VCPU": "1", "MEMORY": str(definition.memory_mib)}
    env = {e["Name"]: flat(e["Value"]) for e in container["Environment"]}
    assert env["HYPER_EXAMPLE"] == "1"
    assert env["HYPER_MAIN_REGION"] == "us-east-1"
    assert env["HYPER_REGION"] == region
    assert env["HYPER_DEFINITION"] == "standard"
    assert env["HYPER_TABLE"] == "HyperBatch-jobs"
    assert env["HYPER_LOG_GROUP_PREFIX"] == "/hyperbatch/HyperBatch/jobs/"
    # Queue URLs point at the main region whichever region the worker is in.
    assert "https://sqs.us-east-1.${AWS::URLSuffix}/${AWS::AccountId}/HyperBatch-batch" in env["HYPER_QUEUE_URLS"]
    assert container["JobRoleArn"] and container["ExecutionRoleArn"]


def test_worker_image_is_an_asset_built_on_deploy_for_the_cluster_architecture(synth):
    assets = json.loads((synth.outdir / f"{synth.compute_name('us-west-2')}.assets.json").read_text())
    (image,) = assets["dockerImages"].values()
    assert image["source"]["dockerFile"] == "worker_image/Dockerfile"
    assert image["source"]["platform"] == "linux/amd64"  # c6i/m6i/c5/m5 are x86_64
    staged = synth.outdir / image["source"]["directory"]
    assert {p.name for p in staged.iterdir()} == {"hyperbatch", "worker_image", "requirements.txt"}


def test_ec2_compute_environments_run_amazon_linux_2023(synth):
    assert machine_image_problems(synth) == []


def test_every_compute_environment_runs_images_built_for_its_instances(synth):
    assert architecture_mismatches(synth) == []


@pytest.mark.parametrize("region", REGIONS)
def test_worker_role_reaches_only_the_main_region_control_plane(synth, region):
    found = role_statements(synth.templates[synth.compute_name(region)], "WorkersJobRole")
    by_service: dict[str, set[str]] = {}
    for statement in found:
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            service = action.split(":")[0]
            by_service.setdefault(service, set()).update(flat(r) for r in as_list(statement["Resource"]))
    assert set(by_service) == {"sqs", "dynamodb", "logs", "s3"}
    account = "${AWS::AccountId}"
    assert by_service["sqs"] == {
        f"arn:${{AWS::Partition}}:sqs:us-east-1:{account}:HyperBatch-batch",
        f"arn:${{AWS::Partition}}:sqs:us-east-1:{account}:HyperBatch-west",
    }
    table = f"arn:${{AWS::Partition}}:dynamodb:us-east-1:{account}:table/HyperBatch-jobs"
    indexes = ("by_owner", "by_queue_state", "by_parent")
    assert by_service["dynamodb"] == {table} | {f"{table}/index/{index}" for index in indexes}
    assert all(":logs:us-east-1:" in r and "/hyperbatch/HyperBatch/jobs/" in r for r in by_service["logs"])
    # The files bucket: scripts and uploads read, what runs leave written under the job prefix, uploads
    # listed (a directory staged in); nothing else of S3, no other bucket (no staging_locations here).
    bucket = f"arn:${{AWS::Partition}}:s3:::hyperbatch-files-{account}-us-east-1"
    s3_grants = {(a, flat(r)) for s in found for a in as_list(s["Action"]) if a.startswith("s3:")
                 for r in as_list(s["Resource"])}
    assert s3_grants == {("s3:GetObject", f"{bucket}/scripts/*"), ("s3:GetObject", f"{bucket}/uploads/*"),
                         ("s3:PutObject", f"{bucket}/jobs/*"), ("s3:AbortMultipartUpload", f"{bucket}/jobs/*"),
                         ("s3:ListBucket", bucket)}
    (listing,) = [s for s in found if "s3:ListBucket" in as_list(s["Action"])]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["uploads/*"]}}
    actions = {a for s in found for a in as_list(s["Action"])}
    assert actions == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:SendMessage",
        "sqs:GetQueueAttributes",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "s3:GetObject",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:ListBucket",
    }


def test_example_regions_are_public_with_no_nat_gateway_or_interface_endpoint_and_no_way_in(synth, computes):
    # The example costs nothing while no worker runs: workers get public IPs (outbound to the main
    # region's SQS and DynamoDB), and nothing may reach them from outside.
    for region in REGIONS:
        template = synth.templates[synth.compute_name(region)]
        computes[region].resource_count_is("AWS::EC2::NatGateway", 0)
        computes[region].resource_count_is("AWS::EC2::VPCEndpoint", 0)
        computes[region].resource_count_is("AWS::EC2::EIP", 0)
        computes[region].resource_count_is("AWS::EC2::SecurityGroupIngress", 0)
        subnets = resources(template, "AWS::EC2::Subnet")
        assert subnets and all(s["Properties"]["MapPublicIpOnLaunch"] for s in subnets.values())
        groups = resources(template, "AWS::EC2::SecurityGroup")
        assert groups and not [k for k, g in groups.items() if g["Properties"].get("SecurityGroupIngress")]
        computes[region].has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "REJECT"})
        (environment,) = resources(template, "AWS::Batch::ComputeEnvironment").values()
        placed = {s["Ref"] for s in environment["Properties"]["ComputeResources"]["Subnets"]}
        assert placed == set(subnets)

"""A second configuration for the code paths the example does not take:
Fargate and Fargate Spot, on-demand EC2 with "optimal" types, a LAUNCH_TEMPLATE
fleet, an imported VPC, a GPU definition, monitoring switched off, another
deployment name. One more synthesis, nag and cfn-lint included.
"""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match
from infra_synthesis import read_synthesis, shared_dir, synthesize
from infra_templates import (
    architecture_mismatches,
    as_list,
    flat,
    image_platforms,
    lint_errors,
    machine_image_problems,
    metadata_problems,
    resources,
    role_statements,
)

from stacks import naming

VARIANT = {
    "settings": {
        "stack_name": "Lab",
        "main_region": "us-west-2",
        "admins": ["arn:aws:iam::123456789012:role/Admin"],
        "monitoring": {"dashboard": False, "alarms": False},
        "scaler_interval_minutes": 2,
        "deletion_protection": False,
        "staging_locations": ["s3://lab-datasets/inputs/", "s3://lab-results/"],
        "notifications": {"ses_sender": "hpc@lab.example.org", "webhook_secret_parameter": "/lab/webhook-secret",
                          "event_bus": False},
    },
    "regions": [
        {"name": "us-west-2", "vpc": {"cidr": "10.1.0.0/16", "subnet_type": "private", "max_azs": 3}},
        {"name": "eu-west-1", "vpc": {"vpc_id": "vpc-0abc1234", "subnet_type": "private"}},
        {"name": "us-east-1", "compute": False},
    ],
    "clusters": [
        {"name": "serverless", "type": "FARGATE", "max_vcpus": 64, "regions": ["us-west-2"]},
        {"name": "cheap", "type": "FARGATE_SPOT", "max_vcpus": 32},
        {
            "name": "ondemand",
            "type": "EC2",
            "instance_types": ["optimal"],
            "allocation_strategy": "BEST_FIT_PROGRESSIVE",
        },
        {"name": "gpu", "type": "EC2", "instance_types": ["g5", "g6"], "regions": ["us-west-2"]},
        {"name": "graviton", "type": "SPOT", "instance_types": ["c7g", "m7g"], "regions": ["eu-west-1"]},
        {"name": "fleet", "type": "LAUNCH_TEMPLATE", "instance_types": ["c6g.large", "m6g.large"], "max_vcpus": 8},
    ],
    "queues": [
        {"name": "quick", "cluster": "serverless", "definition": "small"},
        {"name": "bulk", "cluster": "fleet", "definition": "small"},
        {"name": "render", "cluster": "gpu", "definition": "gpu", "definitions": ["small"]},
    ],
    "definitions": [
        {"name": "small", "vcpus": 0.5, "memory_mib": 1024},
        {"name": "gpu", "vcpus": 4, "memory_mib": 16384, "gpus": 1},
    ],
    "images": [{"name": "worker"}],
}




def subnet(index: int, zone: str) -> dict:
    return {
        "subnetId": f"subnet-0{index:07x}",
        "cidr": f"10.9.{index * 16}.0/20",
        "availabilityZone": zone,
        "routeTableId": f"rtb-0{index:07x}",
    }


# What `cdk synth` with credentials would cache in cdk.context.json for the imported VPC.
VPC_LOOKUP = {
    "vpc-provider:account=123456789012:filter.vpc-id=vpc-0abc1234:region=eu-west-1:returnAsymmetricSubnets=true": {
        "vpcId": "vpc-0abc1234",
        "vpcCidrBlock": "10.9.0.0/16",
        "availabilityZones": [],
        "subnetGroups": [
            {"name": "Public", "type": "Public", "subnets": [subnet(1, "eu-west-1a"), subnet(2, "eu-west-1b")]},
            {"name": "Private", "type": "Private", "subnets": [subnet(3, "eu-west-1a"), subnet(4, "eu-west-1b")]},
        ],
    }
}


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    with shared_dir(tmp_path_factory, "variant") as (root, fresh):
        if fresh:
            (root / "configurations").mkdir()
            for kind, data in VARIANT.items():
                (root / "configurations" / f"{kind}.json").write_text(json.dumps(data))
            synthesize(root / "configurations", root / "cdk-out", context=VPC_LOOKUP)
    return read_synthesis(root / "configurations", root / "cdk-out")


def test_stacks_follow_the_deployment_name_and_compute_regions(variant):
    assert set(variant.templates) == {"Lab-Control", "Lab-Compute-us-west-2", "Lab-Compute-eu-west-1"}


def test_variant_passes_nag_and_cfn_lint(variant):
    assert variant.synth_error is None, variant.synth_error[:3000]
    for name, template in variant.templates.items():
        region = "eu-west-1" if name.endswith("eu-west-1") else "us-west-2"
        assert lint_errors(template, region) == [], name


def test_workers_reach_the_staging_locations_the_settings_allow_and_no_other_bucket(variant):
    found = role_statements(variant.templates["Lab-Compute-eu-west-1"], "WorkersJobRole")
    s3 = {(a, flat(r), json.dumps(s.get("Condition"), sort_keys=True)) for s in found for a in as_list(s["Action"])
          if a.startswith("s3:") for r in as_list(s["Resource"])}
    like = '{"StringLike": {"s3:prefix": [%s]}}'
    files = "arn:${AWS::Partition}:s3:::lab-files-${AWS::AccountId}-us-west-2"
    assert s3 == {
        ("s3:GetObject", f"{files}/scripts/*", "null"),
        ("s3:GetObject", f"{files}/uploads/*", "null"),
        ("s3:PutObject", f"{files}/jobs/*", "null"),
        ("s3:AbortMultipartUpload", f"{files}/jobs/*", "null"),
        ("s3:ListBucket", files, like % '"uploads/*"'),
        ("s3:GetObject", "arn:${AWS::Partition}:s3:::lab-datasets/inputs/*", "null"),
        ("s3:PutObject", "arn:${AWS::Partition}:s3:::lab-datasets/inputs/*", "null"),
        ("s3:AbortMultipartUpload", "arn:${AWS::Partition}:s3:::lab-datasets/inputs/*", "null"),
        ("s3:ListBucket", "arn:${AWS::Partition}:s3:::lab-datasets", like % '"inputs/*"'),
        ("s3:GetObject", "arn:${AWS::Partition}:s3:::lab-results/*", "null"),
        ("s3:PutObject", "arn:${AWS::Partition}:s3:::lab-results/*", "null"),
        ("s3:AbortMultipartUpload", "arn:${AWS::Partition}:s3:::lab-results/*", "null"),
        ("s3:ListBucket", "arn:${AWS::Partition}:s3:::lab-results", like % '"*"'),
    }


def test_fargate_environments_and_job_definitions(variant):
    west = variant.template("Lab-Compute-us-west-2")
    for kind, vcpus in (("FARGATE", 64), ("FARGATE_SPOT", 32)):
        west.has_resource_properties(
            "AWS::Batch::ComputeEnvironment", {"ComputeResources": {"Type": kind, "MaxvCpus": vcpus}}
        )
    # "serverless" is restricted to us-west-2.
    eu_types = {
        c["Properties"]["ComputeResources"]["Type"]
        for c in resources(variant.templates["Lab-Compute-eu-west-1"], "AWS::Batch::ComputeEnvironment").values()
    }
    assert eu_types == {"FARGATE_SPOT", "EC2", "SPOT"}
    names = {
        d["Properties"]["JobDefinitionName"]: d["Properties"]
        for d in resources(variant.templates["Lab-Compute-us-west-2"], "AWS::Batch::JobDefinition").values()
    }
    # GPU definitions have no Fargate variant: Fargate has no GPUs.
    assert set(names) == {"Lab-small-fargate-x86_64", "Lab-small-ec2-x86_64", "Lab-gpu-ec2-x86_64"}
    assert names["Lab-small-fargate-x86_64"]["PlatformCapabilities"] == ["FARGATE"]
    # Private subnets reach ECR through the NAT gateway, so no public IP.
    network = names["Lab-small-fargate-x86_64"]["ContainerProperties"].get("NetworkConfiguration", {})
    assert network.get("AssignPublicIp", "DISABLED") == "DISABLED"
    gpu = {r["Type"]: r["Value"] for r in names["Lab-gpu-ec2-x86_64"]["ContainerProperties"]["ResourceRequirements"]}
    assert gpu["GPU"] == "1" and gpu["VCPU"] == "4"


def test_graviton_clusters_get_arm64_images_and_x86_clusters_amd64_ones(variant):
    assert architecture_mismatches(variant) == []
    # eu-west-1 has both: the Graviton cluster's arm64 image and the x86_64 one of the others.
    assert sorted(image_platforms(variant, "eu-west-1").values()) == ["linux/amd64", "linux/arm64"]
    assert sorted(image_platforms(variant, "us-west-2").values()) == ["linux/amd64"]


def test_gpu_cluster_runs_the_nvidia_variant_of_amazon_linux_2023_and_the_others_the_plain_one(variant):
    assert machine_image_problems(variant) == []
    variant.template("Lab-Compute-us-west-2").has_resource_properties(
        "AWS::Batch::ComputeEnvironment",
        {"ComputeResources": {"InstanceTypes": ["g5", "g6"],
                              "Ec2Configuration": [{"ImageType": "ECS_AL2023"}, {"ImageType": "ECS_AL2023_NVIDIA"}]}},
    )


def test_on_demand_cluster_lets_batch_choose_instances(variant):
    variant.template("Lab-Compute-us-west-2").has_resource_properties(
        "AWS::Batch::ComputeEnvironment",
        {
            "ComputeResources": {
                "Type": "EC2",
                "InstanceTypes": ["optimal"],
                "AllocationStrategy": "BEST_FIT_PROGRESSIVE",
            }
        },
    )


def test_launch_template_fleet_starts_empty_and_runs_the_worker_directly(variant):
    template = variant.templates["Lab-Compute-us-west-2"]
    (group,) = resources(template, "AWS::AutoScaling::AutoScalingGroup").values()
    assert group["Properties"]["AutoScalingGroupName"] == "Lab-fleet"
    assert group["Properties"]["MinSize"] == "0" and "DesiredCapacity" not in group["Properties"]
    overrides = group["Properties"]["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]
    assert [o["InstanceType"] for o in overrides] == ["c6g.large", "m6g.large"]
    (launch_template,) = [t for t in resources(template, "AWS::EC2::LaunchTemplate").values()
                          if "UserData" in t["Properties"]["LaunchTemplateData"]]
    data = launch_template["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"] == {"HttpTokens": "required", "HttpPutResponseHopLimit": 1}
    user_data = flat(data["UserData"]["Fn::Base64"])
    assert "worker_image/start.sh" in user_data
    assert "terminate-instance-in-auto-scaling-group" in user_data
    assert "\nHYPER_MAIN_REGION=us-west-2\n" in user_data
    # The worker of queue "bulk" (the fleet's one queue) with its definition, on AWS: not local mode.
    for line in ("HYPER_BACKEND=aws", "HYPER_QUEUE=bulk", "HYPER_DEFINITION=small", "HYPER_REGION=us-west-2"):
        assert f"\n{line}\n" in user_data, line
    # Jobs run on the instance itself here, as their own user, which a firewall rule keeps from the
    # instance metadata (the hop limit does not apply on the instance); both before the worker starts.
    assert "\nHYPER_JOB_USER=hyperjob\n" in user_data
    firewall = user_data.index("iptables -A OUTPUT -d 169.254.169.254 -m owner --uid-owner hyperjob -j REJECT")
    assert user_data.index("useradd --create-home --shell /bin/bash hyperjob") < firewall
    assert firewall < user_data.index("worker_image/start.sh")
    granted = {a for s in role_statements(template, "FleetfleetInstanceRole") for a in as_list(s["Action"])}
    assert {"sqs:ReceiveMessage", "dynamodb:UpdateItem", "autoscaling:TerminateInstanceInAutoScalingGroup"} <= granted


def test_instances_answer_metadata_only_with_a_token_and_only_on_the_instance(variant):
    assert metadata_problems(variant) == []


def test_scaler_may_size_the_fleet_by_name(variant):
    granted = {}
    for statement in role_statements(variant.templates["Lab-Control"], "FunctionsScalerRole"):
        for action in as_list(statement["Action"]):
            granted.setdefault(action, set()).update(flat(r) for r in as_list(statement["Resource"]))
    assert any(r.endswith("autoScalingGroupName/Lab-fleet") for r in granted["autoscaling:SetDesiredCapacity"])
    env = next(
        f["Properties"]["Environment"]["Variables"]
        for f in resources(variant.templates["Lab-Control"], "AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "lambdas.scaler.handler"
    )
    compute = json.loads(env["HYPER_COMPUTE"])
    assert compute["us-west-2"]["fleet"] == {"type": "LAUNCH_TEMPLATE", "auto_scaling_group": "Lab-fleet"}
    assert compute["eu-west-1"]["ondemand"]["job_definitions"] == {
        "small": "Lab-small-ec2-x86_64",
        "gpu": "Lab-gpu-ec2-x86_64",
    }
    assert json.loads(env["HYPER_ADMINS"]) == VARIANT["settings"]["admins"]


def test_notifier_sends_mail_only_from_the_configured_sender_and_reads_only_the_webhook_secret(variant):
    found = role_statements(variant.templates["Lab-Control"], "FunctionsNotifierRole")
    granted = {(a, flat(r), json.dumps(s.get("Condition"), sort_keys=True)) for s in found
               for a in as_list(s["Action"]) if not a.startswith("logs:") for r in as_list(s["Resource"])}
    assert granted == {
        ("ses:SendEmail", "arn:${AWS::Partition}:ses:us-west-2:${AWS::AccountId}:identity/*",
         '{"StringEquals": {"ses:FromAddress": "hpc@lab.example.org"}}'),
        ("ssm:GetParameter", "arn:${AWS::Partition}:ssm:us-west-2:${AWS::AccountId}:parameter/lab/webhook-secret",
         "null"),
    }


def test_without_the_event_bus_feed_no_function_may_list_the_buss_rules(variant):
    for role in ("FunctionsReleaseRole", "FunctionsReconcilerRole"):
        found = role_statements(variant.templates["Lab-Control"], role)
        events = {a for s in found for a in as_list(s["Action"]) if a.startswith("events:")}
        assert events == {"events:PutEvents"}, role  # notices still go out; state changes never do


def test_imported_vpc_creates_no_network_and_places_workers_in_its_private_subnets(variant):
    variant.template("Lab-Compute-eu-west-1").resource_count_is("AWS::EC2::VPC", 0)
    variant.template("Lab-Compute-eu-west-1").has_resource_properties(
        "AWS::Batch::ComputeEnvironment",
        {"ComputeResources": {"Type": "EC2", "Subnets": [subnet(3, "")["subnetId"], subnet(4, "")["subnetId"]]}},
    )
    variant.template("Lab-Compute-us-west-2").resource_count_is("AWS::EC2::VPC", 1)
    variant.template("Lab-Compute-us-west-2").resource_count_is("AWS::EC2::NatGateway", 1)


def test_monitoring_switched_off_builds_no_dashboard_or_alarms(variant):
    control = variant.template("Lab-Control")
    control.resource_count_is("AWS::CloudWatch::Dashboard", 0)
    control.resource_count_is("AWS::CloudWatch::Alarm", 0)
    control.resource_count_is("AWS::SNS::Topic", 0)
    control.has_resource_properties("AWS::Events::Rule", {"ScheduleExpression": "rate(2 minutes)"})


def test_unprotected_deployment_can_be_destroyed(variant):
    control = variant.template("Lab-Control")
    control.has_resource_properties(
        "AWS::DynamoDB::Table", {"TableName": naming.table("Lab"), "DeletionProtectionEnabled": Match.absent()}
    )
    control.has_resource("AWS::DynamoDB::Table", {"DeletionPolicy": "Delete"})
    control.resource_count_is("Custom::AWS", 0)  # nothing switches its deletion protection on
    retained = [k for k, r in variant.templates["Lab-Control"]["Resources"].items()
                if r.get("DeletionPolicy", "Delete") != "Delete"]
    assert retained == []


def test_a_queue_of_two_sizes_has_a_work_queue_and_a_dead_letter_queue_for_each(variant):
    control = variant.templates["Lab-Control"]
    names = {q["Properties"].get("QueueName") for q in resources(control, "AWS::SQS::Queue").values()}
    assert {"Lab-render", "Lab-render-dlq", "Lab-render--small", "Lab-render--small-dlq"} <= names
    env = {k: v for r in resources(control, "AWS::Lambda::Function").values()
           for k, v in (r["Properties"].get("Environment") or {}).get("Variables", {}).items()}
    urls = json.dumps(env.get("HYPER_QUEUE_URLS"))
    assert "Lab-render--small" in urls and "Lab-render" in urls

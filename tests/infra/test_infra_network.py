"""Worker networks the example does not build (private and isolated subnets), each in a small
stack of its own: NAT gateway, VPC endpoints and where they go, cdk-nag and cfn-lint included."""

from __future__ import annotations

import json

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from infra_synthesis import EXAMPLE
from infra_templates import flat, lint_errors, resources

from hyperbatch.config import Vpc, load
from stacks import naming
from stacks.app import cdk_json_context
from stacks.network import WorkerNetwork

REGION = "us-east-1"
ACCOUNT = "111122223333"  # a real-looking account: the synth looks endpoint zones up
ZONES = ["us-east-1a", "us-east-1b"]


def availability_zone_context(account: str) -> dict:
    return {f"availability-zones:account={account}:region={REGION}": ["us-east-1a", "us-east-1b", "us-east-1c"]}


def endpoint_zone_context(account: str, zones_of: dict[str, list[str]]) -> dict:
    """What `cdk synth` with credentials caches in cdk.context.json for the endpoints' zones."""
    return {
        f"endpoint-service-availability-zones:account={account}:region={REGION}:serviceName=com.amazonaws.{REGION}.{s}":
            zones
        for s, zones in zones_of.items()
    }


def service(endpoint: dict) -> str:
    """"sqs" of com.amazonaws.<region>.sqs (the region literal or ${AWS::Region})."""
    return flat(endpoint["Properties"]["ServiceName"]).split(".", 3)[-1]


ENDPOINT_SERVICES = ("sqs", "ecr.api", "ecr.dkr", "logs", "sts", "ecs", "ecs-agent", "ecs-telemetry")


def network_template(tmp_path, subnet_type: str, account: str, context: dict) -> tuple[dict, dict]:
    """(template, manifest) of a stack holding only a worker network, checked by cdk-nag."""
    config = load(EXAMPLE)
    region = config.region(REGION).model_copy(update={"vpc": Vpc(cidr="10.50.0.0/16", subnet_type=subnet_type)})
    app = cdk.App(outdir=str(tmp_path), context=cdk_json_context() | availability_zone_context(account) | context)
    stack = cdk.Stack(app, "Network", env=cdk.Environment(account=account, region=REGION))
    WorkerNetwork(stack, "Network", config=config, region=region)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()  # raises on an unacknowledged cdk-nag finding
    template = json.loads((tmp_path / "Network.template.json").read_text())
    assert lint_errors(template, REGION) == []
    return template, json.loads((tmp_path / "manifest.json").read_text())


def test_private_subnets_go_out_through_one_nat_gateway(tmp_path):
    template, _ = network_template(tmp_path, "private", naming.PLACEHOLDER_ACCOUNT, {})
    assert len(resources(template, "AWS::EC2::NatGateway")) == 1
    assert len(resources(template, "AWS::EC2::VPCEndpoint")) == 0
    subnets = resources(template, "AWS::EC2::Subnet").values()
    private = [s for s in subnets if not s["Properties"]["MapPublicIpOnLaunch"]]
    assert len(private) == 2


def test_isolated_subnets_reach_aws_services_through_endpoints_only(tmp_path):
    template, _ = network_template(tmp_path, "isolated", naming.PLACEHOLDER_ACCOUNT, {})
    assert not resources(template, "AWS::EC2::NatGateway") and not resources(template, "AWS::EC2::InternetGateway")
    endpoints = resources(template, "AWS::EC2::VPCEndpoint").values()
    kinds = {service(e): e["Properties"].get("VpcEndpointType")
             for e in endpoints}
    assert kinds == {"s3": "Gateway", "dynamodb": "Gateway"} | dict.fromkeys(ENDPOINT_SERVICES, "Interface")
    # Without credentials (placeholder account) nothing is looked up: every endpoint in every zone.
    subnets = set(resources(template, "AWS::EC2::Subnet"))
    for endpoint in endpoints:
        if endpoint["Properties"].get("VpcEndpointType") == "Interface":
            assert {s["Ref"] for s in endpoint["Properties"]["SubnetIds"]} == subnets
    groups = resources(template, "AWS::EC2::SecurityGroup").values()
    assert [rule for g in groups for rule in g["Properties"].get("SecurityGroupIngress", [])] == [
        {"CidrIp": "10.50.0.0/16", "Description": "workers in this VPC", "FromPort": 443, "IpProtocol": "tcp",
         "ToPort": 443}
    ]


def test_interface_endpoints_go_only_to_the_zones_that_offer_their_service(tmp_path):
    zones = dict.fromkeys(ENDPOINT_SERVICES, ZONES) | {"ecs-telemetry": ["us-east-1b", "us-east-1c"]}
    template, manifest = network_template(tmp_path, "isolated", ACCOUNT, endpoint_zone_context(ACCOUNT, zones))
    assert not manifest.get("missing"), "every lookup is answered from the context"
    zone_of = {logical_id: s["Properties"]["AvailabilityZone"] for logical_id, s in resources(template, "AWS::EC2::Subnet").items()}
    assert sorted(zone_of.values()) == ZONES
    placed = {
        service(e): sorted(zone_of[s["Ref"]] for s in e["Properties"]["SubnetIds"])
        for e in resources(template, "AWS::EC2::VPCEndpoint").values()
        if e["Properties"].get("VpcEndpointType") == "Interface"
    }
    assert placed == dict.fromkeys(ENDPOINT_SERVICES, ZONES) | {"ecs-telemetry": ["us-east-1b"]}

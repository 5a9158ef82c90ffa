"""A compute region's network: a new VPC shaped by `subnet_type`, or an existing one.

- public:   public subnets only; workers get public IPs, no NAT cost.
- private:  private subnets behind one NAT gateway (one, not one per AZ: workers
            are disposable, a NAT outage only delays them).
- isolated: no internet at all; VPC endpoints reach the region's AWS services.
"""

from __future__ import annotations

from aws_cdk import Annotations
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from hyperbatch.config import Configuration, Region

from .storage import log_group

SUBNET_TYPES = {
    "public": ec2.SubnetType.PUBLIC,
    "private": ec2.SubnetType.PRIVATE_WITH_EGRESS,
    "isolated": ec2.SubnetType.PRIVATE_ISOLATED,
}

# What a worker in an isolated subnet talks to. The ECS endpoints serve the
# container agent on Batch EC2 instances; Fargate needs only ECR, S3 and Logs.
INTERFACE_ENDPOINTS = {
    "Sqs": ec2.InterfaceVpcEndpointAwsService.SQS,
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "Ecs": ec2.InterfaceVpcEndpointAwsService.ECS,
    "EcsAgent": ec2.InterfaceVpcEndpointAwsService.ECS_AGENT,
    "EcsTelemetry": ec2.InterfaceVpcEndpointAwsService.ECS_TELEMETRY,
}
GATEWAY_ENDPOINTS = {
    "S3": ec2.GatewayVpcEndpointAwsService.S3,
    "DynamoDb": ec2.GatewayVpcEndpointAwsService.DYNAMODB,
}


class WorkerNetwork(Construct):
    """`vpc` and `subnets` (the selection workers are placed in)."""

    def __init__(self, scope: Construct, id: str, *, config: Configuration, region: Region) -> None:
        super().__init__(scope, id)
        spec = region.vpc
        self.subnets = ec2.SubnetSelection(subnet_type=SUBNET_TYPES[spec.subnet_type])
        self.public = spec.subnet_type == "public"
        if spec.vpc_id:
            # Resolved by `cdk synth/deploy` with credentials and cached in cdk.context.json;
            # see docs/deployment.md. Its endpoints and flow logs are the VPC owner's business.
            self.vpc = ec2.Vpc.from_lookup(self, "Vpc", vpc_id=spec.vpc_id)
            return
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(spec.cidr),
            max_azs=spec.max_azs,
            nat_gateways=1 if spec.subnet_type == "private" else 0,
            subnet_configuration=_subnets(spec.subnet_type),
        )
        # Rejected traffic only: enough to investigate blocked workers, cheap at batch volumes.
        self.vpc.add_flow_log(
            "FlowLogs",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(log_group(self, "FlowLogGroup", config)),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        if spec.subnet_type == "isolated":
            self._endpoints()
            if region.name != config.settings.main_region:
                Annotations.of(self).add_warning_v2(
                    "hyperbatch:isolated-hub",
                    f"{region.name} is a hub region with isolated subnets: its VPC endpoints reach only "
                    f"{region.name}'s services, but workers must reach SQS, DynamoDB and CloudWatch Logs in "
                    f"{config.settings.main_region}. Use subnet_type 'private' (or add cross-region routing).",
                )

    def _endpoints(self) -> None:
        for name, service in GATEWAY_ENDPOINTS.items():
            self.vpc.add_gateway_endpoint(name, service=service, subnets=[self.subnets])
        for name, service in INTERFACE_ENDPOINTS.items():
            self.vpc.add_interface_endpoint(name, service=service, subnets=self.subnets)


def _subnets(subnet_type: str) -> list[ec2.SubnetConfiguration]:
    public = ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC)
    if subnet_type == "public":
        return [public]
    if subnet_type == "private":
        return [public, ec2.SubnetConfiguration(name="workers", subnet_type=SUBNET_TYPES["private"])]
    return [ec2.SubnetConfiguration(name="workers", subnet_type=SUBNET_TYPES["isolated"])]

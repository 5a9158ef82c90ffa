"""A compute region's network: a new VPC shaped by `subnet_type`, or an existing one.

- public:   public subnets only; workers get public IPs and reach the main region's
            services over the internet, behind security groups with no inbound
            rules. Nothing here costs money while no worker runs (the default).
- private:  private subnets behind one NAT gateway (one, not one per AZ: workers
            are disposable, a NAT outage only delays them). About $33 a month.
- isolated: no internet at all; VPC endpoints reach the region's AWS services.
            Each interface endpoint costs about $7.30 a month per availability zone.
"""

from __future__ import annotations

from aws_cdk import Stack, Token
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from hyperbatch.config import Configuration, Region

from stacks.naming import PLACEHOLDER_ACCOUNT
from stacks.retention import log_group

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
        if spec.subnet_type == "isolated":  # main region only: the configuration refuses it elsewhere
            self._endpoints(spec.cidr)

    def _endpoints(self, cidr: str) -> None:
        for name, service in GATEWAY_ENDPOINTS.items():
            self.vpc.add_gateway_endpoint(name, service=service, subnets=[self.subnets])
        # One security group for all interface endpoints: HTTPS from inside the VPC only.
        https_from_vpc = ec2.SecurityGroup(
            self, "Endpoints", vpc=self.vpc, allow_all_outbound=False, description="HTTPS from the VPC to endpoints"
        )
        https_from_vpc.add_ingress_rule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(443), "workers in this VPC")
        # Not every service has an endpoint in every availability zone (and one in a zone that lacks it
        # fails the deploy): with the real account known, each endpoint goes only to the zones its
        # service offers, as `cdk synth` looks them up (cached in cdk.context.json). A synth without
        # credentials (placeholder account) deploys nowhere, so it places them in every zone.
        account = Stack.of(self).account
        lookup = not Token.is_unresolved(account) and account != PLACEHOLDER_ACCOUNT
        for name, service in INTERFACE_ENDPOINTS.items():
            self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=self.subnets,
                security_groups=[https_from_vpc],
                open=False,
                lookup_supported_azs=lookup,
            )


def _subnets(subnet_type: str) -> list[ec2.SubnetConfiguration]:
    public = ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC)
    if subnet_type == "public":
        return [public]
    if subnet_type == "private":
        return [public, ec2.SubnetConfiguration(name="workers", subnet_type=SUBNET_TYPES["private"])]
    return [ec2.SubnetConfiguration(name="workers", subnet_type=SUBNET_TYPES["isolated"])]

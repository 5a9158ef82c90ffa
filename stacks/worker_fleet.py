"""A LAUNCH_TEMPLATE cluster: plain EC2 instances in an Auto Scaling group, no Batch.

Each instance installs the worker from a code asset and runs
worker_image/start.sh directly; when the worker exits (idle timeout) the
instance removes itself from the group, lowering the desired capacity. The
scaler raises the desired capacity to start workers.
"""

from __future__ import annotations

import shlex

from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from hyperbatch.config import ConfigError, Configuration

from . import code_assets, contract, naming
from .compute_plan import ClusterPlan
from .nag import acknowledge, allow
from .network import WorkerNetwork
from .worker_roles import grant_worker

INSTALL_DIR = "/opt/hyperbatch"
CPU_TYPES = {"arm64": ec2.AmazonLinuxCpuType.ARM_64, "x86_64": ec2.AmazonLinuxCpuType.X86_64}


class WorkerFleet(Construct):
    def __init__(
        self, scope: Construct, id: str, *, config: Configuration, region: str, plan: ClusterPlan, network: WorkerNetwork
    ) -> None:
        super().__init__(scope, id)
        cluster = plan.cluster
        instance_types = _instance_types(cluster.name, cluster.instance_types)
        group_arn = naming.arn(
            "autoscaling", region, f"autoScalingGroup:*:autoScalingGroupName/{plan.auto_scaling_group}"
        )

        role = iam.Role(self, "InstanceRole", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"))
        grant_worker(role, config)
        allow(
            role,
            ["autoscaling:TerminateInstanceInAutoScalingGroup"],
            [group_arn],
            wildcard_reason="The '*' is the group's generated id; the group name is fixed.",
        )
        code = s3_assets.Asset(
            self, "WorkerCode", path=str(code_assets.PROJECT_ROOT), exclude=code_assets.only(*code_assets.WORKER_ENTRIES)
        )
        allow(role, ["s3:GetObject"], [code.bucket.arn_for_objects(code.s3_object_key)])

        user_data = ec2.UserData.for_linux()
        archive = user_data.add_s3_download_command(bucket=code.bucket, bucket_key=code.s3_object_key)
        environment = contract.shared_environment(config) | {"HYPER_REGION": region, "HYPER_CLUSTER": cluster.name}
        user_data.add_commands(*_boot_script(archive, environment, region))

        security_group = ec2.SecurityGroup(
            self, "Workers", vpc=network.vpc, allow_all_outbound=True, description="HyperBatch workers: egress only"
        )
        template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            machine_image=ec2.MachineImage.latest_amazon_linux2023(cpu_type=CPU_TYPES[plan.arch]),
            instance_type=instance_types[0],
            role=role,
            user_data=user_data,
            security_group=security_group,
            require_imdsv2=True,
            detailed_monitoring=True,
            associate_public_ip_address=network.public or None,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda", volume=ec2.BlockDeviceVolume.ebs(30, encrypted=True)
                )
            ],
        )
        # No desired capacity: it starts at min (0) and a deploy must not reset what the scaler set.
        self.group = autoscaling.AutoScalingGroup(
            self,
            "Group",
            vpc=network.vpc,
            vpc_subnets=network.subnets,
            auto_scaling_group_name=plan.auto_scaling_group,
            min_capacity=0,
            max_capacity=cluster.max_vcpus,
            mixed_instances_policy=autoscaling.MixedInstancesPolicy(
                launch_template=template,
                launch_template_overrides=[autoscaling.LaunchTemplateOverrides(instance_type=t) for t in instance_types],
            ),
        )
        acknowledge(
            self.group,
            "Workers are disposable and stop themselves when idle; scaling events are visible in the "
            "dashboard's worker counts, so per-event notifications would only be noise.",
            "AwsSolutions-AS3",
        )
        self.role = role


def _instance_types(cluster: str, names: list[str]) -> list[ec2.InstanceType]:
    """A launch template needs sizes (c6g.large), not families or "optimal"."""
    unsized = [n for n in names if "." not in n]
    if unsized:
        raise ConfigError(
            f"clusters.json: entry '{cluster}' field 'instance_types': a LAUNCH_TEMPLATE cluster needs "
            f"instance sizes such as 'c6g.large', not {', '.join(repr(n) for n in unsized)}"
        )
    return [ec2.InstanceType(n) for n in names]


def _boot_script(archive: str, environment: dict[str, str], region: str) -> list[str]:
    exports = [f"export {key}={shlex.quote(value)}" for key, value in sorted(environment.items())]
    return [
        "set -euo pipefail",
        "dnf install -y python3.11 python3.11-pip unzip",
        f"mkdir -p {INSTALL_DIR} && unzip -o {archive} -d {INSTALL_DIR}",
        f"python3.11 -m venv {INSTALL_DIR}/.venv && {INSTALL_DIR}/.venv/bin/pip install {INSTALL_DIR}",
        f"chown -R ec2-user {INSTALL_DIR}",
        *exports,
        f"export PATH={INSTALL_DIR}/.venv/bin:$PATH",
        f"sudo -E -u ec2-user bash {INSTALL_DIR}/worker_image/start.sh || echo 'worker exited with an error'",
        # Idle (or failed): hand the capacity back instead of idling at a cost.
        "TOKEN=$(curl -sX PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')",
        "ID=$(curl -s -H \"X-aws-ec2-metadata-token: $TOKEN\" http://169.254.169.254/latest/meta-data/instance-id)",
        f"aws autoscaling terminate-instance-in-auto-scaling-group --region {region} "
        f"--instance-id \"$ID\" --should-decrement-desired-capacity",
    ]

"""A LAUNCH_TEMPLATE cluster: plain EC2 instances in an Auto Scaling group, no Batch.

Each instance installs the worker from a code asset and runs
worker_image/start.sh directly, as the worker of the one queue that uses the
cluster (its boot script sets HYPER_BACKEND, HYPER_QUEUE and HYPER_DEFINITION,
as a Batch worker's job definition and submit do); when the worker exits (idle timeout) the
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

from stacks import code_assets, contract, naming
from stacks.compute_plan import ClusterPlan
from stacks.nag import acknowledge, allow
from stacks.network import WorkerNetwork
from stacks.worker_roles import grant_worker

INSTALL_DIR = "/opt/hyperbatch"
CPU_TYPES = {"arm64": ec2.AmazonLinuxCpuType.ARM_64, "x86_64": ec2.AmazonLinuxCpuType.X86_64}
ROOT_VOLUME = ec2.BlockDevice(device_name="/dev/xvda", volume=ec2.BlockDeviceVolume.ebs(30, encrypted=True))


class WorkerFleet(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: Configuration,
        region: str,
        plan: ClusterPlan,
        network: WorkerNetwork,
    ) -> None:
        super().__init__(scope, id)
        cluster = plan.cluster
        instance_types = _instance_types(cluster.name, cluster.instance_types)
        group_arn = naming.auto_scaling_group_arn(region, plan.auto_scaling_group)

        role = iam.Role(self, "InstanceRole", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"))
        grant_worker(role, config)
        allow(
            role,
            ["autoscaling:TerminateInstanceInAutoScalingGroup"],
            [group_arn],
            wildcard_reason="The '*' is the group's generated id; the group name is fixed.",
        )
        code = s3_assets.Asset(
            self,
            "WorkerCode",
            path=str(code_assets.PROJECT_ROOT),
            exclude=code_assets.only(*code_assets.WORKER_ENTRIES),
        )
        allow(role, ["s3:GetObject"], [code.bucket.arn_for_objects(code.s3_object_key)])

        user_data = ec2.UserData.for_linux()
        user_data.add_commands(*_release_on_exit(region))
        archive = user_data.add_s3_download_command(bucket=code.bucket, bucket_key=code.s3_object_key)
        environment = fleet_environment(config, region, cluster.name)
        user_data.add_commands(*_job_user(), *_install_and_run(archive, environment))

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
            http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
            http_put_response_hop_limit=contract.METADATA_HOP_LIMIT,
            detailed_monitoring=True,
            associate_public_ip_address=network.public or None,
            block_devices=[ROOT_VOLUME],
        )
        # No desired capacity: it starts at min (0) and a deploy must not reset what the scaler set.
        # The maximum counts instances; max_vcpus bounds it since every instance has at least one vCPU.
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
                launch_template_overrides=[
                    autoscaling.LaunchTemplateOverrides(instance_type=instance_type) for instance_type in instance_types
                ],
            ),
        )
        acknowledge(
            self.group,
            "Workers are disposable and stop themselves when idle; scaling events are visible in the "
            "dashboard's worker counts, so per-event notifications would only be noise.",
            "AwsSolutions-AS3",
        )
        acknowledge(
            self.group,
            "The root volume is encrypted in the launch template (block_devices above); the rule cannot "
            "follow the group's reference to the template and reports an error instead.",
            "AwsSolutions-EC26",
        )
        self.role = role


def fleet_environment(config: Configuration, region: str, cluster: str) -> dict[str, str]:
    """What a fleet instance's worker needs, as a Batch worker gets it from its job definition and submit:
    the worker environment of the queue's definition, HYPER_BACKEND=aws and HYPER_QUEUE. The one queue
    that may use a LAUNCH_TEMPLATE cluster (hyperbatch.config) names them; with none yet, the group
    is never scaled up and its boot script names no queue."""
    queues = [q for q in config.queues if q.cluster == cluster]
    shared = {"HYPER_CLUSTER": cluster, "HYPER_JOB_USER": contract.JOB_USER, "HYPER_BACKEND": "aws"}
    if not queues:
        return contract.shared_environment(config) | {"HYPER_REGION": region, **shared}
    queue = queues[0]
    return contract.worker_environment(config, region, queue.definition) | shared | {"HYPER_QUEUE": queue.name}


def _instance_types(cluster: str, names: list[str]) -> list[ec2.InstanceType]:
    """A launch template needs sizes (c6g.large), not families or "optimal"."""
    unsized = [n for n in names if "." not in n]
    if unsized:
        raise ConfigError(
            f"clusters.json: entry '{cluster}' field 'instance_types': a LAUNCH_TEMPLATE cluster needs "
            f"instance sizes such as 'c6g.large', not {', '.join(repr(n) for n in unsized)}"
        )
    return [ec2.InstanceType(n) for n in names]


def _release_on_exit(region: str) -> list[str]:
    """First lines of the boot script: whatever happens next (a failed install included),
    the instance leaves its group on exit, so a broken instance never idles at a cost."""
    return [
        "set -euo pipefail",
        "release_capacity() {",
        "  TOKEN=$(curl -sX PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')",
        '  ID=$(curl -s -H "X-aws-ec2-metadata-token: $TOKEN" http://169.254.169.254/latest/meta-data/instance-id)',
        f'  aws autoscaling terminate-instance-in-auto-scaling-group --region {region} --instance-id "$ID" '
        "--should-decrement-desired-capacity",
        "}",
        "trap release_capacity EXIT",
    ]


def _job_user() -> list[str]:
    """The user jobs run as. Jobs run on the instance itself here, where the metadata hop limit does
    not apply, so a firewall rule keeps that user (and only it) from the instance metadata service."""
    user = contract.JOB_USER
    return [
        "dnf install -y iptables-nft",
        f"id {user} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {user}",
        f"iptables -A OUTPUT -d 169.254.169.254 -m owner --uid-owner {user} -j REJECT",
    ]


def _install_and_run(archive: str, environment: dict[str, str]) -> list[str]:
    """Install the worker as the image does (pinned requirements, code on PYTHONPATH) and run
    start.sh as ec2-user (who may run jobs as the job user through sudo) until it exits (idle).
    The environment goes through a file, which sudo's environment scrubbing (PYTHONPATH among
    others) cannot touch."""
    settings = environment | {
        "PYTHONPATH": INSTALL_DIR,
        "PYTHONUNBUFFERED": "1",
        "HYPER_PYTHON": f"{INSTALL_DIR}/.venv/bin/python",
        "HYPERBATCH_HOME": "/home/ec2-user/.hyperbatch",
    }
    env_file = f"{INSTALL_DIR}/worker.env"
    return [
        "dnf install -y python3.11 python3.11-pip unzip",
        f"mkdir -p {INSTALL_DIR} && unzip -o {archive} -d {INSTALL_DIR}",
        f"python3.11 -m venv {INSTALL_DIR}/.venv",
        f"{INSTALL_DIR}/.venv/bin/pip install -r {INSTALL_DIR}/requirements.txt",
        f"cat > {env_file} <<'HYPER_ENV'",
        *(f"{key}={shlex.quote(value)}" for key, value in sorted(settings.items())),
        "HYPER_ENV",
        f"sudo -u ec2-user bash -c 'set -a; . {env_file}; exec bash {INSTALL_DIR}/worker_image/start.sh' "
        '|| echo "worker exited with $?"',
    ]

"""AWS Batch in a compute region: a compute environment and job queue per cluster,
and a job definition per (definition, platform, architecture) the region's clusters need.
"""

from __future__ import annotations

import math

from aws_cdk import Duration, Size
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from constructs import Construct

from hyperbatch.config import Cluster, ConfigError, Configuration

from stacks import code_assets, compute_plan, contract
from stacks.compute_plan import ClusterPlan, JobDefinitionPlan, RegionPlan
from stacks.nag import acknowledge
from stacks.network import WorkerNetwork
from stacks.worker_roles import WorkerRoles

PLATFORMS = {"x86_64": ecr_assets.Platform.LINUX_AMD64, "arm64": ecr_assets.Platform.LINUX_ARM64}
DEFAULT_CLASSES = {
    "default_arm64": batch.DefaultInstanceClass.ARM64,
    "default_x86_64": batch.DefaultInstanceClass.X86_64,
}
INSTANCE_ROLE_POLICY = "arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
INSTANCE_ROLE_REASON = (
    "Batch EC2 instances run the ECS agent, which needs AmazonEC2ContainerServiceforEC2Role; "
    "AWS maintains it as the agent changes. The worker's own permissions are in its job role."
)


class BatchCompute(Construct):
    """`job_queues` and `job_definitions`, by name, for tests and outputs."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: Configuration,
        plan: RegionPlan,
        network: WorkerNetwork,
        roles: WorkerRoles,
    ) -> None:
        super().__init__(scope, id)
        self._config, self._network, self._roles = config, network, roles
        self._images: dict[tuple[str, str], ecs.ContainerImage] = {}
        self.job_queues: dict[str, batch.JobQueue] = {}
        for cluster in plan.clusters:
            if cluster.job_queue:
                self.job_queues[cluster.cluster.name] = batch.JobQueue(
                    self,
                    f"JobQueue-{cluster.cluster.name}",
                    job_queue_name=cluster.job_queue,
                    compute_environments=[
                        batch.OrderedComputeEnvironment(compute_environment=self._environment(cluster), order=1)
                    ],
                )
        self.job_definitions = {jd.name: self._job_definition(plan.region, jd) for jd in plan.job_definitions}

    def _environment(self, plan: ClusterPlan) -> batch.IComputeEnvironment:
        cluster = plan.cluster
        common = dict(
            vpc=self._network.vpc,
            vpc_subnets=self._network.subnets,
            maxv_cpus=cluster.max_vcpus,
            spot=cluster.type in ("SPOT", "FARGATE_SPOT"),
        )
        if plan.platform == "fargate":
            return batch.FargateComputeEnvironment(self, f"Compute-{cluster.name}", **common)
        environment = batch.ManagedEc2EcsComputeEnvironment(
            self,
            f"Compute-{cluster.name}",
            images=_machine_images(cluster),
            launch_template=ec2.LaunchTemplate(
                self,
                f"LaunchTemplate-{cluster.name}",
                require_imdsv2=True,
                http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
                http_put_response_hop_limit=contract.METADATA_HOP_LIMIT,
            ),
            minv_cpus=cluster.min_vcpus,
            allocation_strategy=batch.AllocationStrategy(cluster.allocation_strategy)
            if cluster.allocation_strategy
            else None,
            spot_bid_percentage=cluster.spot_bid_percentage,
            **_instance_selection(cluster),
            **common,
        )
        acknowledge(
            environment,
            INSTANCE_ROLE_REASON,
            f"AwsSolutions-IAM4[Policy::{INSTANCE_ROLE_POLICY}]",
        )
        return environment

    def _job_definition(self, region: str, plan: JobDefinitionPlan) -> batch.EcsJobDefinition:
        definition = self._config.definition(plan.definition)
        container_props = dict(
            image=self._image(definition.image, plan.arch),
            memory=Size.mebibytes(definition.memory_mib),
            environment=contract.worker_environment(self._config, region, definition.name),
            job_role=self._roles.job_role,
            execution_role=self._roles.execution_role,
        )
        if plan.platform == "fargate":
            container = batch.EcsFargateContainerDefinition(
                self,
                f"Container-{plan.name}",
                cpu=definition.vcpus,
                assign_public_ip=self._network.public,  # else a public-subnet task cannot pull its image
                fargate_cpu_architecture=ecs.CpuArchitecture.X86_64,
                **container_props,
            )
        else:
            container = batch.EcsEc2ContainerDefinition(
                self,
                f"Container-{plan.name}",
                cpu=math.ceil(definition.vcpus),  # Batch on EC2 reserves whole vCPUs
                gpu=definition.gpus or None,
                **container_props,
            )
        return batch.EcsJobDefinition(
            self,
            f"JobDefinition-{plan.name}",
            job_definition_name=plan.name,
            container=container,
            retry_attempts=definition.retry_attempts,
            timeout=Duration.seconds(definition.timeout_seconds),
        )

    def _image(self, name: str, arch: str) -> ecs.ContainerImage:
        """The worker image, built once per (image, architecture) on deploy; synth only stages it."""
        if (name, arch) not in self._images:
            image = next(i for i in self._config.images if i.name == name)
            asset = ecr_assets.DockerImageAsset(
                self,
                f"Image-{name}-{arch}",
                # The build context is the repository root, so the Dockerfile can COPY hyperbatch/.
                directory=str(code_assets.PROJECT_ROOT),
                file=f"{image.directory}/Dockerfile",
                exclude=code_assets.only(*code_assets.WORKER_ENTRIES),
                platform=PLATFORMS[arch],
                build_args=dict(image.build_args) or None,
            )
            self._images[(name, arch)] = ecs.ContainerImage.from_docker_image_asset(asset)
        return self._images[(name, arch)]


def _machine_images(cluster: Cluster) -> list[batch.EcsMachineImage]:
    """Amazon Linux 2023 (Batch's default is still Amazon Linux 2 for CloudFormation-made environments);
    with GPU instance types also its NVIDIA variant, which Batch picks for those types."""
    types = [batch.EcsMachineImageType.ECS_AL2023]
    if compute_plan.has_gpus(cluster):
        types.append(batch.EcsMachineImageType.ECS_AL2023_NVIDIA)
    return [batch.EcsMachineImage(image_type=t) for t in types]


def _instance_selection(cluster: Cluster) -> dict:
    """Batch instance choice from the configuration.

    "optimal" lets Batch choose, "default_arm64"/"default_x86_64" are Batch's
    default classes, a family ("c6g") is any size of it, "c6g.large" one type.
    """
    types, classes, defaults = [], [], []
    for name in cluster.instance_types:
        if name == "optimal":
            continue
        if name in DEFAULT_CLASSES:
            defaults.append(DEFAULT_CLASSES[name])
        elif "." in name:
            types.append(ec2.InstanceType(name))
        elif name.upper().replace("-", "_") in ec2.InstanceClass.__members__:
            classes.append(ec2.InstanceClass[name.upper().replace("-", "_")])
        else:
            raise ConfigError(
                f"clusters.json: entry '{cluster.name}' field 'instance_types': '{name}' is not an EC2 "
                "instance family or type (such as 'c6g' or 'c6g.large'), 'optimal' or 'default_arm64'"
            )
    return dict(
        instance_types=types or None,
        instance_classes=classes or None,
        default_instance_classes=defaults or None,
        use_optimal_instance_classes="optimal" in cluster.instance_types,
    )

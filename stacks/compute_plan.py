"""What each compute region runs, decided from the configuration alone (no CDK).

Both sides need the same answer: the compute stack builds these Batch
resources, and the control plane's scaler is told their names and allowed to
submit to them. Keeping the decision here keeps the two in step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hyperbatch.config import Cluster, ConfigError, Configuration

from stacks import naming

FARGATE_TYPES = {"FARGATE", "FARGATE_SPOT"}
BATCH_EC2_TYPES = {"EC2", "SPOT"}

# Graviton families carry a "g" after the generation digit: c6g, m7gd, c7gn, t4g, x2gd, im4gn.
_GRAVITON = re.compile(r"^[a-z]+\d+[a-z]*g[a-z]*(\.|$)")
# NVIDIA GPU families: g4dn, g5, g5g, g6, g6e, gr6, p3, p4d, p5...
_GPU = re.compile(r"^(g|gr|p)\d+[a-z]*(\.|$)")
_ARM_ALIASES = {"default_arm64"}
_X86_ALIASES = {"optimal", "default_x86_64"}


@dataclass(frozen=True)
class JobDefinitionPlan:
    definition: str
    platform: str  # "ec2" or "fargate"
    arch: str  # "x86_64" or "arm64"
    name: str


@dataclass(frozen=True)
class ClusterPlan:
    cluster: Cluster
    platform: str  # "ec2", "fargate" or "launch_template"
    arch: str
    job_queue: str | None  # Batch job queue name; None for a LAUNCH_TEMPLATE cluster
    auto_scaling_group: str | None  # only for a LAUNCH_TEMPLATE cluster


@dataclass(frozen=True)
class RegionPlan:
    region: str
    clusters: list[ClusterPlan]
    job_definitions: list[JobDefinitionPlan]

    def definitions_for(self, cluster: ClusterPlan) -> dict[str, str]:
        """Definition name -> job definition name usable on this cluster's job queue."""
        return {
            jd.definition: jd.name
            for jd in self.job_definitions
            if (jd.platform, jd.arch) == (cluster.platform, cluster.arch)
        }


def architecture(cluster: Cluster) -> str:
    """CPU architecture of a cluster's workers; one cluster runs one image architecture."""
    if cluster.type in FARGATE_TYPES:
        return "x86_64"
    arches = {_type_arch(t) for t in cluster.instance_types}
    if len(arches) > 1:
        raise ConfigError(
            f"clusters.json: entry '{cluster.name}' field 'instance_types': mixes Graviton (arm64) and "
            "x86_64 types; a cluster runs one worker image architecture, so split it into two clusters"
        )
    return arches.pop()


def has_gpus(cluster: Cluster) -> bool:
    """Whether any of a Batch EC2 cluster's instance types carries NVIDIA GPUs (they need the GPU AMI)."""
    return cluster.type in BATCH_EC2_TYPES and any(_GPU.match(t) for t in cluster.instance_types)


def platform(cluster: Cluster) -> str:
    if cluster.type in FARGATE_TYPES:
        return "fargate"
    if cluster.type in BATCH_EC2_TYPES:
        return "ec2"
    return "launch_template"


def clusters_in(config: Configuration, region: str) -> list[Cluster]:
    return [c for c in config.clusters if c.regions is None or region in c.regions]


def plan_region(config: Configuration, region: str) -> RegionPlan:
    deployment = config.settings.stack_name
    clusters = []
    for cluster in clusters_in(config, region):
        kind = platform(cluster)
        clusters.append(
            ClusterPlan(
                cluster=cluster,
                platform=kind,
                arch=architecture(cluster),
                job_queue=None if kind == "launch_template" else naming.batch_job_queue(deployment, cluster.name),
                auto_scaling_group=naming.auto_scaling_group(deployment, cluster.name)
                if kind == "launch_template"
                else None,
            )
        )
    # A job may name any definition, so every Batch (platform, arch) in the
    # region gets every definition — except GPU definitions on Fargate, which
    # has no GPUs.
    variants = sorted({(c.platform, c.arch) for c in clusters if c.platform != "launch_template"})
    job_definitions = [
        JobDefinitionPlan(d.name, kind, arch, naming.batch_job_definition(deployment, d.name, kind, arch))
        for d in config.definitions
        for kind, arch in variants
        if not (kind == "fargate" and d.gpus)
    ]
    return RegionPlan(region=region, clusters=clusters, job_definitions=job_definitions)


def compute_targets(config: Configuration) -> dict:
    """Region -> cluster -> where the scaler starts workers (the HYPER_COMPUTE value)."""
    targets: dict = {}
    for region in config.compute_regions:
        plan = plan_region(config, region)
        targets[region] = {
            c.cluster.name: (
                {"type": c.cluster.type, "auto_scaling_group": c.auto_scaling_group}
                if c.platform == "launch_template"
                else {"type": c.cluster.type, "job_queue": c.job_queue, "job_definitions": plan.definitions_for(c)}
            )
            for c in plan.clusters
        }
    return targets


def _type_arch(instance_type: str) -> str:
    if instance_type in _ARM_ALIASES:
        return "arm64"
    if instance_type in _X86_ALIASES:
        return "x86_64"
    return "arm64" if _GRAVITON.match(instance_type) else "x86_64"

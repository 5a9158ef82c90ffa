"""Small readers for synthesized CloudFormation templates (plain JSON), and cfn-lint."""

from __future__ import annotations

import json

from cfnlint.api import ManualArgs, lint


def resources(template: dict, type_: str) -> dict[str, dict]:
    """Logical id -> resource, for one CloudFormation type."""
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def statements(template: dict) -> list[tuple[str, dict]]:
    """Every IAM statement in a template: (policy logical id, statement), inline role policies included."""
    found = []
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            found += [(logical_id, s) for s in props["PolicyDocument"]["Statement"]]
        if resource["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                found += [(logical_id, s) for s in policy["PolicyDocument"]["Statement"]]
    return found


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def flat(value) -> str:
    """A CloudFormation value as one comparable string (Ref/Fn::Join rendered as text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        delimiter, parts = value["Fn::Join"]
        return delimiter.join(flat(p) for p in parts)
    if isinstance(value, dict) and "Ref" in value:
        return "${" + value["Ref"] + "}"
    return json.dumps(value, sort_keys=True)


def role_statements(template: dict, role_id_prefix: str) -> list[dict]:
    """Statements of the policies attached to the one role whose logical id starts with the prefix."""
    (role_id,) = [k for k in resources(template, "AWS::IAM::Role") if k.startswith(role_id_prefix)]
    found = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"].get("Roles", []):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def lint_errors(template: dict, region: str) -> list[str]:
    """Error-level findings only: warnings (W...) and informational (I...) do not fail."""
    matches = lint(json.dumps(template), config=ManualArgs(regions=[region]))
    return [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches if m.rule.id.startswith("E")]


# CPU architecture of the instance families and Batch aliases the test configurations use, written out
# here rather than derived the way the stacks derive it, so a wrong derivation shows.
FAMILY_ARCHITECTURE = {
    **dict.fromkeys(("c6g", "m6g", "c7g", "r6g", "c7gn", "r6gd", "m7g", "t4g", "g5g", "default_arm64"), "arm64"),
    **dict.fromkeys(("c6i", "m6i", "c5", "m5", "r6i", "g5", "g6", "p4d", "optimal", "default_x86_64"), "x86_64"),
}
GPU_FAMILIES = {"g5", "g6", "p4d", "g5g"}  # NVIDIA GPUs, among the families above
DOCKER_PLATFORM = {"arm64": "linux/arm64", "x86_64": "linux/amd64"}
FARGATE_ARCHITECTURE = {"X86_64": "x86_64", "ARM64": "arm64"}


def instance_architecture(instance_type: str) -> str:
    family = instance_type.split(".")[0]
    assert family in FAMILY_ARCHITECTURE, f"add {family!r} to FAMILY_ARCHITECTURE"
    return FAMILY_ARCHITECTURE[family]


def image_platforms(synth, region: str) -> dict[str, str]:
    """Asset hash (the image tag) -> platform the image is built for, in one compute stack."""
    assets = json.loads((synth.outdir / f"{synth.compute_name(region)}.assets.json").read_text())
    return {asset_hash: image["source"]["platform"] for asset_hash, image in assets["dockerImages"].items()}


def architecture_mismatches(synth) -> list[str]:
    """Job queue by job queue, each job definition the scaler may submit there (HYPER_COMPUTE) against
    the compute environment behind the queue: the image's platform must be the instances' architecture."""
    scaler = next(
        f["Properties"] for f in resources(synth.templates[synth.control_name], "AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "lambdas.scaler.handler"
    )
    compute = json.loads(scaler["Environment"]["Variables"]["HYPER_COMPUTE"])
    problems, checked = [], 0
    for region, clusters in compute.items():
        template = synth.templates[synth.compute_name(region)]
        platforms = image_platforms(synth, region)
        environments = resources(template, "AWS::Batch::ComputeEnvironment")
        queues = {q["Properties"]["JobQueueName"]: q["Properties"]
                  for q in resources(template, "AWS::Batch::JobQueue").values()}
        definitions = {d["Properties"]["JobDefinitionName"]: d["Properties"]
                       for d in resources(template, "AWS::Batch::JobDefinition").values()}
        for cluster, target in clusters.items():
            if "job_queue" not in target:
                continue  # a LAUNCH_TEMPLATE fleet runs no image
            (order,) = queues[target["job_queue"]]["ComputeEnvironmentOrder"]
            reference = order["ComputeEnvironment"]
            logical_id = reference["Ref"] if "Ref" in reference else reference["Fn::GetAtt"][0]
            environment = environments[logical_id]["Properties"]["ComputeResources"]
            for name in target["job_definitions"].values():
                container = definitions[name]["ContainerProperties"]
                if environment["Type"].startswith("FARGATE"):
                    wanted = FARGATE_ARCHITECTURE[container["RuntimePlatform"]["CpuArchitecture"]]
                else:
                    (wanted,) = {instance_architecture(t) for t in environment["InstanceTypes"]}
                image = container["Image"]
                text = image["Fn::Sub"] if isinstance(image, dict) and "Fn::Sub" in image else flat(image)
                tag = text.rsplit(":", 1)[-1]
                checked += 1
                if platforms[tag] != DOCKER_PLATFORM[wanted]:
                    problems.append(f"{region}/{cluster}: {name} runs a {platforms[tag]} image on {wanted}")
    assert checked, "no job definition was checked"
    return problems


def machine_image_problems(synth) -> list[str]:
    """Every EC2 compute environment runs Amazon Linux 2023, with its NVIDIA variant when it has
    GPU instance types; Fargate environments choose no image."""
    problems, checked = [], 0
    for name, template in synth.templates.items():
        for logical_id, environment in resources(template, "AWS::Batch::ComputeEnvironment").items():
            compute = environment["Properties"]["ComputeResources"]
            found = [c["ImageType"] for c in compute.get("Ec2Configuration", [])]
            if compute["Type"].startswith("FARGATE"):
                expected = []
            else:
                gpu = any(t.split(".")[0] in GPU_FAMILIES for t in compute["InstanceTypes"])
                expected = ["ECS_AL2023", "ECS_AL2023_NVIDIA"] if gpu else ["ECS_AL2023"]
            checked += 1
            if found != expected:
                problems.append(f"{name}/{logical_id}: {found} instead of {expected}")
    assert checked, "no compute environment was checked"
    return problems


def metadata_problems(synth) -> list[str]:
    """Instances of every Batch EC2 environment and EC2 fleet answer instance metadata only with a
    session token (IMDSv2), and only on the instance (one hop): no container reaches the instance role."""
    problems, checked = [], 0
    for name, template in synth.templates.items():
        templates = resources(template, "AWS::EC2::LaunchTemplate")
        launched = [
            (logical_id, env["Properties"]["ComputeResources"].get("LaunchTemplate", {}).get("LaunchTemplateId"))
            for logical_id, env in resources(template, "AWS::Batch::ComputeEnvironment").items()
            if not env["Properties"]["ComputeResources"]["Type"].startswith("FARGATE")
        ] + [
            (logical_id, group["Properties"]["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
             .get("LaunchTemplateId"))
            for logical_id, group in resources(template, "AWS::AutoScaling::AutoScalingGroup").items()
        ]
        for logical_id, reference in launched:
            checked += 1
            if not isinstance(reference, dict) or "Ref" not in reference:
                problems.append(f"{name}/{logical_id}: no launch template of this stack")
                continue
            options = templates[reference["Ref"]]["Properties"]["LaunchTemplateData"].get("MetadataOptions", {})
            if (options.get("HttpTokens"), options.get("HttpPutResponseHopLimit")) != ("required", 1):
                problems.append(f"{name}/{logical_id}: metadata options {options}")
    assert checked, "no instances to check"
    return problems

"""What a deployment costs a month before any job runs: the always-on part of its synthesized templates.

    .venv/bin/python bench/idle_cost.py [--config DIR] [--json]

Synthesizes the CDK app from configurations/ (or --config) into a temporary
directory, as `cdk synth` does without credentials, reads every template and
prices what bills by the hour or month whether or not jobs run:

- network: NAT gateways, elastic IPs, interface VPC endpoints (per endpoint and
  availability zone: per subnet it is placed in), load balancers;
- KMS keys, Secrets Manager secrets, Route 53 hosted zones;
- CloudWatch alarms (the first 10 of an account free) and dashboards (first 3 free);
- capacity kept running: a Batch compute environment's MinvCpus, an Auto
  Scaling group's MinSize;
- the scheduled functions (EventBridge rate rules): each tick's invocation,
  Lambda time (ASSUMED_RUN_SECONDS at the function's memory) and the idle
  polling it does (ASSUMED_* below), plus the EMF metrics the scaler publishes;
- storage of the deployment's artifacts: its file assets (the assembly's
  staged sizes) in S3 and its worker images (ASSUMED_IMAGE_GB each) in ECR.

Free tiers are left out (they are per account and shared with everything else
in it) except for alarms and dashboards, whose small free allowances decide
whether a small deployment pays for them at all. Prints
`idle_cost_per_month_usd: X`, then the breakdown.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import prices  # noqa: E402  (per-request prices, shared with bench/aws_cost.py)

HOURS_PER_MONTH = 730
MINUTES_PER_MONTH = HOURS_PER_MONTH * 60

# Always-on list prices, us-east-1, on-demand, US dollars (AWS public pricing pages, 2024-11;
# not re-checked since: the bench runs with no network). Per month unless the name says hour.
NAT_GATEWAY_PER_HOUR = 0.045  # $32.85 a month, before data processed
PUBLIC_IPV4_PER_HOUR = 0.005  # an elastic IP (or any public IPv4 address in use): $3.65 a month
INTERFACE_ENDPOINT_PER_AZ_HOUR = 0.01  # $7.30 a month per endpoint per availability zone; gateway endpoints free
LOAD_BALANCER_PER_HOUR = 0.0225  # ALB or NLB, before capacity units: $16.43 a month
KMS_KEY = 1.00  # customer managed key
SECRET = 0.40  # Secrets Manager secret
HOSTED_ZONE = 0.50  # Route 53
ALARM = 0.10  # standard-resolution metric alarm
FREE_ALARMS = 10
DASHBOARD = 3.00
FREE_DASHBOARDS = 3
CUSTOM_METRIC = 0.30  # per metric (namespace, name, dimensions) a month
FREE_CUSTOM_METRICS = 10
VCPU_PER_HOUR = 0.0425  # kept-running capacity, on-demand: c6i.large is $0.085 an hour for 2 vCPUs
INSTANCE_VCPUS = 2  # an Auto Scaling group's instance, when its size is not told
S3_PER_GB = 0.023
ECR_PER_GB = 0.10

# What an idle run of a scheduled function does (hyperbatch/scaler.py, hyperbatch/aws/reconcile.py): the
# scaler reads each queue's counts (one strongly consistent item) and its SQS attributes; the reconciler
# polls each queue's DLQ and the release-failures queue once. Lambda time per run is a guess.
ASSUMED_RUN_SECONDS = 0.3
ASSUMED_SCALER_READ_UNITS_PER_QUEUE = 1
ASSUMED_SCALER_SQS_PER_QUEUE = 1
ASSUMED_RECONCILER_SQS_PER_QUEUE = 1
ASSUMED_RECONCILER_SQS_EXTRA = 1
ASSUMED_SCALER_LEASE_WRITES = 2  # its single-flight lease: a conditional PutItem, then a DeleteItem
# Those two writes are stream records: the release function runs once for them (one batching window).
ASSUMED_RELEASE_RUNS_PER_SCALER_RUN = 1
ASSUMED_SCALER_LOG_BYTES_PER_RUN = 1024  # its EMF worker metrics, one document per compute region
ASSUMED_IMAGE_GB = 0.25  # python:3.12-slim plus the pinned requirements

SCALER, RECONCILER = "lambdas.scaler.handler", "lambdas.reconciler.handler"


@dataclass
class Line:
    item: str
    quantity: float
    unit: str
    usd_per_month: float


def resources(template: dict, type_: str) -> dict[str, dict]:
    return {k: v for k, v in template.get("Resources", {}).items() if v["Type"] == type_}


def hourly(count: float, per_hour: float) -> float:
    return count * per_hour * HOURS_PER_MONTH


def rate_minutes(expression: str) -> float | None:
    """Minutes between runs of a rate() schedule; None for cron() or anything else."""
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
    if not match:
        return None
    return int(match[1]) * {"minute": 1, "hour": 60, "day": 1440}[match[2].rstrip("s")]


def always_on(templates: dict[str, dict]) -> list[Line]:
    counts: Counter = Counter()
    for template in templates.values():
        counts["nat"] += len(resources(template, "AWS::EC2::NatGateway"))
        counts["eip"] += len(resources(template, "AWS::EC2::EIP"))
        for endpoint in resources(template, "AWS::EC2::VPCEndpoint").values():
            props = endpoint["Properties"]
            if props.get("VpcEndpointType") == "Interface":
                counts["endpoint_azs"] += max(1, len(props.get("SubnetIds", [])))
                counts["endpoints"] += 1
        counts["lb"] += len(resources(template, "AWS::ElasticLoadBalancingV2::LoadBalancer"))
        counts["kms"] += len(resources(template, "AWS::KMS::Key"))
        counts["secrets"] += len(resources(template, "AWS::SecretsManager::Secret"))
        counts["zones"] += len(resources(template, "AWS::Route53::HostedZone"))
        counts["alarms"] += len(resources(template, "AWS::CloudWatch::Alarm"))
        counts["dashboards"] += len(resources(template, "AWS::CloudWatch::Dashboard"))
        for environment in resources(template, "AWS::Batch::ComputeEnvironment").values():
            compute = environment["Properties"].get("ComputeResources", {})
            counts["min_vcpus"] += int(compute.get("MinvCpus", 0))
        for group in resources(template, "AWS::AutoScaling::AutoScalingGroup").values():
            counts["min_instances"] += int(group["Properties"].get("MinSize", 0))
    paid_alarms = max(0, counts["alarms"] - FREE_ALARMS)
    paid_dashboards = max(0, counts["dashboards"] - FREE_DASHBOARDS)
    return [
        Line("NAT gateways", counts["nat"], "gateway", hourly(counts["nat"], NAT_GATEWAY_PER_HOUR)),
        Line("elastic IPs", counts["eip"], "address", hourly(counts["eip"], PUBLIC_IPV4_PER_HOUR)),
        Line(f"interface endpoints ({counts['endpoints']})", counts["endpoint_azs"], "endpoint-AZ",
             hourly(counts["endpoint_azs"], INTERFACE_ENDPOINT_PER_AZ_HOUR)),
        Line("load balancers", counts["lb"], "balancer", hourly(counts["lb"], LOAD_BALANCER_PER_HOUR)),
        Line("KMS keys", counts["kms"], "key", counts["kms"] * KMS_KEY),
        Line("Secrets Manager secrets", counts["secrets"], "secret", counts["secrets"] * SECRET),
        Line("Route 53 hosted zones", counts["zones"], "zone", counts["zones"] * HOSTED_ZONE),
        Line(f"CloudWatch alarms (first {FREE_ALARMS} free)", counts["alarms"], "alarm", paid_alarms * ALARM),
        Line(f"CloudWatch dashboards (first {FREE_DASHBOARDS} free)", counts["dashboards"], "dashboard",
             paid_dashboards * DASHBOARD),
        Line("Batch minimum vCPUs", counts["min_vcpus"], "vCPU", hourly(counts["min_vcpus"], VCPU_PER_HOUR)),
        Line("Auto Scaling minimum instances", counts["min_instances"], "instance",
             hourly(counts["min_instances"] * INSTANCE_VCPUS, VCPU_PER_HOUR)),
    ]


def scheduled(templates: dict[str, dict], queues: int, compute_regions: int) -> list[Line]:
    """The scheduled functions' idle runs: invocations, Lambda time, polling, logs and metrics."""
    lines = []
    for template in templates.values():
        functions = resources(template, "AWS::Lambda::Function")
        for rule in resources(template, "AWS::Events::Rule").values():
            minutes = rate_minutes(rule["Properties"].get("ScheduleExpression", ""))
            if minutes is None:
                continue
            for target in rule["Properties"].get("Targets", []):
                arn = target.get("Arn", {})
                function_id = arn.get("Fn::GetAtt", [None])[0] if isinstance(arn, dict) else None
                if function_id not in functions:
                    continue
                props = functions[function_id]["Properties"]
                handler = props.get("Handler", function_id)
                runs = MINUTES_PER_MONTH / minutes
                gb_seconds = runs * ASSUMED_RUN_SECONDS * props.get("MemorySize", 128) / 1024
                usd = runs * (prices.LAMBDA_PER_REQUEST + prices.EVENTBRIDGE_SCHEDULER_PER_INVOCATION)
                usd += gb_seconds * prices.LAMBDA_PER_GB_SECOND_ARM64
                lines.append(Line(f"{handler}: runs (Lambda, EventBridge)", runs, "run", usd))
                if handler == SCALER:
                    reads = runs * queues * ASSUMED_SCALER_READ_UNITS_PER_QUEUE
                    sqs = runs * queues * ASSUMED_SCALER_SQS_PER_QUEUE
                    logs_gb = runs * ASSUMED_SCALER_LOG_BYTES_PER_RUN / 1e9
                    metrics = 2 * compute_regions  # WorkersRunning and VcpusRunning per region
                    lines.append(Line(f"{handler}: DynamoDB reads", reads, "read unit",
                                      reads * prices.DYNAMODB_PER_READ_UNIT))
                    writes = runs * ASSUMED_SCALER_LEASE_WRITES
                    lines.append(Line(f"{handler}: lease writes", writes, "write unit",
                                      writes * prices.DYNAMODB_PER_WRITE_UNIT))
                    release = runs * ASSUMED_RELEASE_RUNS_PER_SCALER_RUN
                    release_gb_s = release * ASSUMED_RUN_SECONDS * props.get("MemorySize", 128) / 1024
                    lines.append(Line("lambdas.release.handler: runs on the lease's stream records", release, "run",
                                      release * prices.LAMBDA_PER_REQUEST
                                      + release_gb_s * prices.LAMBDA_PER_GB_SECOND_ARM64))
                    lines.append(Line(f"{handler}: SQS requests", sqs, "request", sqs * prices.SQS_PER_REQUEST))
                    lines.append(Line(f"{handler}: EMF log ingestion", round(logs_gb, 4), "GB",
                                      logs_gb * prices.CLOUDWATCH_LOGS_INGEST_PER_GB))
                    lines.append(Line(f"{handler}: custom metrics (first {FREE_CUSTOM_METRICS} free)", metrics,
                                      "metric", max(0, metrics - FREE_CUSTOM_METRICS) * CUSTOM_METRIC))
                elif handler == RECONCILER:
                    sqs = runs * (queues * ASSUMED_RECONCILER_SQS_PER_QUEUE + ASSUMED_RECONCILER_SQS_EXTRA)
                    lines.append(Line(f"{handler}: SQS requests", sqs, "request", sqs * prices.SQS_PER_REQUEST))
    return lines


def storage(outdir: Path) -> list[Line]:
    """The deployment's artifacts at rest: file assets in each region's CDK bucket, images in ECR."""
    file_gb, images = 0.0, 0
    for manifest in outdir.glob("*.assets.json"):
        assets = json.loads(manifest.read_text())
        for asset in assets.get("files", {}).values():
            source = outdir / asset["source"]["path"]
            if source.suffix == ".json":
                continue  # the templates themselves
            size = source.stat().st_size if source.is_file() else sum(
                p.stat().st_size for p in source.rglob("*") if p.is_file())
            file_gb += size / 1e9
        images += len(assets.get("dockerImages", {}))
    return [
        Line("file assets in S3", round(file_gb, 4), "GB", file_gb * S3_PER_GB),
        Line(f"worker images in ECR (~{ASSUMED_IMAGE_GB} GB each)", images, "image",
             images * ASSUMED_IMAGE_GB * ECR_PER_GB),
    ]


def synthesize(config_dir: Path, outdir: Path) -> dict[str, dict]:
    from stacks import build_app

    app = build_app(config_dir, outdir=str(outdir))
    try:
        app.synth()
    except RuntimeError as error:  # cdk-nag: the templates are written all the same
        print(f"note: synthesis reported: {str(error).splitlines()[0]}", file=sys.stderr)
    return {p.name.removesuffix(".template.json"): json.loads(p.read_text()) for p in outdir.glob("*.template.json")}


def idle_cost(config_dir: Path, outdir: Path, templates: dict[str, dict] | None = None) -> tuple[float, list[Line]]:
    """(USD a month, breakdown) of the configuration in `config_dir`, whose assembly is in `outdir`
    (synthesized there first unless `templates` are given)."""
    from hyperbatch.config import load

    config = load(config_dir)
    if templates is None:
        templates = synthesize(config_dir, outdir)
    lines = always_on(templates) + scheduled(templates, len(config.queues), len(config.compute_regions))
    lines += storage(outdir)
    return sum(line.usd_per_month for line in lines), lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configurations", help="configuration directory")
    parser.add_argument("--json", action="store_true", help="print the breakdown as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="idle-cost-") as outdir:
        total, lines = idle_cost(args.config, Path(outdir))
    if args.json:
        print(json.dumps({"idle_cost_per_month_usd": round(total, 2), "lines": [asdict(x) for x in lines]}, indent=1))
        return 0
    print(f"idle_cost_per_month_usd: {total:.2f}")
    print(f"  (configuration {args.config}; list prices us-east-1; free tiers only for alarms and dashboards)")
    for line in lines:
        quantity = f"{line.quantity:,.0f}" if line.quantity >= 10 or line.quantity == math.floor(line.quantity) \
            else f"{line.quantity:g}"
        print(f"  {line.item:<58} {quantity:>10} {line.unit:<12} ${line.usd_per_month:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

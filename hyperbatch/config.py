"""Validated configuration models for `configurations/*.json`.

One set of models serves the CDK app, local mode and the `hyper` management
commands, so a file that one of them accepts, all of them accept.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Literal, Mapping, NamedTuple

from hyperbatch.core import access, bucket, onprem, options, pools, resources
from hyperbatch.core.cadence import Cadence
from hyperbatch.core.errors import ConfigError, SpecError
from hyperbatch.support.files import atomic_write
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
NAME_RE = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"

FILES = ("settings", "regions", "clusters", "queues", "definitions", "images")

# The retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiSettings(_Model):
    throttle_rate: float = Field(100, gt=0, description="steady-state requests per second")
    throttle_burst: int = Field(200, gt=0)
    max_batch: int = Field(1000, ge=1, le=1000, description="jobs per POST /jobs")


class MonitoringSettings(_Model):
    dashboard: bool = True
    alarms: bool = True
    alarm_email: str | None = None


class LocalSettings(_Model):
    port: int = Field(8765, ge=1024, le=65535)
    scaler_interval_seconds: float = Field(0.5, gt=0)
    reconciler_interval_seconds: float = Field(1.0, gt=0)
    # Local workers heart-beat often so that qdel and lost workers show quickly.
    lease_seconds: float = Field(10, gt=0)
    heartbeat_seconds: float = Field(1, gt=0)
    # Local mode runs as many jobs at once as the machine has cores: a worker is a process, cheap to
    # start, so every queued job gets one while cores are free (pilot jobs, a dask worker per job,
    # all start). The definitions' jobs_to_workers_ratio and max_workers are for AWS.
    max_workers: int | None = Field(
        None, ge=1, description="worker processes at once, all queues and regions together; default: the CPU count"
    )
    jobs_to_workers_ratio: int = Field(1, ge=1, description="queued jobs per worker started in local mode")
    # What jobs may use of the machine; by default all of it (hyperbatch.adapters.local.machine).
    cpus: int | None = Field(None, ge=1, description="CPUs jobs may use at once; default: the machine's")
    mem: str | None = Field(None, description="memory jobs may ask for at once, as in 16gb; default: the machine's")
    gpus: list[str] | None = Field(
        None, description="the GPUs jobs may use, as CUDA_VISIBLE_DEVICES names them; default: the NVIDIA GPUs found"
    )
    starve_after_seconds: float = Field(
        60, ge=0, description="a job that has waited this long for resources keeps smaller ones from starting first"
    )

    @field_validator("mem")
    @classmethod
    def _mem(cls, value: str | None) -> str | None:
        try:
            return None if value is None else options.parse_size(str(value))
        except SpecError as exc:
            raise ValueError(str(exc)) from None

    def cpu_count(self) -> int:
        """The CPUs jobs may use at once: `cpus`, else those this process may run on."""
        return self.cpus or len(os.sched_getaffinity(0)) or 1

    def worker_cap(self) -> int:
        """The most workers local mode runs at once: one a CPU (every job takes at least one)."""
        return self.max_workers or self.cpu_count()


class SmtpSettings(_Model):
    """The mail server local mode sends PBS mail (-m, -M) through."""

    host: str = Field(min_length=1)
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password_file: str | None = Field(None, description="a file holding the password (kept out of settings.json)")


class NotificationSettings(_Model):
    """Mail, webhooks and EventBridge (hyperbatch.core.notices)."""

    mail_from: str = Field("hyperbatch", description="the From address of job mail")
    smtp: SmtpSettings | None = Field(None, description="local mode: without it no mail is sent")
    ses_sender: str | None = Field(None, description="AWS: an SES-verified address job mail is sent from; "
                                                     "without it no mail is sent")
    webhook_secret_parameter: str | None = Field(
        None, pattern=r"^/[A-Za-z0-9_.\-/]{1,1000}$",
        description="AWS: the SSM SecureString parameter holding the webhooks' HMAC secret")
    event_bus: bool = Field(True, description="AWS: put every job state change on the default EventBridge bus "
                                              "while a rule there could match it (none: none put, nothing paid); "
                                              "false: never")


class Settings(_Model):
    stack_name: str = Field("HyperBatch", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,100}$")
    main_region: str
    account: str | None = Field(None, pattern=r"^\d{12}$")
    admins: list[str] = Field(default_factory=list, description="IAM principal ARNs that see every job")
    api: ApiSettings = ApiSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    local: LocalSettings = LocalSettings()
    notifications: NotificationSettings = NotificationSettings()
    job_retention_days: int = Field(30, ge=1, le=3650)
    log_retention_days: int = Field(30, ge=1)
    lease_seconds: float = Field(60, gt=0, description="a claim's lease: a worker that misses this long loses its job")
    heartbeat_seconds: float = Field(15, gt=0, description="a run's first look at the store (qdel, qsig) after its start")
    # AWS only (hyperbatch.core.cadence): looks at the store grow apart with a run's age up to this, and
    # a run that outlasts a third of its claim's lease is registered with this long a lease, renewed half way.
    heartbeat_max_seconds: float = Field(300, gt=0, description="the longest a running job goes between looks")
    run_lease_seconds: float = Field(
        3600, gt=0, description="the lease a registered run holds: a worker that is hung this long loses its job")
    scaler_interval_minutes: int = Field(1, ge=1)
    deletion_protection: bool = True
    staging_locations: list[str] = Field(
        default_factory=list,
        description="S3 locations (s3://BUCKET/PREFIX) jobs may stage files from and to besides the deployment's "
                    "own bucket; workers may read and write there")

    @field_validator("staging_locations")
    @classmethod
    def _staging_locations(cls, value: list[str]) -> list[str]:
        for entry in value:
            uri = bucket.parse_s3(entry)  # SpecError is a ValueError: pydantic reports it on the field
            if uri.key and not uri.key.endswith("/"):
                raise ValueError(f"'{entry}': a location is a bucket or a prefix ending in '/'")
        return value

    @field_validator("main_region")
    @classmethod
    def _region(cls, value: str) -> str:
        return _check_region(value)

    @field_validator("admins")
    @classmethod
    def _admins(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not access.PRINCIPAL.match(entry):
                raise ValueError(
                    f"'{entry}' is not an IAM principal ARN: give a user (arn:aws:iam::ACCOUNT:user/NAME), a role, "
                    "whose every session is then an admin (arn:aws:iam::ACCOUNT:role/NAME), or one session "
                    "(arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION)"
                )
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(
                f"{value} is not a retention CloudWatch Logs accepts; use one of {', '.join(map(str, LOG_RETENTION_DAYS))}"
            )
        return value

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> "Settings":
        for where in (self, self.local):
            _check_heartbeat(where.heartbeat_seconds, where.lease_seconds)
        if self.heartbeat_max_seconds < self.heartbeat_seconds:
            raise ValueError(f"heartbeat_max_seconds ({self.heartbeat_max_seconds:g}) must be at least "
                             f"heartbeat_seconds ({self.heartbeat_seconds:g}): looks at a run only grow apart")
        if self.run_lease_seconds < 2 * self.lease_seconds:
            raise ValueError(f"run_lease_seconds ({self.run_lease_seconds:g}) must be at least twice lease_seconds "
                             f"({self.lease_seconds:g}): a long run's registered lease is what spares it renewals")
        return self

    def cadence(self) -> Cadence:
        """How an AWS run looks at the store and renews its lease (hyperbatch.core.cadence)."""
        return Cadence(self.lease_seconds, self.heartbeat_seconds, self.heartbeat_max_seconds, self.run_lease_seconds)


class Vpc(_Model):
    cidr: str | None = Field(None, pattern=r"^\d+\.\d+\.\d+\.\d+/\d+$")
    vpc_id: str | None = Field(None, pattern=r"^vpc-[0-9a-f]+$")
    subnet_type: Literal["public", "private", "isolated"] = "public"
    max_azs: int = Field(2, ge=1, le=6)

    @model_validator(mode="after")
    def _one_source(self) -> "Vpc":
        if (self.cidr is None) == (self.vpc_id is None):
            raise ValueError("give exactly one of cidr (create a VPC) or vpc_id (import one)")
        return self


class Region(_Model):
    name: str
    compute: bool = True
    vpc: Vpc = Vpc(cidr="10.0.0.0/16")
    local_max_workers: int | None = Field(
        None, ge=0, description="worker processes this region may run in local mode (default: settings.local's cap)"
    )

    @field_validator("name")
    @classmethod
    def _region(cls, value: str) -> str:
        return _check_region(value)


class Cluster(_Model):
    name: str = Field(pattern=NAME_RE)
    type: Literal["EC2", "SPOT", "FARGATE", "FARGATE_SPOT", "LAUNCH_TEMPLATE"] = "SPOT"
    instance_types: list[str] = Field(default_factory=lambda: ["optimal"])
    min_vcpus: int = Field(0, ge=0)
    max_vcpus: int = Field(256, ge=1)
    allocation_strategy: Literal[
        "BEST_FIT", "BEST_FIT_PROGRESSIVE", "SPOT_CAPACITY_OPTIMIZED", "SPOT_PRICE_CAPACITY_OPTIMIZED"
    ] | None = None
    spot_bid_percentage: int | None = Field(None, ge=1, le=100)
    regions: list[str] | None = Field(None, description="hub regions to build it in; all compute regions if absent")

    @model_validator(mode="after")
    def _consistent(self) -> "Cluster":
        if self.min_vcpus > self.max_vcpus:
            raise ValueError("min_vcpus must not exceed max_vcpus")
        if self.spot_bid_percentage is not None and self.type != "SPOT":
            raise ValueError("spot_bid_percentage applies only to a SPOT cluster")
        return self


class Queue(_Model):
    name: str = Field(pattern=NAME_RE)
    cluster: str
    definition: str = Field(description="definition used when a job names none")
    priority: int = Field(1, ge=0, le=1000)
    region_weights: dict[str, float] | Literal["auto"] = Field(
        default_factory=dict, description="share of new workers per region; 'auto' from spot placement scores; "
        "'onprem' (above zero) uses the queue's on-premises workers first"
    )
    max_attempts: int = Field(
        1, ge=1, le=100, description="default runs allowed for non-zero exits (1: a non-zero exit is final, as PBS)"
    )
    definitions: list[str] = Field(
        default_factory=list,
        description="more sizes its jobs may run on: each job goes to the smallest that fits its request",
    )
    default_resources: dict[str, str | int] = Field(
        default_factory=dict, description="Resource_List entries a job gets when it does not ask (PBS resources_default)"
    )
    max_resources: dict[str, str | int] = Field(
        default_factory=dict, description="the most ncpus, mem and ngpus one job may ask for (PBS resources_max)"
    )

    @field_validator("default_resources", "max_resources")
    @classmethod
    def _resources(cls, value: dict) -> dict:
        try:
            checked = options.check_resources(value)
        except SpecError as exc:
            raise ValueError(str(exc)) from None
        unlimited = sorted(set(checked) - set(resources.LIMITED) - {"select", "place", "mpiprocs", "ompthreads"})
        if unlimited:
            raise ValueError(f"{unlimited[0]} cannot be given here; use ncpus, mem, ngpus or select")
        return checked

    @field_validator("region_weights")
    @classmethod
    def _weights(cls, value):
        if isinstance(value, dict):
            for region, weight in value.items():
                if region != onprem.ONPREM:  # workers on your own machines (hyperbatch.core.onprem)
                    _check_region(region)
                if weight < 0:
                    raise ValueError(f"weight for {region} must be zero or more")
            if value and not any(value.values()):
                raise ValueError("at least one region needs a weight above zero")
        return value


class Definition(_Model):
    name: str = Field(pattern=NAME_RE)
    image: str = "worker"
    vcpus: float = Field(1, gt=0)
    memory_mib: int = Field(2048, ge=128)
    gpus: int = Field(0, ge=0)
    environment: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: int = Field(86400, ge=60, description="how long one worker container may live")
    retry_attempts: int = Field(1, ge=1, le=10, description="AWS Batch retries of a worker container")
    jobs_to_workers_ratio: int = Field(
        1, ge=1, description="queued jobs per worker started (AWS; local mode uses settings.local's)"
    )
    idle_timeout_seconds: float = Field(60, gt=0, description="a worker with no work exits after this")
    max_workers: int = Field(10, ge=1, description="workers of this definition at once (AWS; local mode: settings.local)")
    chunk_size: int = Field(64, ge=1, le=10000, description="array tasks a worker claims at once")


class Pool(NamedTuple):
    """The workers of one definition serving one queue, and the work queue they claim from (`name`)."""

    name: str
    queue: str
    definition: str


class Image(_Model):
    name: str = Field(pattern=NAME_RE)
    directory: str = "worker_image"
    build_args: dict[str, str] = Field(default_factory=dict)


class Configuration(_Model):
    """The whole deployment, cross-checked: every reference points at something configured."""

    settings: Settings
    regions: list[Region]
    clusters: list[Cluster]
    queues: list[Queue]
    definitions: list[Definition]
    images: list[Image]

    @property
    def compute_regions(self) -> list[str]:
        return [r.name for r in self.regions if r.compute]

    @property
    def hub_regions(self) -> list[str]:
        return [r.name for r in self.regions if r.compute and r.name != self.settings.main_region]

    def region(self, name: str) -> Region:
        return _by_name(self.regions, name)

    def queue(self, name: str) -> Queue:
        return _by_name(self.queues, name)

    def cluster(self, name: str) -> Cluster:
        return _by_name(self.clusters, name)

    def definition(self, name: str) -> Definition:
        return _by_name(self.definitions, name)

    def sizes(self, queue: Queue) -> list[Definition]:
        """The definitions a queue's jobs may run on: its default first, then the others it lists."""
        names = list(dict.fromkeys([queue.definition, *queue.definitions]))
        return [self.definition(n) for n in names]

    @property
    def pools(self) -> list[Pool]:
        """Every (queue, definition) pool of workers with its work queue's name (hyperbatch.core.pools)."""
        return [Pool(pools.pool_name(q.name, d.name, q.definition), q.name, d.name)
                for q in self.queues for d in self.sizes(q)]

    def pool(self, name: str) -> Pool:
        """The pool whose work queue is `name` (a queue's own name is its default pool's); KeyError if none."""
        for p in self.pools:
            if p.name == name:
                return p
        raise KeyError(f"no queue or pool named {name}")

    def pools_on(self, cluster: str) -> list[str]:
        """The work queues of the pools whose workers run on `cluster` (their queue's)."""
        return [p.name for p in self.pools if self.queue(p.queue).cluster == cluster]

    def weights(self, queue: Queue) -> dict[str, float]:
        """Static region weights of a queue ('auto' and empty mean equal weights over compute regions)."""
        if isinstance(queue.region_weights, dict) and queue.region_weights:
            return dict(queue.region_weights)
        return {name: 1.0 for name in self.compute_regions}

    def problems(self) -> list[str]:
        """Cross-file inconsistencies, each as "file: entry 'name' field 'f': what is wrong"."""
        out: list[str] = []
        for kind in ("regions", "clusters", "queues", "definitions", "images"):
            seen: set[str] = set()
            for item in getattr(self, kind):
                if item.name in seen:
                    out.append(f"{kind}.json: entry '{item.name}' field 'name': appears more than once")
                seen.add(item.name)
        regions = {r.name for r in self.regions}
        compute = set(self.compute_regions)
        if self.settings.main_region not in regions:
            out.append(
                f"settings.json: field 'main_region': '{self.settings.main_region}' is not listed in regions.json"
            )
        if not compute:
            out.append("regions.json: no region has compute enabled")
        for r in self.regions:
            if r.compute and r.vpc.subnet_type == "isolated" and r.name != self.settings.main_region:
                out.append(
                    f"regions.json: entry '{r.name}' field 'vpc.subnet_type': isolated subnets reach only their own "
                    f"region's services, but workers must reach the queues and table in {self.settings.main_region}: "
                    "use private or public"
                )
        clusters = {c.name for c in self.clusters}
        definitions = {d.name for d in self.definitions}
        images = {i.name for i in self.images}
        for c in self.clusters:
            for name in c.regions or []:
                if name not in compute:
                    out.append(f"clusters.json: entry '{c.name}' field 'regions': '{name}' is not a compute region")
        for c in self.clusters:
            on_it = [q.name for q in self.queues if q.cluster == c.name]
            sized = [q.name for q in self.queues if q.cluster == c.name and set(q.definitions) - {q.definition}]
            if c.type == "LAUNCH_TEMPLATE" and sized:
                # Its instances are of one launch template, all alike: one size.
                out.append(
                    f"queues.json: entry '{sized[0]}' field 'definitions': a LAUNCH_TEMPLATE cluster's "
                    f"instances are all of one size: give queue {sized[0]} one definition, or another cluster"
                )
            if c.type == "LAUNCH_TEMPLATE" and len(on_it) > 1:
                # Its instances start from one boot script, which names the queue their worker serves.
                out.append(
                    f"clusters.json: entry '{c.name}' field 'type': a LAUNCH_TEMPLATE cluster runs the workers of "
                    f"one queue, but {len(on_it)} use it ({', '.join(on_it)}): give each queue a cluster of its own"
                )
        for q in self.queues:
            if q.cluster not in clusters:
                out.append(f"queues.json: entry '{q.name}' field 'cluster': no cluster named '{q.cluster}'")
            if q.definition not in definitions:
                out.append(f"queues.json: entry '{q.name}' field 'definition': no definition named '{q.definition}'")
            for name in q.definitions:
                if name not in definitions:
                    out.append(f"queues.json: entry '{q.name}' field 'definitions': no definition named '{name}'")
            if isinstance(q.region_weights, dict):
                for name in q.region_weights:
                    if name not in compute and name != onprem.ONPREM:
                        out.append(
                            f"queues.json: entry '{q.name}' field 'region_weights': '{name}' is not a configured compute region"
                        )
        for q in self.queues:
            gpu_sizes = [name for name in dict.fromkeys([q.definition, *q.definitions])
                         if name in definitions and self.definition(name).gpus]
            cluster = next((c for c in self.clusters if c.name == q.cluster), None)
            if gpu_sizes and cluster is not None and not _has_gpus(cluster):
                field = "definition" if gpu_sizes[0] == q.definition else "definitions"
                out.append(
                    f"queues.json: entry '{q.name}' field '{field}': '{gpu_sizes[0]}' needs GPUs, but cluster "
                    f"'{cluster.name}' ({cluster.type}, {', '.join(cluster.instance_types)}) has none: give the "
                    "cluster GPU instance types (g4dn, g5, g6, p3, p4d, ...), or the queue another cluster"
                )
            if pools.SEPARATOR in q.name:
                out.append(f"queues.json: entry '{q.name}' field 'name': '{pools.SEPARATOR}' is kept for the "
                           f"work queues of a queue's other sizes (QUEUE{pools.SEPARATOR}DEFINITION): rename it")
        for d in self.definitions:
            if d.image not in images:
                out.append(f"definitions.json: entry '{d.name}' field 'image': no image named '{d.image}'")
        return out


GPU_FAMILY = re.compile(r"^(g\d|gr\d|p\d)[a-z0-9-]*(\.|$)")  # EC2 families with NVIDIA GPUs


def _has_gpus(cluster: Cluster) -> bool:
    """Whether a cluster can give a job GPUs: EC2 or Spot with a GPU instance family among its types."""
    return cluster.type not in ("FARGATE", "FARGATE_SPOT") and any(GPU_FAMILY.match(t) for t in cluster.instance_types)


def _check_heartbeat(heartbeat: float, lease: float) -> None:
    # Fencing (hyperbatch.services.agent.Lease): a run silent for a whole lease is taken back, and a worker
    # that could not renew for `lease - heartbeat / 2` kills its job first: half a heartbeat is the margin
    # between the two (it must cover the workers' clock differences). At most a third of the lease, so that a
    # worker gives its job up only after two beats in a row failed.
    if heartbeat * 3 > lease:
        raise ValueError(
            f"heartbeat_seconds ({heartbeat:g}) must be at most a third of lease_seconds ({lease:g}): a worker "
            "kills its job once it has gone lease_seconds - heartbeat_seconds / 2 without renewing its lease"
        )


def _check_region(value: str) -> str:
    if not REGION_RE.match(value):
        raise ValueError(f"'{value}' is not an AWS region name such as us-east-1")
    return value


def _by_name(items, name):
    for item in items:
        if item.name == name:
            return item
    raise KeyError(name)


_MODELS: dict[str, type[BaseModel]] = {
    "settings": Settings,
    "regions": Region,
    "clusters": Cluster,
    "queues": Queue,
    "definitions": Definition,
    "images": Image,
}


def describe_error(file: str, entry: str, error: ValidationError) -> str:
    """Turn a pydantic error into lines that name the file, the entry and the field."""
    lines = []
    for err in error.errors():
        field = ".".join(str(part) for part in err["loc"]) or "(whole entry)"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{file}: {entry}field '{field}': {message}")
    return "\n".join(lines)


def read_raw(directory: Path, kind: str):
    path = Path(directory) / f"{kind}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path.name}: missing from {directory}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def parse_file(kind: str, data):
    """Validate one file's parsed JSON; raise ConfigError naming file, entry and field."""
    file, model = f"{kind}.json", _MODELS[kind]
    if kind == "settings":
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(describe_error(file, "", exc)) from None
    if not isinstance(data, list):
        raise ConfigError(f"{file}: must be a JSON list of entries, each an object with a 'name'")
    items = []
    for index, item in enumerate(data):
        name = item.get("name") if isinstance(item, dict) else None
        entry = f"entry '{name}' " if name else f"entry #{index + 1} "
        if not isinstance(item, dict):
            raise ConfigError(f"{file}: {entry}must be a JSON object")
        try:
            items.append(model.model_validate(item))
        except ValidationError as exc:
            raise ConfigError(describe_error(file, entry, exc)) from None
    return items


def validate(raw: dict) -> Configuration:
    """Validate the parsed files (kind -> JSON data) as one cross-checked configuration."""
    config = Configuration.model_construct(**{kind: parse_file(kind, raw[kind]) for kind in FILES})
    problems = config.problems()
    if problems:
        raise ConfigError("\n".join(problems))
    return config


def load(directory: str | Path) -> Configuration:
    """Read and validate every file of a configuration directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such configuration directory")
    return validate({kind: read_raw(directory, kind) for kind in FILES})


def dump(directory: str | Path, kind: str, value) -> None:
    """Write one file back, in the same shape `load` reads."""
    if isinstance(value, list):
        data = [item.model_dump(mode="json", exclude_defaults=True) | {"name": item.name} for item in value]
    else:
        data = value.model_dump(mode="json", exclude_defaults=True)
    path = Path(directory) / f"{kind}.json"
    atomic_write(path, json.dumps(data, indent=2) + "\n", mode=0o644)


def configuration_from_environment(env: Mapping[str, str]) -> Configuration:
    """HYPER_CONFIG (the validated configuration as JSON, stacks/contract.config_json), else HYPER_CONFIG_DIR."""
    if env.get("HYPER_CONFIG"):
        try:
            raw = json.loads(env["HYPER_CONFIG"])
        except json.JSONDecodeError as exc:
            raise ValueError(f"HYPER_CONFIG is not JSON: {exc}") from None
        return validate(raw)
    if env.get("HYPER_CONFIG_DIR"):
        return load(env["HYPER_CONFIG_DIR"])
    raise KeyError("HYPER_CONFIG (or HYPER_CONFIG_DIR)")

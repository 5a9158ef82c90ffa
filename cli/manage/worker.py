"""`hyper worker start`: run a worker on this machine (hybrid) against the selected AWS host.

    hyper worker start --queue Q [--definition D] [--name NAME] [--cpus N --mem M --gpus G] [--config DIR]

The worker is the one every container runs (worker_image/start.sh and the
agent), in the foreground, with region `onprem` and worker id NAME: its jobs
show `onprem/NAME` as exec_host and pbsnodes lists it under that name
(hyperbatch.core.onprem). It reaches the deployment with this machine's AWS
credentials (the host's profile, else the default chain: on a machine outside
AWS, IAM Roles Anywhere), which need the stack's OnPremWorkerPolicyArn. The
names of the table, queues and log groups come from the control stack's
outputs; lease, heartbeat and the definitions from the configuration, which
must be the deployment's. It stops on SIGTERM or Ctrl-C, handing its job back.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import click

from hyperbatch.cli.errors import CliError, UsageError
from hyperbatch.cli.manage.common import config_option, configuration_dir

OUTPUTS = {"TableName": "HYPER_TABLE", "QueueUrls": "HYPER_QUEUE_URLS", "LogGroupPrefix": "HYPER_LOG_GROUP_PREFIX",
           "FilesBucket": "HYPER_FILES_BUCKET", "Region": "HYPER_MAIN_REGION", "StackName": "HYPER_STACK"}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def worker() -> None:
    """Workers on your own machines, joining the selected AWS host's queues."""


@worker.command("start")
@click.option("--queue", "queue_name", required=True, help="The queue whose jobs this worker runs.")
@click.option("--definition", help="Its definition (default: the queue's): environment, chunk size.")
@click.option("--name", help="The worker's name, shown as onprem/NAME (default: this machine's short host name).")
@click.option("--cpus", type=click.IntRange(min=1), help="CPUs it offers (default: those this process may use).")
@click.option("--mem", help="Memory it offers, as 16gb or 512mb (default: the machine's).")
@click.option("--gpus", type=click.IntRange(min=0), default=0, show_default=True, help="GPUs it offers.")
@config_option
def start(queue_name: str, definition: str | None, name: str | None, cpus: int | None, mem: str | None,
          gpus: int, config_dir: Path | None) -> None:
    """Run a worker here, in the foreground, against the selected AWS host (one job at a time)."""
    from hyperbatch import config as config_models
    from hyperbatch.cli import host_registry
    from hyperbatch.core import onprem, options, pools
    from hyperbatch.core.errors import SpecError

    host_name, host = host_registry.current()
    if host.get("kind") != "aws":
        raise CliError(f"host {host_name!r} is local mode, whose daemon starts its own workers: "
                       "select an AWS host (`hyper hosts select NAME`) to add this machine to it")
    directory = configuration_dir(config_dir)
    try:
        cfg = config_models.load(directory)
    except config_models.ConfigError as exc:
        raise CliError(str(exc).splitlines()[0]) from None
    if cfg.settings.stack_name != host.get("stack_name"):
        raise UsageError(f"the configuration in {directory} is deployment {cfg.settings.stack_name!r}, the selected "
                         f"host {host_name!r} is {host.get('stack_name')!r}: pass that deployment's --config DIR")
    try:
        queue = cfg.queue(queue_name)
    except KeyError:
        raise UsageError(f"no queue {queue_name!r} in {directory} (queues: "
                         f"{', '.join(q.name for q in cfg.queues)})") from None
    definition = definition or queue.definition
    sizes = [d.name for d in cfg.sizes(queue)]
    if definition not in sizes:
        raise UsageError(f"queue {queue.name} runs its jobs on {', '.join(sizes)}, not {definition!r}")
    try:
        name = onprem.check_name(name or socket.gethostname().split(".")[0])
        mem_bytes = options.size_bytes(options.parse_size(mem, "--mem")) if mem else _memory()
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    env = dict(os.environ) | _deployment(host) | {
        "HYPER_BACKEND": "aws",
        "HYPER_CONFIG_DIR": str(directory),
        "HYPER_QUEUE": pools.pool_name(queue.name, definition, queue.definition),  # its size's work queue
        "HYPER_DEFINITION": definition,
        "HYPER_REGION": onprem.ONPREM,
        "HYPER_WORKER_ID": name,
        "HYPER_NCPUS": str(cpus or len(os.sched_getaffinity(0))),
        "HYPER_MEM_MIB": str(mem_bytes >> 20),
        "HYPER_NGPUS": str(gpus),
        "HYPER_IDLE_TIMEOUT": "inf",  # your machine: it waits for work until stopped
        "HYPER_WORK_ROOT": str(host_registry.home() / "onprem" / name),
        "HYPER_PYTHON": sys.executable,
    }
    if host.get("profile"):
        env["AWS_PROFILE"] = host["profile"]
    click.echo(f"worker {onprem.node_name(name)} joins {host_name} (queue {queue.name}, definition {definition}, "
               f"ncpus={env['HYPER_NCPUS']} mem={env['HYPER_MEM_MIB']}mb ngpus={gpus}); stop it with Ctrl-C",
               err=True)
    os.execve("/bin/bash", ["bash", _start_sh()], env)


def _deployment(host: dict) -> dict[str, str]:
    """The control stack's names (its outputs) as the worker's environment."""
    from hyperbatch.cli import aws_session as aws
    from hyperbatch.core.names import control_stack

    stack_name, region = control_stack(host["stack_name"]), host["region"]
    with aws.errors(f"cannot read stack {stack_name} in {region}"):
        stack = aws.describe_stack(aws.session(host.get("profile")), region, stack_name)
    if stack is None:
        raise CliError(f"no CloudFormation stack {stack_name} in {region}: is the host's deployment still there?")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}
    missing = [key for key in OUTPUTS if key not in outputs]
    if missing:
        raise CliError(f"stack {stack_name} has no output {', '.join(missing)}: deploy this version first")
    return {variable: outputs[key] for key, variable in OUTPUTS.items()}


def _memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _start_sh() -> str:
    """worker_image/start.sh, installed as package data (the package holds no code to import)."""
    from importlib import resources

    return str(resources.files("hyperbatch.worker_image") / "start.sh")

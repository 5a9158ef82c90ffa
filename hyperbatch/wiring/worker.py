"""Wiring of a worker process: the agent over the adapters its environment names.

`worker_image/start.sh` runs this module in a loop (`python -m hyperbatch.wiring.worker`).
Local workers (HYPER_BACKEND=local, started by the daemon's compute) use the SQLite store
under $HYPERBATCH_HOME; AWS workers (HYPER_BACKEND=aws, in Batch containers or on
instances) use the main region's table, queues and logs. A worker on your own machine
(`hyper worker start`) is an AWS worker of region `onprem` that also keeps a record of itself
(presence_from_environment), since no scaler started it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sys
import uuid
from pathlib import Path
from typing import Mapping

from hyperbatch import config as config_models
from hyperbatch.services.agent import EXIT_MISCONFIGURED, Agent, Settings
from hyperbatch.services.dispatch import Dispatcher
from hyperbatch.adapters.local import machine, open_local
from hyperbatch.adapters.local.staging import LocalStager
from hyperbatch.core.resources import Amount
from hyperbatch.services.slots import Room, Slots, slots_of
from hyperbatch.config import configuration_from_environment
from hyperbatch.core import onprem
from hyperbatch.core.errors import Conflict, StorageFull
from hyperbatch.support import logs

log = logging.getLogger("hyperbatch.worker")


# An idle local worker is woken when work is sent (hyperbatch.adapters.local.wake); it still claims at
# least this often, should a wake-up not come (work that was given back with a delay, say).
LOCAL_FALLBACK_POLL_SECONDS = 1.0


def worker_from_environment(env: Mapping[str, str] | None = None):
    """An Agent for the queue, region and worker named in the environment (set by Compute).

    `env` defaults to os.environ (the AWS-in-a-box harness passes one per worker thread).
    """

    backend_kind = (os.environ if env is None else env).get("HYPER_BACKEND", "local")
    if backend_kind == "aws":
        return _aws_worker(os.environ if env is None else env)
    if backend_kind != "local":
        raise ValueError(f"HYPER_BACKEND={backend_kind}: this build knows 'local' and 'aws'")
    config = config_models.load(os.environ["HYPER_CONFIG_DIR"])
    local = config.settings.local
    definition = config.definition(os.environ["HYPER_DEFINITION"])
    # The machine as the daemon described it (else as this worker finds it): claims place work by it.
    here = machine.from_environment(os.environ) or machine.offer(local)
    backend = open_local(machine=here)
    dispatcher = Dispatcher(
        backend.store, backend.queue, os.environ["HYPER_WORKER_ID"], os.environ["HYPER_REGION"], local.lease_seconds,
        together=backend.db.together,  # a run's result and its ack: one commit
    )
    settings = Settings(
        queue=os.environ["HYPER_QUEUE"],
        idle_timeout=float(os.environ.get("HYPER_IDLE_TIMEOUT", definition.idle_timeout_seconds)),
        lease_seconds=local.lease_seconds,
        heartbeat_seconds=local.heartbeat_seconds,
        chunk_size=definition.chunk_size,
        work_root=backend.home / "work",
        definition_env=dict(definition.environment),
        pid_file=backend.home / "workers" / f"{os.environ['HYPER_WORKER_ID']}.job",
        job_user=os.environ.get("HYPER_JOB_USER") or None,
        deliver=backend.logs.deliver,  # output files land in the submit directory when a run ends
        stager=LocalStager(),  # stage-in and stage-out on this machine
        assigns_gpus=bool(here.gpus),
        poll_max=LOCAL_FALLBACK_POLL_SECONDS,
    )
    return Agent(dispatcher, backend.queue, backend.logs, settings)


# Long poll of an AWS worker's claims (seconds, 0-20): an idle worker costs one ReceiveMessage
# per this many seconds. Keep it under the definition's idle timeout.
AWS_CLAIM_WAIT_SECONDS = 10


def _aws_worker(env: Mapping[str, str]):
    """A worker in a Batch container (or on an instance): AWS adapters on the main region's table and queues.

    From the environment (stacks/contract.worker_environment plus the Batch submit's overrides):
    HYPER_CONFIG, HYPER_DEFINITION, HYPER_REGION, HYPER_QUEUE, the shared HYPER_MAIN_REGION /
    HYPER_TABLE / HYPER_QUEUE_URLS / HYPER_LOG_GROUP_PREFIX; optionally AWS_BATCH_JOB_ID (the
    worker's id, else HYPER_WORKER_ID, else the host name), HYPER_WORK_ROOT (default /tmp/hyperbatch),
    HYPER_IDLE_TIMEOUT, HYPER_CLAIM_WAIT_SECONDS and HYPER_JOB_USER (run jobs as that user).
    Lease, heartbeat and the run cadence come from the settings, the same ones the reconciler judges runs by.
    Dispatcher and agent hold the stream-sent
    queue (hyperbatch.adapters.aws.stream.StreamSentQueue): what a finish or a recovery re-queues is sent
    by the release function from the table's stream, not by the worker.
    """
    config = configuration_from_environment(env)
    definition = config.definition(env["HYPER_DEFINITION"])
    config.pool(env["HYPER_QUEUE"])  # KeyError for a queue the configuration does not know
    worker = env.get("AWS_BATCH_JOB_ID") or env.get("HYPER_WORKER_ID") or socket.gethostname()
    # A worker with room for several jobs runs one agent a CPU, sharing the room (services/slots.py);
    # a worker on your own machine runs one job at a time, under the one name its record bears.
    size = Amount(max(1, math.floor(definition.vcpus)), definition.memory_mib << 20, definition.gpus)
    count = 1 if env.get("HYPER_REGION") == onprem.ONPREM else slots_of(size)
    if count == 1:
        return _aws_agent(env, config, worker)
    room = Room(size)
    agents = [_aws_agent(env, config, f"{worker}-{i}") for i in range(count)]
    for agent in agents:
        agent.room = room
    return Slots(agents)


def _aws_agent(env: Mapping[str, str], config, worker: str):
    """One agent of an AWS worker, with adapters of its own (a slot's acks are its own to flush)."""
    from hyperbatch.services.agent import Agent, Settings
    from hyperbatch.adapters.aws import from_environment, run_register
    from hyperbatch.adapters.aws.stream import StreamSentQueue
    from hyperbatch.services.dispatch import Dispatcher

    settings = config.settings
    definition = config.definition(env["HYPER_DEFINITION"])
    queue = env["HYPER_QUEUE"]  # the work queue of its pool: its queue's name, or QUEUE--DEFINITION
    wait = int(env.get("HYPER_CLAIM_WAIT_SECONDS", AWS_CLAIM_WAIT_SECONDS))
    backend = from_environment(env, queues=[q.name for q in config.queues],
                               retention_days=settings.job_retention_days, wait_seconds=wait)
    work_root = Path(env.get("HYPER_WORK_ROOT") or "/tmp/hyperbatch")
    (work_root / "work").mkdir(parents=True, exist_ok=True)
    # The worker writes the store; the work its changes make runnable is sent from the table's stream.
    queue_port = StreamSentQueue(backend.queue)
    # Runs longer than a third of a claim's lease are registered (hyperbatch.core.cadence): the reconciler watches them.
    dispatcher = Dispatcher(backend.store, queue_port, worker, env["HYPER_REGION"], settings.lease_seconds,
                            runs=run_register(env), cadence=settings.cadence())
    agent_settings = Settings(
        queue=queue,
        idle_timeout=float(env.get("HYPER_IDLE_TIMEOUT", definition.idle_timeout_seconds)),
        lease_seconds=settings.lease_seconds,
        heartbeat_seconds=settings.heartbeat_seconds,
        chunk_size=definition.chunk_size,
        work_root=work_root / "work",
        definition_env=dict(definition.environment),
        pid_file=work_root / f"{worker.replace('/', '_')}.job",
        job_user=env.get("HYPER_JOB_USER") or None,  # the worker image's `hyperjob`
        **_files_bucket(env, backend.logs),
    )
    return Agent(dispatcher, queue_port, backend.logs, agent_settings)


def _files_bucket(env: Mapping[str, str], logs) -> dict:
    """The agent's settings that reach the files bucket (hyperbatch.core.bucket), when the deployment
    has one: `stager`, the job's files between S3 and its directory; `deliver`, a run's output files
    kept under its job's prefix."""
    if not env.get("HYPER_FILES_BUCKET"):
        return {}
    from hyperbatch.adapters.aws import clients
    from hyperbatch.adapters.aws.files import OutputsToBucket, S3Transfers
    from hyperbatch.adapters.aws.staging import S3Stager

    transfers = S3Transfers(clients.client("s3", env["HYPER_MAIN_REGION"]), env["HYPER_FILES_BUCKET"])
    return {"stager": S3Stager(transfers), "deliver": OutputsToBucket(transfers, logs)}


def presence_from_environment(env: Mapping[str, str]):
    """A worker on your own machine (HYPER_REGION=onprem, started by `hyper worker start`) keeps a
    record the scaler and pbsnodes read (hyperbatch.services.presence); any other worker, None.

    From the environment: HYPER_WORKER_ID (its name), HYPER_QUEUE, HYPER_DEFINITION, and what it
    offers, HYPER_NCPUS, HYPER_MEM_MIB and HYPER_NGPUS.
    """
    if env.get("HYPER_REGION") != onprem.ONPREM:
        return None
    from hyperbatch.adapters.aws import clients
    from hyperbatch.adapters.aws.onprem import TableWorkerRegistry
    from hyperbatch.services.presence import Presence

    registry = TableWorkerRegistry(clients.client("dynamodb", env["HYPER_MAIN_REGION"]), env["HYPER_TABLE"])
    record = {"name": onprem.check_name(env["HYPER_WORKER_ID"]), "queue": env["HYPER_QUEUE"],
              "definition": env["HYPER_DEFINITION"], "host": socket.gethostname(), "instance": uuid.uuid4().hex,
              "ncpus": int(env["HYPER_NCPUS"]), "mem_mib": int(env["HYPER_MEM_MIB"]),
              "ngpus": int(env.get("HYPER_NGPUS") or 0)}
    return Presence(registry, record)


def main() -> int:
    logs.configure()
    try:
        agent = worker_from_environment()
        presence = presence_from_environment(os.environ) or contextlib.nullcontext()
    except (KeyError, ValueError) as exc:
        log.error("misconfigured: %s", exc)
        return EXIT_MISCONFIGURED
    try:
        with presence:
            return agent.serve()
    except Conflict as exc:  # another live worker has this name: running under it too would confuse both
        log.error("misconfigured: %s", exc)
        return EXIT_MISCONFIGURED
    except StorageFull as exc:  # the store cannot record anything: say so, and let start.sh try again later
        log.error("stopping: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())

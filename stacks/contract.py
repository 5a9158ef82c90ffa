"""The environment the stacks hand to Lambda functions and workers.

This is the contract between the infrastructure and the runtime (`lambdas/`,
`hyperbatch/`): variable names and the shape of their values are defined
here once, for both the control plane and every compute region.
"""

from __future__ import annotations

import json

from aws_cdk import Aws

from hyperbatch.config import FILES, Configuration, ConfigError

from stacks import naming

# The unprivileged user a worker runs its jobs as (HYPER_JOB_USER), apart from the agent's own user:
# a job can then read neither the agent's environment and files nor, on EC2, the instance metadata
# (credentials of the instance role). worker_image/Dockerfile and the EC2 fleet's boot script create it.
JOB_USER = "hyperjob"
# Instance metadata (IMDSv2 only) answers the instance itself and nothing one network hop further:
# containers (bridge networking) cannot reach it, so they cannot take the instance role's credentials.
METADATA_HOP_LIMIT = 1

# Lambda rejects a function whose environment (names + values) exceeds 4 KB.
LAMBDA_ENVIRONMENT_LIMIT = 4096
_SAMPLE_ACCOUNT = "123456789012"  # same length as any account id, for size estimates


def config_json(config: Configuration) -> str:
    """The validated configuration as compact JSON: {kind: entries, "settings": {...}}.

    Fields left at their defaults are left out, as in the files themselves: the reader validates
    with the same models (hyperbatch.config.configuration_from_environment), which put them back, and Lambda's 4 KB for the
    whole environment goes further.
    """
    data = {
        kind: (
            config.settings.model_dump(mode="json", exclude_defaults=True)
            if kind == "settings"
            else [item.model_dump(mode="json", exclude_defaults=True) | {"name": item.name}
                  for item in getattr(config, kind)]
        )
        for kind in FILES
    }
    return _compact(data)


def shared_environment(config: Configuration, account: str = Aws.ACCOUNT_ID) -> dict[str, str]:
    """What every Lambda function and every worker needs to reach the main region."""
    deployment, main = config.settings.stack_name, config.settings.main_region
    return {
        "HYPER_STACK": deployment,
        "HYPER_MAIN_REGION": main,
        "HYPER_TABLE": naming.table(deployment),
        "HYPER_QUEUE_URLS": _compact(
            {p.name: naming.queue_url(main, naming.queue(deployment, p.name), account) for p in config.pools}
        ),
        "HYPER_LOG_GROUP_PREFIX": naming.log_group_prefix(deployment),
        "HYPER_FILES_BUCKET": naming.files_bucket(deployment, main, account),
        # The agent reads its lease, heartbeat, idle timeout and chunk size from it too.
        "HYPER_CONFIG": config_json(config),
    }


def lambda_environment(config: Configuration, compute: dict, account: str = Aws.ACCOUNT_ID) -> dict[str, str]:
    """Environment of every control-plane function.

    `compute` describes the Batch (or Auto Scaling) targets per region, see
    `compute_targets`; the scaler submits workers to them.
    """
    deployment, main = config.settings.stack_name, config.settings.main_region
    return shared_environment(config, account) | {
        "HYPER_DLQ_URLS": _compact(
            {
                p.name: naming.queue_url(main, naming.dead_letter_queue(deployment, p.name), account)
                for p in config.pools
            }
        ),
        "HYPER_ADMINS": _compact(list(config.settings.admins)),
        "HYPER_COMPUTE": _compact(compute),
        "POWERTOOLS_SERVICE_NAME": "hyperbatch",
        "POWERTOOLS_METRICS_NAMESPACE": "HyperBatch",
    }


def reconciler_environment(config: Configuration, compute: dict, account: str = Aws.ACCOUNT_ID) -> dict[str, str]:
    """Environment of the reconciler function: the functions' own, less the compute targets (it starts
    no workers), plus HYPER_STREAM_FAILURES_URL, the queue where the release function's stream mapping
    parks the batches it gave up on (the reconciler handles them again)."""
    deployment, main = config.settings.stack_name, config.settings.main_region
    env = lambda_environment(config, compute, account)
    del env["HYPER_COMPUTE"]
    env["HYPER_STREAM_FAILURES_URL"] = naming.queue_url(main, naming.stream_failures_queue(deployment), account)
    return env


def worker_environment(config: Configuration, region: str, definition: str) -> dict[str, str]:
    """Environment of a worker container started from a definition's job definition."""
    extra = config.definition(definition).environment
    return dict(extra) | shared_environment(config) | {"HYPER_DEFINITION": definition, "HYPER_REGION": region}


def check_lambda_environment_size(config: Configuration, compute: dict) -> None:
    """Fail at synth, not at deploy, when a function's environment would exceed Lambda's 4 KB."""
    envs = (lambda_environment(config, compute, account=_SAMPLE_ACCOUNT),
            reconciler_environment(config, compute, account=_SAMPLE_ACCOUNT))
    size, env = max(
        ((sum(len(key) + len(value.replace(Aws.URL_SUFFIX, "amazonaws.com")) for key, value in env.items()), env)
         for env in envs),
        key=lambda sized: sized[0],
    )
    if size > LAMBDA_ENVIRONMENT_LIMIT:
        raise ConfigError(
            f"configurations: the Lambda environment would be {size} bytes, over Lambda's "
            f"{LAMBDA_ENVIRONMENT_LIMIT}-byte limit (HYPER_CONFIG alone is {len(env['HYPER_CONFIG'])}); "
            "use fewer or shorter entries"
        )


def _compact(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)

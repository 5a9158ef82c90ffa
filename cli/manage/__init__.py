"""`hyper` management commands: hosts, the configured resources, and deploy.

    hyper hosts list | select NAME | remove NAME | import-deployment [...]
    hyper regions|clusters|queues|definitions|images list|add|update|delete [...]
    hyper deploy [--dry-run | --diff] [--config DIR] [--profile P]
    hyper worker start --queue Q [--definition D] [--name NAME] [--cpus N --mem M --gpus G]

`hyperbatch.cli.hyper` calls `register(hyper)`. The commands live in `hosts`,
`resources`, `deploy` and `worker`; `common` holds what they share.
"""

from __future__ import annotations

import click

from hyperbatch.cli.manage import deploy, hosts, resources, worker


def register(group: click.Group) -> None:
    """Add the hosts, resource, deploy and worker commands to the `hyper` group."""
    group.add_command(hosts.hosts)
    for command in resources.groups():
        group.add_command(command)
    group.add_command(deploy.deploy)
    group.add_command(worker.worker)

"""`hyper` management commands: hosts, the configured resources, and deploy.

    hyper hosts list | select NAME | remove NAME | import-deployment [...]
    hyper regions|clusters|queues|definitions|images list|add|update|delete [...]
    hyper deploy [--dry-run | --diff] [--config DIR] [--profile P]

`hyperbatch.cli.hyper` calls `register(hyper)`. The commands live in `hosts`,
`resources` and `deploy`; `common` holds what they share.
"""

from __future__ import annotations

import click

from hyperbatch.cli.manage import deploy, hosts, resources


def register(group: click.Group) -> None:
    """Add the hosts, resource and deploy commands to the `hyper` group."""
    group.add_command(hosts.hosts)
    for command in resources.groups():
        group.add_command(command)
    group.add_command(deploy.deploy)

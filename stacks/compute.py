"""A compute region's stack: network, Batch (or EC2 fleets), worker roles and images.

Nothing here references the control plane's resources: their names and ARNs
come from `naming`, since CloudFormation cannot reference across regions.
"""

from __future__ import annotations

from aws_cdk import Stack
from constructs import Construct

from hyperbatch.config import Configuration

from stacks.batch import BatchCompute
from stacks.compute_plan import plan_region
from stacks.network import WorkerNetwork
from stacks.worker_fleet import WorkerFleet
from stacks.worker_roles import WorkerRoles


class ComputeStack(Stack):
    def __init__(self, scope: Construct, id: str, *, config: Configuration, region: str, **props) -> None:
        super().__init__(scope, id, **props)
        plan = plan_region(config, region)
        self.network = WorkerNetwork(self, "Network", config=config, region=config.region(region))
        self.roles = WorkerRoles(self, "Workers", config=config)
        self.batch = BatchCompute(self, "Batch", config=config, plan=plan, network=self.network, roles=self.roles)
        self.fleets = {
            c.cluster.name: WorkerFleet(
                self, f"Fleet-{c.cluster.name}", config=config, region=region, plan=c, network=self.network
            )
            for c in plan.clusters
            if c.platform == "launch_template"
        }

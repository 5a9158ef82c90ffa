"""CDK constructs and stacks for HyperBatch; `build_app` assembles the deployment."""

from stacks.app import build_app

__all__ = ["build_app"]

"""Which parts of the repository go into each deployable artifact.

Assets are allow-lists over the repository root: everything is excluded, then
the named top-level entries are let back in. A new top-level directory (a
virtualenv, build output, a secret) therefore never ships by accident.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Lambda code: the scheduler and its thin entry modules. Third-party packages
# (pydantic, powertools) come from the Powertools layer.
LAMBDA_ENTRIES = ("hyperbatch", "lambdas")

# What a worker needs: pinned requirements, the package, worker_image/ (Dockerfile, start.sh).
# The image build context is the repository root; worker_image/Dockerfile.dockerignore narrows it further.
WORKER_ENTRIES = ("hyperbatch", "worker_image", "requirements.txt")


def only(*entries: str) -> list[str]:
    """Glob exclude patterns that keep just `entries` (top-level names) and drop caches."""
    keep = [pattern for entry in entries for pattern in (f"!{entry}", f"!{entry}/**")]
    return ["*", ".*", *keep, "**/__pycache__", "**/*.pyc", "**/.pytest_cache"]

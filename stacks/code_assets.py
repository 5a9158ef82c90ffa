"""Which parts of the repository go into each deployable artifact, and the Lambda dependencies.

Assets are allow-lists over the repository root: everything is excluded, then
the named top-level entries are let back in. A new top-level directory (a
virtualenv, build output, a secret) therefore never ships by accident.

The Lambda functions' third-party packages are requirements.txt exactly (the
same pins as the worker image), installed at synth by pip for the functions'
Python version and CPU architecture from binary wheels (no Docker), zipped as a
layer. The zip is cached by the hash of requirements.txt, architecture and
Python version, so a synth after the first reuses it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = PROJECT_ROOT / "requirements.txt"

# Lambda code: the scheduler and its thin entry modules. Third-party packages
# (pydantic, powertools, boto3) come from the dependency layer (lambda_dependencies).
LAMBDA_ENTRIES = ("hyperbatch", "lambdas")

# What a worker needs: pinned requirements, the package, worker_image/ (Dockerfile, start.sh).
# The image build context is the repository root; worker_image/Dockerfile.dockerignore narrows it further.
WORKER_ENTRIES = ("hyperbatch", "worker_image", "requirements.txt")

# pip's platform tag per Lambda architecture (manylinux2014 is what Lambda's Amazon Linux runs).
PIP_PLATFORMS = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}
BUILD_RECIPE = "1"  # part of the cache key: change it when the build below changes
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same pins give the same zip


class DependencyBuildError(RuntimeError):
    """The Lambda dependencies could not be built; the message is one line, fit for the user."""


def only(*entries: str) -> list[str]:
    """Glob exclude patterns that keep just `entries` (top-level names) and drop caches."""
    keep = [pattern for entry in entries for pattern in (f"!{entry}", f"!{entry}/**")]
    return ["*", ".*", *keep, "**/__pycache__", "**/*.pyc", "**/.pytest_cache"]


def cache_dir() -> Path:
    """$HYPERBATCH_CACHE_DIR, else $XDG_CACHE_HOME/hyperbatch, else ~/.cache/hyperbatch."""
    if explicit := os.environ.get("HYPERBATCH_CACHE_DIR"):
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hyperbatch"


def dependencies_zip(architecture: str, python_version: str) -> Path:
    """Where the layer zip for these pins, architecture and Python version is cached (built or not)."""
    key = hashlib.sha256(
        b"\0".join(
            (BUILD_RECIPE.encode(), REQUIREMENTS.read_bytes(), architecture.encode(), python_version.encode())
        )
    ).hexdigest()[:16]
    return cache_dir() / "lambda-dependencies" / f"python{python_version}-{architecture}-{key}.zip"


def lambda_dependencies(architecture: str, python_version: str) -> Path:
    """A Lambda layer zip (python/...) of requirements.txt for `architecture` ("arm64" or "x86_64")
    and `python_version` ("3.12"), built with pip on first use and reused after.

    Raises DependencyBuildError when pip fails (no connection to the package index, a pin
    with no wheel for the platform).
    """
    target = dependencies_zip(architecture, python_version)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Several synths at once (test workers, a CLI beside an editor) build it once between them.
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            _build(target, architecture, python_version)
    return target


def _build(target: Path, architecture: str, python_version: str) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as work:
        site = Path(work) / "python"
        command = [
            sys.executable, "-m", "pip", "install",
            "--quiet", "--disable-pip-version-check", "--no-input", "--no-compile",
            "--only-binary=:all:", "--platform", PIP_PLATFORMS[architecture],
            "--implementation", "cp", "--python-version", python_version,
            "--target", str(site), "--requirement", str(REQUIREMENTS),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise DependencyBuildError(
                f"cannot build the Lambda dependencies: pip could not install {REQUIREMENTS.name} for "
                f"Python {python_version} on linux/{architecture} (can it reach the package index?): "
                f"{_pip_reason(result.stderr or result.stdout)}"
            )
        shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts: nothing runs them in Lambda
        partial = Path(work) / "layer.zip"
        _zip(Path(work), partial)
        os.replace(partial, target)


def _zip(root: Path, archive: Path) -> None:
    """Zip `root`'s python/ tree in a fixed order with fixed timestamps."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in sorted((root / "python").rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts:
                continue
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=_ZIP_TIME)
            mode = 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(info, path.read_bytes())


def _pip_reason(output: str) -> str:
    """pip's own error line (the last "ERROR: ..."), else its last line, on one line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    reason = (errors or lines or ["no output"])[-1]
    return reason.removeprefix("ERROR: ")

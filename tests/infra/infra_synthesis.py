"""Synthesis for the infrastructure tests: build once, read the cloud assembly back.

Tests read the templates written to the assembly, which are exactly what
`cdk deploy` would upload. Under pytest-xdist every worker runs session
fixtures itself, so `shared_dir` lets the first worker build and the others
wait for it and read the same files.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aws_cdk.assertions import Template

from hyperbatch.config import Configuration, load
from stacks import build_app, naming

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configurations"
SYNTH_ERROR = "synth-error.txt"  # written next to the templates when validation failed


@dataclass
class Synth:
    config: Configuration
    outdir: Path
    synth_error: str | None
    templates: dict[str, dict] = field(default_factory=dict)  # stack name -> template JSON

    def template(self, stack_name: str) -> Template:
        return Template.from_json(self.templates[stack_name])

    @property
    def control_name(self) -> str:
        return naming.control_stack(self.config.settings.stack_name)

    def compute_name(self, region: str) -> str:
        return naming.compute_stack(self.config.settings.stack_name, region)

    def validation_report(self) -> dict:
        return json.loads((self.outdir / "validation-report.json").read_text())


def synthesize(config_dir: Path, outdir: Path, context: dict | None = None) -> None:
    """Synthesize with build_app. A failed validation (cdk-nag) is recorded, not raised,
    so the nag test reports it and the other tests still see the templates."""
    app = build_app(config_dir, outdir=str(outdir), context=context)
    try:
        app.synth()
    except RuntimeError as exc:  # jsii surfaces ValidationFailed as RuntimeError
        (outdir / SYNTH_ERROR).write_text(str(exc))


def read_synthesis(config_dir: Path, outdir: Path) -> Synth:
    error = outdir / SYNTH_ERROR
    result = Synth(config=load(config_dir), outdir=outdir, synth_error=error.read_text() if error.exists() else None)
    for path in outdir.glob("*.template.json"):
        result.templates[path.name.removesuffix(".template.json")] = json.loads(path.read_text())
    return result


@contextmanager
def shared_dir(tmp_path_factory, name: str) -> Iterator[tuple[Path, bool]]:
    """(directory, fresh): one directory per test run; `fresh` only for whoever must fill it."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield tmp_path_factory.mktemp(name), True
        return
    root = tmp_path_factory.getbasetemp().parent  # common to all workers of this run
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the others wait here until the first has built
        directory, done = root / name, root / name / ".done"
        fresh = not done.exists()
        directory.mkdir(exist_ok=True)
        yield directory, fresh
        done.touch()


def start_app_py(config_dir: Path, outdir: Path) -> subprocess.Popen:
    """`python app.py` as the CDK CLI runs it (no credentials, outdir from CDK_OUTDIR)."""
    env = dict(os.environ, CDK_OUTDIR=str(outdir), HYPERBATCH_CONFIG=str(config_dir))
    env.pop("CDK_DEFAULT_ACCOUNT", None)
    return subprocess.Popen(
        [sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish_app_py(process: subprocess.Popen, result_file: Path) -> None:
    _, stderr = process.communicate(timeout=300)
    result_file.write_text(json.dumps({"returncode": process.returncode, "stderr": stderr}))

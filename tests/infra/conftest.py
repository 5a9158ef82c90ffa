"""One synthesis of the example configuration, shared by every infrastructure test.

The app is built once per test run (cdk-nag included) into a temporary cloud
assembly; `python app.py` runs beside it, as the CDK CLI would run it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk.assertions import Template  # noqa: E402
from infra_synthesis import (  # noqa: E402
    EXAMPLE,
    Synth,
    finish_app_py,
    read_synthesis,
    shared_dir,
    start_app_py,
    synthesize,
)


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.infra)


@pytest.fixture(scope="session")
def example_run(tmp_path_factory) -> Path:
    """Directory with the in-process assembly (cdk-out), app.py's (app-py-out) and its result."""
    with shared_dir(tmp_path_factory, "example") as (root, fresh):
        if fresh:
            app_py = start_app_py(EXAMPLE, root / "app-py-out")  # runs while we synthesize
            synthesize(EXAMPLE, root / "cdk-out")
            finish_app_py(app_py, root / "app-py.json")
    return root


@pytest.fixture(scope="session")
def synth(example_run) -> Synth:
    return read_synthesis(EXAMPLE, example_run / "cdk-out")


@pytest.fixture(scope="session")
def app_py(example_run) -> tuple[dict, Path]:
    """(`python app.py` exit status and stderr, its output directory)."""
    return json.loads((example_run / "app-py.json").read_text()), example_run / "app-py-out"


@pytest.fixture(scope="session")
def control(synth) -> Template:
    return synth.template(synth.control_name)


@pytest.fixture(scope="session")
def computes(synth) -> dict[str, Template]:
    return {region: synth.template(synth.compute_name(region)) for region in synth.config.compute_regions}

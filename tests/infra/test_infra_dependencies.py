"""The Lambda functions' third-party packages: requirements.txt as pinned, built by pip at synth
for the functions' architecture, cached, and no public layer."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from infra_synthesis import EXAMPLE, REPO
from infra_templates import flat, resources

from stacks import code_assets, functions

HANDLERS = ("lambdas.api.handler", "lambdas.release.handler", "lambdas.scaler.handler", "lambdas.reconciler.handler")


def pins() -> dict[str, str]:
    """requirements.txt as {normalized name: version}."""
    found = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def layer_zip(synth) -> Path:
    """The staged asset of the control plane's one layer."""
    template = synth.templates[synth.control_name]
    (layer,) = resources(template, "AWS::Lambda::LayerVersion").values()
    asset_hash = flat(layer["Properties"]["Content"]["S3Key"]).split(".")[0]
    assets = json.loads((synth.outdir / f"{synth.control_name}.assets.json").read_text())["files"]
    return synth.outdir / assets[asset_hash]["source"]["path"]


def test_functions_run_on_the_layer_of_pinned_dependencies_and_no_public_layer(synth):
    template = synth.templates[synth.control_name]
    (layer_id, layer), = resources(template, "AWS::Lambda::LayerVersion").items()
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    ours = [f["Properties"] for f in resources(template, "AWS::Lambda::Function").values()
            if f["Properties"].get("Handler") in HANDLERS]
    assert len(ours) == len(HANDLERS)
    for props in ours:
        assert props["Architectures"] == ["arm64"] and props["Runtime"] == "python3.12"
        assert props["Layers"] == [{"Ref": layer_id}]
    # No layer from outside this deployment, in any template.
    layers = [json.dumps(f["Properties"].get("Layers", [])) for t in synth.templates.values()
              for f in resources(t, "AWS::Lambda::Function").values()]
    assert not [text for text in layers if "arn:" in text]


def test_the_layer_holds_exactly_the_pins_built_for_arm64_python_312(synth):
    with zipfile.ZipFile(layer_zip(synth)) as archive:
        names = archive.namelist()
    assert names and all(name.startswith("python/") for name in names)  # where Lambda looks in a layer
    installed = {}
    for name in names:
        match = re.fullmatch(r"python/([^/]+)-([^-/]+)\.dist-info/METADATA", name)
        if match:
            installed[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    assert installed == pins()
    binaries = [n for n in names if n.endswith(".so")]
    assert binaries and all("cpython-312-aarch64-linux-gnu" in n for n in binaries), binaries
    assert not [n for n in names if "__pycache__" in n or n.startswith("python/bin/")]


def test_a_built_layer_is_reused_and_pins_or_architecture_make_another(synth, monkeypatch, tmp_path):
    cached = code_assets.dependencies_zip("arm64", functions.PYTHON_VERSION)
    assert cached.read_bytes() == layer_zip(synth).read_bytes()

    def no_pip(*args, **kwargs):
        raise AssertionError("pip ran although the layer was built")

    monkeypatch.setattr(code_assets.subprocess, "run", no_pip)
    assert code_assets.lambda_dependencies("arm64", functions.PYTHON_VERSION) == cached
    assert code_assets.dependencies_zip("x86_64", functions.PYTHON_VERSION) != cached
    assert code_assets.dependencies_zip("arm64", "3.13") != cached
    changed = tmp_path / "requirements.txt"
    changed.write_text(code_assets.REQUIREMENTS.read_text().replace("boto3==", "boto3==0.0.0+"))
    monkeypatch.setattr(code_assets, "REQUIREMENTS", changed)
    assert code_assets.dependencies_zip("arm64", functions.PYTHON_VERSION) != cached


def test_synth_stops_with_one_line_when_pip_cannot_reach_the_package_index(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env |= {
        "HYPERBATCH_CACHE_DIR": str(tmp_path / "cache"),  # nothing built yet
        "PIP_CONFIG_FILE": os.devnull,  # no mirror or local wheels from this machine's pip configuration
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # nothing listens there
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
    }
    process = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO, capture_output=True, text=True, timeout=300,
        env=env | {"CDK_OUTDIR": str(tmp_path / "out"), "HYPERBATCH_CONFIG": str(EXAMPLE)},
    )
    assert process.returncode == 1
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1, process.stderr[-3000:]
    assert lines[0].startswith("synthesis failed: cannot build the Lambda dependencies: pip could not install "
                               "requirements.txt for Python 3.12 on linux/arm64 (can it reach the package index?)")
    assert not list((tmp_path / "cache").rglob("*.zip"))  # nothing half-built is left to be reused
    assert not (tmp_path / "out" / "manifest.json").exists()

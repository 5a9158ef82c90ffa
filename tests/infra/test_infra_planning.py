"""Decisions the stacks make from the configuration, checked without synthesizing."""

from __future__ import annotations

import json
import shutil

import pytest
from infra_synthesis import EXAMPLE

from hyperbatch.config import Cluster, ConfigError, load
from stacks import build_app, compute_plan, naming
from stacks.app import PLACEHOLDER_ACCOUNT, account_for


@pytest.mark.parametrize(
    ("types", "arch"),
    [
        (["c6g", "m6g"], "arm64"),
        (["c7gn.large", "r6gd"], "arm64"),
        (["default_arm64"], "arm64"),
        (["optimal"], "x86_64"),
        (["m6i", "c5.xlarge", "g5.xlarge"], "x86_64"),
    ],
)
def test_cluster_architecture_follows_its_instance_types(types, arch):
    assert compute_plan.architecture(Cluster(name="c", type="EC2", instance_types=types)) == arch


@pytest.mark.parametrize(
    ("kind", "types", "gpus"),
    [
        ("EC2", ["g5", "c6i"], True),
        ("SPOT", ["p4d.24xlarge"], True),
        ("SPOT", ["g5g.xlarge"], True),
        ("SPOT", ["c6g", "m6g", "m7gd.large"], False),
        ("EC2", ["optimal"], False),
        ("LAUNCH_TEMPLATE", ["g5.xlarge"], False),  # not a Batch environment: no AMI to choose
    ],
)
def test_gpu_instance_types_are_recognised(kind, types, gpus):
    assert compute_plan.has_gpus(Cluster(name="c", type=kind, instance_types=types)) is gpus


def test_mixed_architectures_in_one_cluster_are_refused():
    with pytest.raises(ConfigError, match=r"clusters.json: entry 'mixed' field 'instance_types'"):
        compute_plan.architecture(Cluster(name="mixed", type="SPOT", instance_types=["c6g", "c6i"]))


def test_names_longer_than_aws_allows_are_refused_with_the_field():
    with pytest.raises(ConfigError, match=r"settings.json: field 'stack_name'"):
        naming.queue("A" * 75, "queue")


def test_account_comes_from_settings_then_cli_credentials_then_placeholder(monkeypatch):
    config = load(EXAMPLE)
    monkeypatch.delenv("CDK_DEFAULT_ACCOUNT", raising=False)
    assert account_for(config) == PLACEHOLDER_ACCOUNT
    monkeypatch.setenv("CDK_DEFAULT_ACCOUNT", "210987654321")
    assert account_for(config) == "210987654321"
    pinned = config.model_copy(update={"settings": config.settings.model_copy(update={"account": "111122223333"})})
    assert account_for(pinned) == "111122223333"


def edited_copy(tmp_path, kind: str, edit) -> str:
    config_dir = tmp_path / "configurations"
    shutil.copytree(EXAMPLE, config_dir)
    path = config_dir / f"{kind}.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    return str(config_dir)


def test_problems_found_while_building_stacks_are_configuration_errors(tmp_path):
    config_dir = edited_copy(tmp_path, "settings", lambda s: s | {"log_retention_days": 45})
    with pytest.raises(ConfigError, match=r"settings.json: field 'log_retention_days': 45"):
        build_app(config_dir, outdir=str(tmp_path / "out"))


def test_a_launch_template_cluster_needs_instance_sizes(tmp_path):
    fleet = {"name": "fleet", "type": "LAUNCH_TEMPLATE", "instance_types": ["c6g"]}
    config_dir = edited_copy(tmp_path, "clusters", lambda clusters: clusters + [fleet])
    with pytest.raises(ConfigError, match=r"clusters.json: entry 'fleet' field 'instance_types'.*'c6g'"):
        build_app(config_dir, outdir=str(tmp_path / "out"))

"""`hyper regions|clusters|queues|definitions|images`: validated edits of configurations/*.json."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from hyperbatch import config

REAL, INPROCESS = "console script", "in-process"
REFUSED = [
    # (how to run it, command line, what the one-line reason must name). The cases users meet most run
    # the real console script; the rest run in-process through the same error handling.
    (REAL, ["queues", "add", "gpu", "--cluster", "default", "--definition", "standard",
            "--weight", "us-east-1=1", "--weight", "mars-west-9=2"], "mars-west-9"),
    (INPROCESS, ["queues", "add", "gpu", "--cluster", "default", "--definition", "standard",
                 "--weight", "us-east-1=1", "--weight", "ap-south-1=2"], "'ap-south-1' is not a configured compute region"),
    (REAL, ["queues", "add", "x", "--cluster", "nope", "--definition", "standard"], "no cluster named 'nope'"),
    (REAL, ["clusters", "delete", "default"], "entry 'batch' field 'cluster'"),
    (INPROCESS, ["regions", "delete", "us-east-1"], "main_region"),
    (REAL, ["queues", "add", "batch", "--cluster", "default", "--definition", "standard"], "already exists"),
    (REAL, ["queues", "update", "nope", "--priority", "3"], "no queue named nope"),
    (INPROCESS, ["queues", "update", "batch"], "nothing to change"),
    (INPROCESS, ["queues", "update", "batch", "--unset", "bogus"], "no such field"),
    (INPROCESS, ["queues", "update", "batch", "--weight", "us-east-1"], "REGION=WEIGHT"),
    (INPROCESS, ["queues", "update", "batch", "--priority", "5000"], "priority"),
    (INPROCESS, ["clusters", "update", "default", "--type", "EC2"], "spot_bid_percentage"),
    (INPROCESS, ["definitions", "delete", "nope"], "no definition named nope"),
    (INPROCESS, ["images", "delete", "worker"], "no image named 'worker'"),
    (REAL, ["queues", "add", "x"], "needs --cluster (configured: default); not prompting"),
    (INPROCESS, ["queues", "update", "batch", "--definitions", "huge"], "no definition named 'huge'"),
    (INPROCESS, ["definitions", "update", "standard", "--gpus", "1"],
     "'standard' needs GPUs, but cluster 'default' (SPOT, c6i, m6i, c5, m5) has none"),
]


@pytest.mark.parametrize(("how", "args", "reason"), REFUSED, ids=[" ".join(a[:3]) for _, a, _ in REFUSED])
def test_refused_change_is_one_line_exit_2_and_changes_no_byte(env, call, how, args, reason):
    before = env.snapshot()
    result = env.run(*args) if how == REAL else call(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("hyper: "), result.stderr
    assert reason in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert env.snapshot() == before


def test_add_update_delete_round_trip(env, call):
    steps = [
        ["queues", "add", "gpu", "--cluster", "default", "--definition", "standard",
         "--weight", "us-east-1=1", "--weight", "us-west-2=2", "--priority", "7"],
        ["clusters", "add", "cpu", "--type", "EC2", "--instance-type", "m5", "--instance-type", "c5",
         "--max-vcpus", "64", "--region", "us-west-2"],
        ["queues", "update", "gpu", "--cluster", "cpu", "--max-attempts", "5"],
        ["definitions", "add", "big", "--vcpus", "4", "--memory-mib", "8192", "--env", "A=1", "--env", "B=x=y"],
        ["regions", "update", "eu-west-1", "--vpc-id", "vpc-0abc", "--vpc-subnet-type", "private"],
        ["images", "add", "gpu-image", "--directory", "worker_image", "--build-arg", "CUDA=12"],
        ["queues", "add", "spare", "--cluster", "default", "--definition", "big", "--weight", "auto"],
        ["queues", "delete", "spare"],
    ]
    for number, args in enumerate(steps):
        result = env.run(*args) if number == 0 else call(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert "hyper deploy" in result.stdout and "hyper local down && hyper local up" in result.stdout
    cfg = config.load(env.config)
    gpu = cfg.queue("gpu")
    assert (gpu.cluster, gpu.priority, gpu.max_attempts, gpu.region_weights) == (
        "cpu", 7, 5, {"us-east-1": 1, "us-west-2": 2})
    cpu = cfg.cluster("cpu")
    assert (cpu.type, cpu.instance_types, cpu.max_vcpus, cpu.regions) == ("EC2", ["m5", "c5"], 64, ["us-west-2"])
    assert cfg.definition("big").environment == {"A": "1", "B": "x=y"}
    vpc = cfg.region("eu-west-1").vpc
    assert (vpc.vpc_id, vpc.cidr, vpc.subnet_type) == ("vpc-0abc", None, "private")  # --vpc-id drops the cidr
    assert [q.name for q in cfg.queues] == ["batch", "west", "gpu"]
    assert {i.name: i.build_args for i in cfg.images}["gpu-image"] == {"CUDA": "12"}


def test_update_unset_restores_the_default(env, call):
    result = call("clusters", "update", "default", "--type", "EC2", "--unset", "spot_bid_percentage",
                     "--unset", "allocation_strategy")
    assert result.returncode == 0, result.stderr
    entry = json.loads((env.config / "clusters.json").read_text())[0]
    assert entry["type"] == "EC2" and "spot_bid_percentage" not in entry and "allocation_strategy" not in entry


def test_only_the_changed_file_is_written(env, call):
    before = env.snapshot()
    assert call("images", "add", "extra").returncode == 0
    after = env.snapshot()
    assert {name for name in before if before[name] != after[name]} == {"images.json"}


def test_list_shows_the_entries(env):
    result = env.run("queues", "list")
    assert result.returncode == 0, result.stderr
    header, *rows = [line.split() for line in result.stdout.splitlines() if line.strip() and "─" not in line]
    assert header == ["name", "cluster", "definition", "definitions", "priority", "region_weights", "max_attempts"]
    assert rows[0] == ["batch", "default", "standard", "-", "10", "-", "1"]  # a non-zero exit is final by default
    assert rows[1][0] == "west" and "us-west-2=3," in rows[1]


def test_broken_configuration_directory_is_one_line(env, call):
    (env.config / "queues.json").write_text("[{")
    result = call("queues", "list")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "queues.json: not valid JSON" in result.stderr
    result = call("regions", "list", "--config", str(env.config / "missing"))
    assert result.returncode == 2 and "no configuration directory" in result.stderr


def test_missing_required_values_are_prompted_on_a_terminal(inprocess, env, monkeypatch):
    monkeypatch.setattr("hyperbatch.cli.manage.resources.interactive", lambda: True)
    result = CliRunner().invoke(inprocess, ["queues", "add", "gpu", "--priority", "3"], input="\n\n")
    assert result.exit_code == 0, result.output
    assert "cluster" in result.output and "[default]" in result.output  # offered the configured one as default
    gpu = config.load(env.config).queue("gpu")
    assert (gpu.cluster, gpu.definition, gpu.priority) == ("default", "standard", 3)


def test_list_prints_values_verbatim(env, call):
    assert call("images", "add", "x", "--build-arg", "A=[red]hi[/red]").returncode == 0
    assert "A=[red]hi[/red]" in call("images", "list").stdout  # a table cell is text, never rich markup


def test_adding_a_region_records_its_zones_in_cdk_json_so_synth_needs_no_credentials(env, call):
    import shutil

    from tests.manage.conftest import ROOT

    cdk_json = env.config.parent / "cdk.json"
    shutil.copy(ROOT / "cdk.json", cdk_json)
    before = json.loads(cdk_json.read_text())
    result = call("regions", "add", "ap-south-1", "--no-compute")
    assert result.returncode == 0, result.stderr
    assert "recorded ap-south-1's availability zones (ap-south-1a, ap-south-1b, ap-south-1c)" in result.stdout
    after = json.loads(cdk_json.read_text())
    key = "availability-zones:account=123456789012:region=ap-south-1"
    assert after["context"][key] == ["ap-south-1a", "ap-south-1b", "ap-south-1c"]
    assert {k: v for k, v in after["context"].items() if k != key} == before["context"]  # nothing else changed
    zone_keys = [k for k in after["context"] if k.startswith("availability-zones:")]
    assert zone_keys[-1] == key and list(after["context"]).index(key) == 3  # beside the other regions'
    # A region the built-in table does not know: one line saying what to add.
    result = call("regions", "add", "mx-central-1", "--no-compute")
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == (
        'for `cdk synth` without AWS credentials, add "availability-zones:account=123456789012:'
        'region=mx-central-1": [mx-central-1\'s zone names, e.g. "mx-central-1a"] to the context in cdk.json')


def test_synth_of_an_added_region_needs_no_credentials(env, call, tmp_path):
    """What the recorded zones are for: the new region's stack synthesizes with no AWS credentials."""
    import shutil
    import subprocess
    import sys

    from tests.manage.conftest import NO_AWS, ROOT

    project = env.config.parent
    shutil.copy(ROOT / "cdk.json", project / "cdk.json")
    assert call("regions", "add", "ap-south-1").returncode == 0  # a compute region: a stack of its own
    context = json.loads((project / "cdk.json").read_text())["context"]
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from stacks import build_app\n"
        f"app = build_app({str(env.config)!r}, outdir={str(tmp_path / 'out')!r}, context=json.loads(sys.argv[1]))\n"
        "app.synth()\n"
    )
    base = {k: v for k, v in env.vars.items() if not k.startswith("AWS_")}
    result = subprocess.run([sys.executable, "-c", script, json.dumps(context)], env={**base, **NO_AWS},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "HyperBatch-Compute-ap-south-1.template.json").is_file()
    # What the CDK CLI would look up in AWS (needing credentials) before synthesizing again: nothing.
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [m["key"] for m in manifest.get("missing", [])] == []

"""Configuration files: the example validates; every mistake names the file, the entry and the field."""

import json
import shutil
from pathlib import Path

import pytest

from hyperbatch import config

EXAMPLE = Path(__file__).resolve().parents[2] / "configurations"


@pytest.fixture
def conf(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "c")
    root = tmp_path / "c"

    def edit(kind, change):
        path = root / f"{kind}.json"
        path.write_text(json.dumps(change(json.loads(path.read_text()))))
        return root

    return edit


def test_the_example_is_one_main_and_two_hub_regions():
    c = config.load(EXAMPLE)
    assert c.settings.main_region == "us-east-1"
    assert c.hub_regions == ["us-west-2", "eu-west-1"]
    assert len(c.clusters) == 1 and len(c.queues) == 2 and len(c.definitions) == 1
    assert c.weights(c.queue("west")) == {"us-east-1": 1, "us-west-2": 3, "eu-west-1": 0}
    assert c.definition("standard").jobs_to_workers_ratio >= 1


@pytest.mark.parametrize("kind, change, message", [
    ("queues", lambda q: [q[0], {**q[1], "cluster": "nope"}],
     "queues.json: entry 'west' field 'cluster': no cluster named 'nope'"),
    ("queues", lambda q: [q[0], {**q[1], "region_weights": {"ap-south-1": 1}}],
     "queues.json: entry 'west' field 'region_weights': 'ap-south-1' is not a configured compute region"),
    ("queues", lambda q: [q[0], {**q[1], "region_weights": {"mars": 1}}],
     "queues.json: entry 'west' field 'region_weights': 'mars' is not an AWS region name"),
    ("definitions", lambda d: [{**d[0], "max_workers": 0}],
     "definitions.json: entry 'standard' field 'max_workers': Input should be greater than or equal to 1"),
    ("definitions", lambda d: [{**d[0], "colour": "red"}],
     "definitions.json: entry 'standard' field 'colour': Extra inputs are not permitted"),
    ("clusters", lambda c: [{**c[0], "type": "EC2"}],
     "clusters.json: entry 'default' field '(whole entry)': spot_bid_percentage applies only to a SPOT cluster"),
    ("settings", lambda s: {**s, "log_retention_days": 45},
     "settings.json: field 'log_retention_days': 45 is not a retention CloudWatch Logs accepts"),
    ("settings", lambda s: {**s, "main_region": "eu-central-1"},
     "settings.json: field 'main_region': 'eu-central-1' is not listed in regions.json"),
    ("regions", lambda r: [r[0], {**r[1], "vpc": {"cidr": "10.0.0.0/16", "subnet_type": "isolated"}}, r[2]],
     "regions.json: entry 'us-west-2' field 'vpc.subnet_type': isolated subnets reach only their own region"),
    ("regions", lambda r: [r[0], {**r[1], "vpc": {"cidr": "10.0.0.0/16", "vpc_id": "vpc-0abc"}}, r[2]],
     "give exactly one of cidr"),
    ("settings", lambda s: {**s, "heartbeat_seconds": 30, "lease_seconds": 60},
     "heartbeat_seconds (30) must be at most a third of lease_seconds (60)"),
    ("settings", lambda s: {**s, "local": {"lease_seconds": 2, "heartbeat_seconds": 1}},
     "heartbeat_seconds (1) must be at most a third of lease_seconds (2)"),
    ("settings", lambda s: {**s, "heartbeat_max_seconds": 10},
     "heartbeat_max_seconds (10) must be at least heartbeat_seconds (15): looks at a run only grow apart"),
    ("settings", lambda s: {**s, "run_lease_seconds": 100},
     "run_lease_seconds (100) must be at least twice lease_seconds (60)"),
    ("images", lambda i: i + i, "images.json: entry 'worker' field 'name': appears more than once"),
    ("queues", lambda q: [{**q[0], "default_resources": {"mem": "lots"}}, q[1]],
     "queues.json: entry 'batch' field 'default_resources': mem 'lots': give a whole number"),
    ("queues", lambda q: [{**q[0], "max_resources": {"nodes": 2}}, q[1]],
     "queues.json: entry 'batch' field 'max_resources': -l nodes: not supported"),
    ("queues", lambda q: [{**q[0], "max_resources": {"walltime": "01:00:00"}}, q[1]],
     "field 'max_resources': resources: give walltime in the walltime field"),
    ("queues", lambda q: [{**q[0], "definitions": ["huge"]}, q[1]],
     "queues.json: entry 'batch' field 'definitions': no definition named 'huge'"),
    ("queues", lambda q: [{**q[0], "name": "a--b"}, q[1]],
     "queues.json: entry 'a--b' field 'name': '--' is kept for the work queues of a queue's other sizes"),
    ("definitions", lambda d: [{**d[0], "gpus": 1}],
     "queues.json: entry 'batch' field 'definition': 'standard' needs GPUs, but cluster 'default' (SPOT, "
     "c6i, m6i, c5, m5) has none: give the cluster GPU instance types"),
    ("settings", lambda s: {**s, "local": {"mem": "0gb"}},
     "settings.json: field 'local.mem': mem '0gb': must be more than zero"),
    ("queues", lambda q: {"not": "a list"}, "queues.json: must be a JSON list"),
    ("clusters", lambda c: [{**c[0], "type": "LAUNCH_TEMPLATE", "spot_bid_percentage": None}],
     "clusters.json: entry 'default' field 'type': a LAUNCH_TEMPLATE cluster runs the workers of one queue, "
     "but 2 use it (batch, west): give each queue a cluster of its own"),
])
def test_a_mistake_names_file_entry_and_field(conf, kind, change, message):
    with pytest.raises(config.ConfigError) as err:
        config.load(conf(kind, change))
    assert message in str(err.value)


def test_invalid_json_and_missing_files_are_reported(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "c")
    (tmp_path / "c" / "queues.json").write_text("[{,]")
    with pytest.raises(config.ConfigError, match=r"queues.json: not valid JSON: .* line 1 column 3"):
        config.load(tmp_path / "c")
    (tmp_path / "c" / "queues.json").unlink()
    with pytest.raises(config.ConfigError, match="queues.json: missing from"):
        config.load(tmp_path / "c")


def test_dump_round_trips(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "c")
    before = config.load(tmp_path / "c")
    for kind in config.FILES:
        config.dump(tmp_path / "c", kind, getattr(before, kind))
    assert config.load(tmp_path / "c") == before


def test_each_size_of_a_queue_is_a_pool_with_a_work_queue_of_its_own(conf):
    root = conf("definitions", lambda d: d + [{**d[0], "name": "large", "vcpus": 4}])
    (root / "queues.json").write_text(json.dumps(
        [{**q, "definitions": ["large", "standard"]} if q["name"] == "batch" else q
         for q in json.loads((root / "queues.json").read_text())]))
    c = config.load(root)
    assert [(p.name, p.queue, p.definition) for p in c.pools] == [
        ("batch", "batch", "standard"), ("batch--large", "batch", "large"), ("west", "west", "standard")]
    assert c.pool("batch--large").definition == "large"
    assert c.pools_on("default") == ["batch", "batch--large", "west"]
    with pytest.raises(KeyError):
        c.pool("batch--small")

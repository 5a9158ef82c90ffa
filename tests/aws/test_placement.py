"""`auto` region weights: spot placement scores parsed, cached for a while, equal weights on any error.

moto has no GetSpotPlacementScores, so the EC2 client is a botocore Stubber.
"""

import boto3
import pytest
from botocore.stub import Stubber

from hyperbatch import config as config_models
from hyperbatch.adapters.aws.placement import RegionWeights, parse_scores, score_request

REGIONS = ["us-east-1", "us-west-2", "eu-west-1"]


@pytest.fixture
def auto_cfg(cfg):
    """The sample configuration with queue `batch` on `auto` weights."""
    queues = [q.model_copy(update={"region_weights": "auto"}) if q.name == "batch" else q for q in cfg.queues]
    return cfg.model_copy(update={"queues": queues})


@pytest.fixture
def ec2():
    client = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        yield client, stub


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def scores(*pairs, token=None):
    out = {"SpotPlacementScores": [{"Region": r, "Score": s} for r, s in pairs]}
    if token:
        out["NextToken"] = token
    return out


def test_scores_become_weights_best_per_region():
    pages = [scores(("us-east-1", 3), ("us-west-2", 9)), scores(("us-east-1", 7), ("ap-south-1", 10))]
    assert parse_scores(pages, REGIONS) == {"us-east-1": 7.0, "us-west-2": 9.0, "eu-west-1": 0.0}
    with pytest.raises(ValueError):
        parse_scores([scores(("us-east-1", 0))], REGIONS)


def test_the_request_describes_the_cluster_and_definition(auto_cfg):
    queue = auto_cfg.queue("batch")
    request = score_request(auto_cfg, queue)
    # The sample cluster names x86_64 families (c6i, m6i, c5, m5), described by requirements.
    assert request == {
        "TargetCapacity": 4, "TargetCapacityUnitType": "units", "SingleAvailabilityZone": False,
        "RegionNames": REGIONS,
        "InstanceRequirementsWithMetadata": {
            "ArchitectureTypes": ["x86_64"], "VirtualizationTypes": ["hvm"],
            "InstanceRequirements": {"VCpuCount": {"Min": 1}, "MemoryMiB": {"Min": 2048}},
        },
    }
    typed = auto_cfg.model_copy(update={"clusters": [
        auto_cfg.clusters[0].model_copy(update={"instance_types": ["c5.large", "m5.large"], "regions": ["us-west-2"]})
    ]})
    request = score_request(typed, queue)
    assert request["InstanceTypes"] == ["c5.large", "m5.large"] and request["RegionNames"] == ["us-west-2"]
    fargate = auto_cfg.model_copy(update={"clusters": [
        config_models.Cluster(name="default", type="FARGATE")
    ]})
    assert score_request(fargate, queue) is None


def test_weights_are_cached_for_the_ttl(auto_cfg, ec2):
    client, stub = ec2
    clock = Clock()
    stub.add_response("get_spot_placement_scores", scores(("us-east-1", 2), ("us-west-2", 8), token="n"))
    stub.add_response("get_spot_placement_scores", scores(("eu-west-1", 4)))
    stub.add_response("get_spot_placement_scores", scores(("us-east-1", 5)))
    weights = RegionWeights(auto_cfg, client, ttl=600, clock=clock)
    expected = {"batch": {"us-east-1": 2.0, "us-west-2": 8.0, "eu-west-1": 4.0}}
    assert weights.weights() == expected  # queue "west" has static weights: not here
    clock.now = 599
    assert weights.weights() == expected  # no call
    clock.now = 601
    assert weights.weights() == {"batch": {"us-east-1": 5.0, "us-west-2": 0.0, "eu-west-1": 0.0}}
    stub.assert_no_pending_responses()


def test_any_error_falls_back_to_equal_weights_for_a_minute(auto_cfg, ec2):
    client, stub = ec2
    clock = Clock()
    stub.add_client_error("get_spot_placement_scores", "UnauthorizedOperation")
    stub.add_response("get_spot_placement_scores", scores(("us-west-2", 6)))
    weights = RegionWeights(auto_cfg, client, clock=clock)
    assert weights.for_queue("batch") == {r: 1.0 for r in REGIONS}
    clock.now = 30
    assert weights.for_queue("batch") == {r: 1.0 for r in REGIONS}  # not asked again yet
    clock.now = 61
    assert weights.for_queue("batch") == {"us-east-1": 0.0, "us-west-2": 6.0, "eu-west-1": 0.0}
    stub.assert_no_pending_responses()


def test_all_zero_scores_fall_back_too(auto_cfg, ec2):
    client, stub = ec2
    stub.add_response("get_spot_placement_scores", scores())
    assert RegionWeights(auto_cfg, client).for_queue("batch") == {r: 1.0 for r in REGIONS}

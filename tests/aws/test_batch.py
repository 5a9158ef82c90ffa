"""BatchCompute: array chunking, the SubmitJob rate limit, counting workers; moto where it can run Batch."""

from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from hyperbatch.adapters.aws.batch import (
    MAX_ARRAY_SIZE, BatchCompute, TokenBucket, array_sizes, job_name_prefix, worker_job_name,
)

CONFIG = Path(__file__).resolve().parents[2] / "configurations"
TARGETS = {
    "us-east-1": {
        "default": {"type": "SPOT", "job_queue": "HyperBatch-default",
                    "job_definitions": {"standard": "HyperBatch-standard-ec2-arm64"}},
        "fleet": {"type": "LAUNCH_TEMPLATE", "auto_scaling_group": "HyperBatch-fleet"},
    },
    "us-west-2": {
        "default": {"type": "SPOT", "job_queue": "HyperBatch-default",
                    "job_definitions": {"standard": "HyperBatch-standard-ec2-arm64"}},
    },
}


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


class Recorder:
    """A Batch client that only records submits."""

    def __init__(self, clock):
        self.clock, self.submits = clock, []

    def submit_job(self, **params):
        self.submits.append((self.clock(), params))
        return {"jobId": f"j{len(self.submits)}", "jobName": params["jobName"]}


def test_array_sizes_stay_within_batch_limits():
    assert array_sizes(0) == []
    assert array_sizes(1) == [1]
    assert array_sizes(2) == [2]
    assert array_sizes(MAX_ARRAY_SIZE) == [MAX_ARRAY_SIZE]
    assert array_sizes(MAX_ARRAY_SIZE + 1) == [5001, 5000]
    for count in (3, 9_999, 10_001, 25_000, 123_457):
        sizes = array_sizes(count)
        assert sum(sizes) == count and all(2 <= s <= MAX_ARRAY_SIZE for s in sizes)
        assert len(sizes) == -(-count // MAX_ARRAY_SIZE)


def test_the_bucket_allows_a_burst_then_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate=40, burst=10, clock=clock, sleep=clock.sleep)
    taken = []
    for _ in range(90):
        bucket.take()
        taken.append(clock.now)
    assert taken[9] == 1000.0 and taken[10] > 1000.0  # ten at once, then 40 a second
    assert taken[-1] - taken[0] == pytest.approx(80 / 40)
    for i, t in enumerate(taken):  # no window of one second ever holds more than 50
        assert sum(1 for u in taken[i:] if u - t < 1.0) <= 50


def test_start_chunks_arrays_and_waits_for_tokens(cfg):
    clock = FakeClock()
    batch = Recorder(clock)
    compute = BatchCompute(cfg, TARGETS, client_for=lambda region: batch,
                           limiter=TokenBucket(rate=2, burst=1, clock=clock, sleep=clock.sleep), clock=clock)
    assert compute.start("us-west-2", "west", "standard", 25_000) == 25_000
    sizes = [p.get("arrayProperties", {}).get("size") for _, p in batch.submits]
    assert sizes == [8334, 8333, 8333]
    assert [t for t, _ in batch.submits] == [1000.0, 1000.5, 1001.0]  # 2 a second, no real sleeping
    first = batch.submits[0][1]
    assert first["jobQueue"] == "HyperBatch-default"
    assert first["jobDefinition"] == "HyperBatch-standard-ec2-arm64"
    assert first["jobName"].startswith(job_name_prefix("west"))
    assert {"name": "HYPER_QUEUE", "value": "west"} in first["containerOverrides"]["environment"]


def test_one_worker_is_a_plain_job(cfg):
    clock = FakeClock()
    batch = Recorder(clock)
    compute = BatchCompute(cfg, TARGETS, client_for=lambda region: batch,
                           limiter=TokenBucket(50, 50, clock=clock, sleep=clock.sleep))
    assert compute.start("us-east-1", "batch", "standard", 1) == 1
    assert "arrayProperties" not in batch.submits[0][1]


def test_start_refuses_what_is_not_batch(cfg):
    compute = BatchCompute(cfg, TARGETS)
    with pytest.raises(ValueError, match="not built in region eu-west-1"):
        compute.start("eu-west-1", "batch", "standard", 2)
    with pytest.raises(ValueError, match="no job definition"):
        compute.start("us-east-1", "batch", "gpu", 2)
    unknown = {"us-east-1": {"default": {"type": "SOMETHING_NEW"}}}
    with pytest.raises(NotImplementedError, match="SOMETHING_NEW"):
        BatchCompute(cfg, unknown).start("us-east-1", "batch", "standard", 2)


def test_job_names_keep_queues_apart():
    assert not worker_job_name("a-b", 1.0).startswith(job_name_prefix("a"))
    assert worker_job_name("a", 1.0).startswith(job_name_prefix("a"))
    assert len(worker_job_name("q" * 63, 2e9)) <= 128


def summary(job_id, name, status, array=None):
    out = {"jobId": job_id, "jobName": name, "status": status, "createdAt": 1}
    if array is not None:
        out["arrayProperties"] = array
    return out


def test_running_counts_active_workers_and_array_children(cfg):
    client = boto3.client("batch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    batch = "hb-5-batch-1"
    west = "hb-4-west-1"
    with Stubber(client) as stub:
        listed = {
            "SUBMITTED": [summary("s1", batch, "SUBMITTED")],
            "PENDING": [summary("arr", batch, "PENDING", {"size": 100})],
            "RUNNABLE": [summary("w1", west, "RUNNABLE"), summary("other", "not-ours", "RUNNABLE")],
            "STARTING": [],
            "RUNNING": [summary("w2", west, "RUNNING"), summary("arr:3", batch, "RUNNING", {"index": 3}),
                        summary("w3", "hb-6-west-x-1", "RUNNING")],
        }
        for status, jobs in listed.items():
            if status == "RUNNABLE":  # a second page
                stub.add_response("list_jobs", {"jobSummaryList": jobs[:1], "nextToken": "t"},
                                  {"jobQueue": "HyperBatch-default", "jobStatus": status})
                stub.add_response("list_jobs", {"jobSummaryList": jobs[1:]},
                                  {"jobQueue": "HyperBatch-default", "jobStatus": status, "nextToken": "t"})
            else:
                stub.add_response("list_jobs", {"jobSummaryList": jobs},
                                  {"jobQueue": "HyperBatch-default", "jobStatus": status})
        stub.add_response("describe_jobs", {"jobs": [{
            "jobId": "arr", "jobName": batch, "jobQueue": "q", "status": "PENDING", "startedAt": 1,
            "jobDefinition": "d",
            "arrayProperties": {"size": 100, "statusSummary": {
                "SUBMITTED": 0, "PENDING": 0, "RUNNABLE": 40, "STARTING": 2, "RUNNING": 30, "SUCCEEDED": 20, "FAILED": 8,
            }},
        }]}, {"jobs": ["arr"]})
        compute = BatchCompute(cfg, {"us-east-1": TARGETS["us-east-1"]}, client_for=lambda region: client)
        assert compute.running() == {("us-east-1", "batch"): 1 + 72, ("us-east-1", "west"): 2}
        stub.assert_no_pending_responses()


@pytest.fixture
def batch_moto(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws(config={"batch": {"use_docker": False}}):
        iam = boto3.client("iam", region_name="us-east-1")
        role = iam.create_role(RoleName="batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        clients = {}
        for region in ("us-east-1", "us-west-2"):
            batch = clients[region] = boto3.client("batch", region_name=region)
            env = batch.create_compute_environment(
                computeEnvironmentName="workers", type="UNMANAGED", state="ENABLED", serviceRole=role,
            )["computeEnvironmentArn"]
            batch.create_job_queue(jobQueueName="HyperBatch-default", state="ENABLED", priority=1,
                                   computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env}])
            batch.register_job_definition(
                jobDefinitionName="HyperBatch-standard-ec2-arm64", type="container",
                containerProperties={"image": "worker", "vcpus": 1, "memory": 512},
            )
        yield clients


def test_workers_are_submitted_to_the_regions_job_queue(cfg, batch_moto):
    compute = BatchCompute(cfg, TARGETS, client_for=batch_moto.__getitem__)
    assert compute.start("us-west-2", "west", "standard", 3) == 3
    assert compute.start("us-west-2", "batch", "standard", 1) == 1
    batch = batch_moto["us-west-2"]
    listed = batch.list_jobs(jobQueue="HyperBatch-default", filters=[{"name": "JOB_NAME", "values": ["hb-*"]}])
    parents = [j for j in listed["jobSummaryList"] if ":" not in j["jobId"]]
    assert sorted(j["jobName"].rsplit("-", 1)[0] for j in parents) == ["hb-4-west", "hb-5-batch"]
    described = batch.describe_jobs(jobs=[j["jobId"] for j in parents])["jobs"]
    assert sorted((d.get("arrayProperties") or {}).get("size", 1) for d in described) == [1, 3]
    assert batch_moto["us-east-1"].list_jobs(jobQueue="HyperBatch-default", jobStatus="SUCCEEDED")["jobSummaryList"] == []
    # moto's simple Batch finishes every job at once: none is still running.
    assert compute.running() == {}


@pytest.fixture
def fleet(monkeypatch):
    """A LAUNCH_TEMPLATE cluster "fleet" that queue "west" runs on, as its Auto Scaling group in moto."""
    from hyperbatch import config

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    raw = {kind: config.read_raw(CONFIG, kind) for kind in config.FILES}
    raw["clusters"] = raw["clusters"] + [{"name": "fleet", "type": "LAUNCH_TEMPLATE",
                                          "instance_types": ["c6i.large"], "max_vcpus": 3}]
    raw["queues"] = [{**q, "cluster": "fleet"} if q["name"] == "west" else q for q in raw["queues"]]
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-west-2")
        ec2.create_launch_template(LaunchTemplateName="fleet-template",
                                   LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "c6i.large"})
        autoscaling = boto3.client("autoscaling", region_name="us-west-2")
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName="HyperBatch-fleet", MinSize=0, MaxSize=3, AvailabilityZones=["us-west-2a"],
            LaunchTemplate={"LaunchTemplateName": "fleet-template"})
        targets = {"us-west-2": {"fleet": {"type": "LAUNCH_TEMPLATE", "auto_scaling_group": "HyperBatch-fleet"}}}
        yield BatchCompute(config.validate(raw), targets, autoscaling_for=lambda region: autoscaling), autoscaling


def test_a_launch_template_fleet_grows_by_desired_capacity_up_to_its_maximum(fleet):
    compute, autoscaling = fleet

    def group():
        return autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["HyperBatch-fleet"])["AutoScalingGroups"][0]

    assert compute.running_in("us-west-2") == {}
    assert compute.start("us-west-2", "west", "standard", 2) == 2
    assert group()["DesiredCapacity"] == 2 and len(group()["Instances"]) == 2
    assert compute.running() == {("us-west-2", "west"): 2}
    assert compute.start("us-west-2", "west", "standard", 5) == 1  # MaxSize 3
    assert group()["DesiredCapacity"] == 3 and compute.running_in("us-west-2") == {"west": 3}
    # A worker that idles out takes its instance out of the group, lowering the capacity itself.
    instance = group()["Instances"][0]["InstanceId"]
    autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=instance, ShouldDecrementDesiredCapacity=True)
    assert compute.running_in("us-west-2") == {"west": 2}
    compute.stop_all()
    assert group()["DesiredCapacity"] == 0


def test_a_missing_fleet_is_an_error_of_its_region(fleet):
    compute, autoscaling = fleet
    autoscaling.delete_auto_scaling_group(AutoScalingGroupName="HyperBatch-fleet", ForceDelete=True)
    with pytest.raises(LookupError, match="HyperBatch-fleet does not exist in us-west-2"):
        compute.running_in("us-west-2")

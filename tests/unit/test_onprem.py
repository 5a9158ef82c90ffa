"""Workers on your own machines (hybrid): `onprem` in a queue's region weights, and the scaler's view of them."""

import json
import shutil
from pathlib import Path

import pytest

from hyperbatch import config
from hyperbatch.core import onprem
from hyperbatch.core.errors import SpecError
from hyperbatch.services.scale import scale_once
from tests.unit.test_local_scaling import FakeCompute, FakeQueue

EXAMPLE = Path(__file__).resolve().parents[2] / "configurations"


def _config(tmp_path, weights, ratio=1, max_workers=20):
    shutil.copytree(EXAMPLE, tmp_path / "c")
    queues = json.loads((tmp_path / "c" / "queues.json").read_text())
    queues[0]["region_weights"] = weights
    (tmp_path / "c" / "queues.json").write_text(json.dumps(queues))
    definitions = json.loads((tmp_path / "c" / "definitions.json").read_text())
    definitions[0].update(jobs_to_workers_ratio=ratio, max_workers=max_workers)
    (tmp_path / "c" / "definitions.json").write_text(json.dumps(definitions))
    return config.load(tmp_path / "c")


def test_onprem_is_a_region_weight_and_other_names_are_still_refused(tmp_path):
    cfg = _config(tmp_path, {"onprem": 1, "us-west-2": 1})
    assert cfg.queue("batch").region_weights == {"onprem": 1, "us-west-2": 1}
    with pytest.raises(config.ConfigError, match="'onpremises' is not an AWS region name"):
        _config(tmp_path / "again", {"onpremises": 1})


def test_onprem_workers_absorb_the_backlog_first_and_the_cloud_gets_the_rest(tmp_path):
    cfg = _config(tmp_path, {"onprem": 1, "us-west-2": 1})
    compute = FakeCompute()
    scaled = scale_once(cfg, FakeQueue({"batch": 5}), compute, onprem_workers={"batch": 3})
    assert compute.workers == {("us-west-2", "batch"): 2}  # 5 jobs, 3 on-premises workers: 2 cloud workers
    assert ("onprem", "batch") not in scaled.started and ("onprem", "batch") not in scaled.running


def test_enough_onprem_workers_start_no_cloud_worker(tmp_path):
    cfg = _config(tmp_path, {"onprem": 1})
    compute = FakeCompute()
    scale_once(cfg, FakeQueue({"batch": 4}), compute, onprem_workers={"batch": 4})
    assert compute.workers == {}


def test_with_onprem_the_only_weight_the_rest_goes_to_every_compute_region(tmp_path):
    cfg = _config(tmp_path, {"onprem": 1})
    compute = FakeCompute()
    scale_once(cfg, FakeQueue({"batch": 6}), compute, onprem_workers={"batch": 3})
    assert compute.workers == {("us-east-1", "batch"): 1, ("us-west-2", "batch"): 1, ("eu-west-1", "batch"): 1}


def test_a_queue_that_does_not_weight_onprem_sizes_its_cloud_workers_without_them(tmp_path):
    cfg = _config(tmp_path, {"us-west-2": 1})
    compute = FakeCompute()
    scale_once(cfg, FakeQueue({"batch": 5}), compute, onprem_workers={"batch": 3})
    assert compute.workers == {("us-west-2", "batch"): 5}


def test_each_onprem_worker_takes_the_definitions_ratio(tmp_path):
    cfg = _config(tmp_path, {"onprem": 1, "us-west-2": 1}, ratio=4)
    compute = FakeCompute()
    scale_once(cfg, FakeQueue({"batch": 13}), compute, onprem_workers={"batch": 2})  # 2 x 4 absorbed, 5 left
    assert compute.workers == {("us-west-2", "batch"): 2}


def test_only_live_records_count():
    now = 1_000_000.0
    records = [
        {"name": "a", "queue": "batch", "seen_at": now - 10},
        {"name": "b", "queue": "batch", "seen_at": now - onprem.STALE_AFTER_SECONDS - 1},  # gone quiet
        {"name": "c", "queue": "west", "seen_at": now},
    ]
    assert onprem.per_queue(records, now) == {"batch": 1, "west": 1}


@pytest.mark.parametrize("name", ["", "a/b", "-x", "x" * 64, "a b"])
def test_a_worker_name_is_one_plain_word(name):
    with pytest.raises(SpecError, match="worker name"):
        onprem.check_name(name)


def test_qstat_and_pbsnodes_name_an_onprem_worker_onprem_slash_name():
    from hyperbatch.cli import output
    from hyperbatch.cli.pbs import pbsnodes
    from hyperbatch.core import nodes

    job = {"id": "7", "state": "RUNNING", "job_state": "R", "exec_host": "onprem/lab-1", "queue": "batch",
           "definition": "standard", "server": "srv", "resources": {"ncpus": "2"}}
    attributes = {a[0]: a[2] for a in output.job_attributes(job)}
    assert (attributes["exec_host"], attributes["exec_vnode"]) == ("onprem/lab-1/0*2", "(onprem/lab-1:ncpus=2)")
    assert output.node_of("us-east-1/4f0c-batch-job") == "4f0c-batch-job"  # a cloud worker keeps its id

    registered = [{"id": "lab-1", "region": "onprem", "queue": "batch", "definition": "standard",
                   "started_at": 5.0, "ncpus": 16, "mem_mib": 65536, "ngpus": 2},
                  {"id": "lab-2", "region": "onprem", "queue": "batch", "definition": "standard", "started_at": 6.0,
                   "ncpus": 4, "mem_mib": 1024, "ngpus": 0}]
    listed = nodes.describe(None, [{**job, "array": None}], {"standard": {"vcpus": 1, "memory_mib": 2048}}, registered)
    assert [(n["name"], n["state"], n["jobs"]) for n in listed] == [
        ("onprem/lab-1", "job-busy", ["7.srv"]), ("onprem/lab-2", "free", [])]
    text = pbsnodes.text(listed[0])
    assert text.startswith("onprem/lab-1\n     Mom = onprem/lab-1\n")
    for line in ("resources_available.ncpus = 16", "resources_available.mem = 67108864kb",
                 "resources_available.ngpus = 2", "resources_available.region = onprem"):
        assert f"     {line}\n" in text

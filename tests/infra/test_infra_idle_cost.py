"""bench/idle_cost.py on the shared synthesis: the example costs under $1 a month before any job runs."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from infra_synthesis import EXAMPLE, REPO


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("idle_cost", REPO / "bench" / "idle_cost.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_example_costs_under_a_dollar_a_month_idle(bench, synth):
    total, lines = bench.idle_cost(EXAMPLE, synth.outdir, synth.templates)
    assert 0 < total < 1.00, [line for line in lines if line.usd_per_month]
    by_item = {line.item.split(" (")[0]: line for line in lines}
    assert by_item["NAT gateways"].quantity == 0 and by_item["interface endpoints"].quantity == 0


def test_always_on_network_is_priced(bench):
    template = {"Resources": {
        "Nat": {"Type": "AWS::EC2::NatGateway", "Properties": {}},
        "Ip": {"Type": "AWS::EC2::EIP", "Properties": {}},
        "Sqs": {"Type": "AWS::EC2::VPCEndpoint",
                "Properties": {"VpcEndpointType": "Interface", "SubnetIds": [{"Ref": "A"}, {"Ref": "B"}]}},
        "S3": {"Type": "AWS::EC2::VPCEndpoint", "Properties": {"VpcEndpointType": "Gateway"}},
    }}
    lines = bench.always_on({"Stack": template})
    assert sum(line.usd_per_month for line in lines) == pytest.approx(32.85 + 3.65 + 2 * 7.30)

"""Availability zones of a new region in cdk.json, so `cdk synth` of it needs no AWS credentials.

A synth without credentials targets the placeholder account (hyperbatch.core.names.PLACEHOLDER_ACCOUNT);
a VPC asks the CDK for its region's availability zones, and with no answer in
the context the CDK would call AWS for them. cdk.json pins them for the
example's regions; `hyper regions add` records a new region's the same way,
under the key the CDK looks up:

    "availability-zones:account=123456789012:region=ap-south-1": ["ap-south-1a", "ap-south-1b", "ap-south-1c"]

from ZONES, the first zones of each region as new accounts see them. Only the
placeholder account's synth reads these: a deploy (credentials, a real
account) looks its own zones up. For a region not in ZONES, the command says
what to add, in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

from hyperbatch.core.names import PLACEHOLDER_ACCOUNT
from hyperbatch.support.files import atomic_write


def _lettered(region: str, letters: str = "abc") -> list[str]:
    return [f"{region}{letter}" for letter in letters]


ZONES: dict[str, list[str]] = {
    **{region: _lettered(region) for region in (
        "us-east-1", "us-east-2", "us-west-2", "ca-west-1", "sa-east-1",
        "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1",
        "eu-south-2", "ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3",
        "ap-southeast-4", "ap-northeast-2", "ap-northeast-3", "ap-east-1", "me-south-1", "me-central-1",
        "af-south-1", "il-central-1",
    )},
    "ca-central-1": _lettered("ca-central-1", "abd"),  # there is no ca-central-1c
    "ap-northeast-1": _lettered("ap-northeast-1", "acd"),  # new accounts get no ap-northeast-1b
}


def context_key(region: str) -> str:
    return f"availability-zones:account={PLACEHOLDER_ACCOUNT}:region={region}"


def record(cdk_json: Path, region: str) -> str | None:
    """Pin `region`'s zones in `cdk_json`'s context; a line saying what was done or what to do,
    None when they are there already."""
    key = context_key(region)
    zones = ZONES.get(region)
    how = (f'for `cdk synth` without AWS credentials, add "{key}": [{region}\'s zone names, e.g. "{region}a"] '
           f"to the context in cdk.json")
    if not cdk_json.is_file():
        return how.replace("cdk.json", "your project's cdk.json", 1)
    data = json.loads(cdk_json.read_text())
    context = data.setdefault("context", {})
    if key in context:
        return None
    if zones is None:
        return how
    # Next to the other regions' zones, so the file reads as before.
    keys = list(context)
    zone_keys = [i for i, k in enumerate(keys) if k.startswith("availability-zones:")]
    at = zone_keys[-1] + 1 if zone_keys else 0
    data["context"] = dict([*context.items()][:at] + [(key, zones)] + [*context.items()][at:])
    atomic_write(cdk_json, json.dumps(data, indent=2) + "\n", mode=cdk_json.stat().st_mode & 0o777)
    return f"recorded {region}'s availability zones ({', '.join(zones)}) in {cdk_json.name}: synth needs no credentials"

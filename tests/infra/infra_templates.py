"""Small readers for synthesized CloudFormation templates (plain JSON), and cfn-lint."""

from __future__ import annotations

import json

from cfnlint.api import ManualArgs, lint


def resources(template: dict, type_: str) -> dict[str, dict]:
    """Logical id -> resource, for one CloudFormation type."""
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def statements(template: dict) -> list[tuple[str, dict]]:
    """Every IAM statement in a template: (policy logical id, statement), inline role policies included."""
    found = []
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            found += [(logical_id, s) for s in props["PolicyDocument"]["Statement"]]
        if resource["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                found += [(logical_id, s) for s in policy["PolicyDocument"]["Statement"]]
    return found


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def flat(value) -> str:
    """A CloudFormation value as one comparable string (Ref/Fn::Join rendered as text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        delimiter, parts = value["Fn::Join"]
        return delimiter.join(flat(p) for p in parts)
    if isinstance(value, dict) and "Ref" in value:
        return "${" + value["Ref"] + "}"
    return json.dumps(value, sort_keys=True)


def role_statements(template: dict, role_id_prefix: str) -> list[dict]:
    """Statements of the policies attached to the one role whose logical id starts with the prefix."""
    (role_id,) = [k for k in resources(template, "AWS::IAM::Role") if k.startswith(role_id_prefix)]
    found = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"].get("Roles", []):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def lint_errors(template: dict, region: str) -> list[str]:
    """Error-level findings only: warnings (W...) and informational (I...) do not fail."""
    matches = lint(json.dumps(template), config=ManualArgs(regions=[region]))
    return [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches if m.rule.id.startswith("E")]

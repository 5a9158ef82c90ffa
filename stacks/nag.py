"""cdk-nag (3.x) acknowledgements and least-privilege policy statements.

Every acknowledgement names the exact finding and carries a reason; there is no
blanket suppression. Wildcard resources get their IAM5 finding ids computed
from the statement itself, so a new wildcard cannot slip in unacknowledged:
`allow()` refuses a wildcard without a reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_iam as iam
from constructs import IConstruct


def acknowledge(scope: IConstruct, reason: str, *rule_ids: str) -> None:
    """Acknowledge AwsSolutions findings on `scope` and everything below it."""
    Validations.of(scope).acknowledge(*(Acknowledgment(id=rule, reason=reason) for rule in rule_ids))


def allow(
    principal: iam.IGrantable | iam.ManagedPolicy,
    actions: Iterable[str],
    resources: Iterable[str],
    wildcard_reason: str | None = None,
    conditions: dict | None = None,
) -> None:
    """Add one Allow statement to `principal`'s policy (or to a managed policy itself).

    Actions must be named (no `*` or `service:*`). A resource containing `*`
    needs `wildcard_reason`, which acknowledges exactly those IAM5 findings.
    `conditions` narrows the statement further (IAM condition block).
    """
    if isinstance(principal, iam.ManagedPolicy):  # one the grants of a role can be made to as well
        principal.add_statements(_statement(principal, actions, resources, wildcard_reason, conditions))
        return
    # The statement lands in the policy of the grant principal (a function's role,
    # not the function), so that is where findings are acknowledged.
    holder = principal.grant_principal
    holder.add_to_principal_policy(_statement(holder, actions, resources, wildcard_reason, conditions))


def allow_in(
    policy: iam.ManagedPolicy, actions: Iterable[str], resources: Iterable[str], wildcard_reason: str | None = None
) -> None:
    """`allow` for a managed policy (one that people's roles or groups attach)."""
    policy.add_statements(_statement(policy, actions, resources, wildcard_reason))


def _statement(
    holder: IConstruct,
    actions: Iterable[str],
    resources: Iterable[str],
    wildcard_reason: str | None,
    conditions: dict | None = None,
) -> iam.PolicyStatement:
    """The Allow statement, its wildcard resources acknowledged on `holder` (or refused without a reason)."""
    actions, resources = sorted(set(actions)), list(resources)
    if any("*" in action for action in actions):
        raise ValueError(f"wildcard action in {actions}: name each action")
    stack = Stack.of(holder)
    flattened = (_flatten(stack.resolve(resource)) for resource in resources)
    findings = [f"AwsSolutions-IAM5[Resource::{flat}]" for flat in flattened if "*" in flat]
    if findings and not wildcard_reason:
        raise ValueError(f"wildcard resources {findings} need a wildcard_reason")
    if findings:
        acknowledge(holder, wildcard_reason, *findings)
    return iam.PolicyStatement(actions=actions, resources=resources, conditions=conditions)


def _flatten(node) -> str:
    """The same flat rendering cdk-nag uses for finding ids (utils/flatten-cfn-reference.js)."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return delimiter.join(_flatten(item) for item in items)
        if "Fn::Sub" in node:
            return _flatten(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{_flatten(resource)}.{_flatten(attribute)}>"
        if "Fn::ImportValue" in node:
            return _flatten(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{_flatten(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))

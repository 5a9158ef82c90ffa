"""Access for people: the control stack outputs a submitters' and an admins' managed policy."""

from __future__ import annotations

import re

from infra_templates import as_list, flat, resources, role_statements

from stacks import api


def policies(synth) -> dict[str, dict]:
    """Output key -> the managed policy's properties."""
    template = synth.templates[synth.control_name]
    found = resources(template, "AWS::IAM::ManagedPolicy")
    outputs = template["Outputs"]
    return {key: found[outputs[key]["Value"]["Ref"]]["Properties"] for key in ("SubmitterPolicyArn", "AdminPolicyArn")}


def granted(policy: dict) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for statement in policy["PolicyDocument"]["Statement"]:
        # The one condition allowed narrows a bucket listing to prefixes (the files bucket's uploads).
        assert statement["Effect"] == "Allow" and ("Condition" not in statement or (
            as_list(statement["Action"]) == ["s3:ListBucket"] and set(statement["Condition"]) == {"StringLike"}))
        for action in as_list(statement["Action"]):
            found.setdefault(action, set()).update(flat(r) for r in as_list(statement["Resource"]))
    return found


def expected_routes(synth) -> set[str]:
    (api_id,) = resources(synth.templates[synth.control_name], "AWS::ApiGatewayV2::Api")
    prefix = f"arn:${{AWS::Partition}}:execute-api:us-east-1:${{AWS::AccountId}}:${{{api_id}}}/*"
    return {f"{prefix}/{method}{re.sub(r'{[^}]+}', '*', path)}" for method, path in api.ROUTES}


def test_both_policies_are_exported_and_attached_to_no_one(synth):
    outputs = synth.templates[synth.control_name]["Outputs"]
    for key, policy in policies(synth).items():
        assert outputs[key]["Export"]["Name"] == f"HyperBatch-Control-{key}"
        assert not {"Roles", "Users", "Groups"} & set(policy), "people's roles or groups attach it"
        assert "ManagedPolicyName" not in policy  # a generated name: nothing to collide with on a retry


def test_submitters_may_call_every_route_of_this_api_and_read_the_deployment_outputs(synth):
    found = granted(policies(synth)["SubmitterPolicyArn"])
    assert set(found) == {"execute-api:Invoke", "cloudformation:DescribeStacks"}
    assert found["execute-api:Invoke"] == expected_routes(synth)
    assert found["cloudformation:DescribeStacks"] == {
        "arn:${AWS::Partition}:cloudformation:us-east-1:${AWS::AccountId}:stack/HyperBatch-Control/*"
    }


def test_admins_get_the_api_and_read_only_operations_data(synth):
    found = granted(policies(synth)["AdminPolicyArn"])
    assert found["execute-api:Invoke"] == expected_routes(synth)
    reads = {a for a in found if a != "execute-api:Invoke"}
    assert reads == {
        "cloudformation:DescribeStacks", "cloudformation:DescribeStackEvents", "logs:GetLogEvents",
        "logs:FilterLogEvents", "logs:DescribeLogStreams", "sqs:GetQueueAttributes", "cloudwatch:DescribeAlarms",
    }
    stacks = found["cloudformation:DescribeStacks"]
    assert {s.split(":stack/")[1] for s in stacks} == {f"{name}/*" for name in synth.templates}
    assert all(":HyperBatch-" in q for q in found["sqs:GetQueueAttributes"])
    assert found["cloudwatch:DescribeAlarms"] == {
        "arn:${AWS::Partition}:cloudwatch:us-east-1:${AWS::AccountId}:alarm:HyperBatch-*"
    }


def test_onprem_workers_get_the_container_workers_grants_and_the_control_stacks_outputs(synth):
    """The on-premises worker policy is the job role's grants (every action on the same resources), with
    none of the execution role's (image pulls, container logs), plus reading the control stack."""
    template = synth.templates[synth.control_name]
    outputs = template["Outputs"]
    assert outputs["OnPremWorkerPolicyArn"]["Export"]["Name"] == "HyperBatch-Control-OnPremWorkerPolicyArn"
    policy = resources(template, "AWS::IAM::ManagedPolicy")[outputs["OnPremWorkerPolicyArn"]["Value"]["Ref"]]
    assert not {"Roles", "Users", "Groups"} & set(policy["Properties"]), "the machines' roles attach it"
    onprem = granted(policy["Properties"])
    container: dict[str, set[str]] = {}
    for statement in role_statements(synth.templates[synth.compute_name("us-east-1")], "WorkersJobRole"):
        for action in as_list(statement["Action"]):
            container.setdefault(action, set()).update(flat(r) for r in as_list(statement["Resource"]))
    describe = onprem.pop("cloudformation:DescribeStacks")
    assert onprem == container
    assert describe == {"arn:${AWS::Partition}:cloudformation:us-east-1:${AWS::AccountId}:stack/HyperBatch-Control/*"}
    assert not any(a.startswith(("ecr:", "batch:", "ec2:", "autoscaling:")) for a in onprem)

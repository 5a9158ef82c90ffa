"""cdk-nag (AwsSolutions): no unacknowledged finding, and the check does catch one."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sqs as sqs
from cdk_nag import AwsSolutionsChecks


def failures(report: dict) -> list[str]:
    return [
        f"{plugin['pluginName']} {violation['ruleName']} at {construct['constructPath']}"
        for plugin in report["pluginReports"]
        if plugin["conclusion"] != "success"
        for violation in plugin["violations"]
        for construct in violation["violatingConstructs"]
    ]


def test_example_deployment_has_no_unacknowledged_findings(synth):
    report = synth.validation_report()
    assert failures(report) == [], json.dumps(report, indent=1)[:4000]
    assert synth.synth_error is None


def test_a_bad_construct_is_reported(tmp_path):
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Throwaway")
    sqs.Queue(stack, "Plain", encryption=sqs.QueueEncryption.UNENCRYPTED)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    found = failures(json.loads((tmp_path / "validation-report.json").read_text()))
    assert "AwsSolutions AwsSolutions-SQS4 at Throwaway/Plain/Resource" in found
    assert any("AwsSolutions-SQS2" in f or "AwsSolutions-SQS3" in f for f in found)

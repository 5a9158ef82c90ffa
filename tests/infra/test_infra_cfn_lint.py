"""cfn-lint over every synthesized template, for the region it deploys to."""

from __future__ import annotations

from infra_templates import lint_errors


def region_of(synth, stack_name: str) -> str:
    if stack_name == synth.control_name:
        return synth.config.settings.main_region
    return next(r for r in synth.config.compute_regions if synth.compute_name(r) == stack_name)


def test_every_template_lints_without_errors(synth):
    assert len(synth.templates) == 1 + len(synth.config.compute_regions)
    errors = [f"{name}: {e}" for name, t in synth.templates.items() for e in lint_errors(t, region_of(synth, name))]
    assert errors == []


def test_the_lint_check_does_catch_errors():
    broken = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": "soon"}}}}
    assert lint_errors(broken, "us-east-1")

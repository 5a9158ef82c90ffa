"""`hyper hosts list|select|remove|import-deployment`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from hyperbatch.cli import host_registry as hosts
from hyperbatch.cli.errors import CliError

LOCAL = {"kind": "local", "url": "http://127.0.0.1:8765", "token_file": "/tmp/token"}
PROD = {"kind": "aws", "url": "https://abc.execute-api.us-east-1.amazonaws.com/prod/", "region": "us-east-1",
        "stack_name": "HyperBatch"}


def _rows(stdout: str) -> list[list[str]]:
    return [line.split() for line in stdout.splitlines()[2:] if line.strip()]


def _seed(env) -> None:
    env.home.mkdir()
    (env.home / "hosts.json").write_text(json.dumps({"selected": "local", "hosts": {"local": LOCAL, "prod": PROD}}))


def test_list_select_remove(env):
    result = env.run("hosts", "list")
    assert result.returncode == 0 and "hyper local up" in result.stdout  # no hosts yet: says what to do
    _seed(env)
    result = env.run("hosts", "list")
    assert result.stdout.split("\n")[0].split() == ["name", "kind", "url", "region"]
    assert _rows(result.stdout) == [["*", "local", "local", LOCAL["url"], "-"], ["prod", "aws", PROD["url"], "us-east-1"]]

    result = env.run("hosts", "select", "prod")
    assert result.returncode == 0 and "selected host prod" in result.stdout
    assert _rows(env.run("hosts", "list").stdout)[1][0] == "*"

    result = env.run("hosts", "remove", "prod")
    assert result.returncode == 0 and "removed host prod" in result.stdout
    assert json.loads((env.home / "hosts.json").read_text()) == {"selected": None, "hosts": {"local": LOCAL}}


@pytest.mark.parametrize("verb", ["select", "remove"])
def test_unknown_host_is_one_line_exit_1(env, verb):
    _seed(env)
    result = env.run("hosts", verb, "nope")
    assert result.returncode == 1
    assert result.stderr == "hyper: unknown HyperBatch host 'nope' (known hosts: local, prod)\n"


def test_import_deployment_without_credentials_is_one_line(env):
    result = env.run("hosts", "import-deployment")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "HyperBatch-Control in us-east-1" in result.stderr and "no AWS credentials" in result.stderr


OUTPUTS = {
    "ApiUrl": "https://abc123.execute-api.us-east-1.amazonaws.com/prod/",
    "Region": "us-east-1",
    "StackName": "HyperBatch",
    "TableName": "HyperBatch-jobs",
    "QueueUrls": "{}",
    "LogGroupPrefix": "/hyperbatch/HyperBatch/jobs/",
    "FilesBucket": "hyperbatch-files-123456789012-us-east-1",
}


def _stack(name: str, outputs: dict[str, str], region: str = "us-east-1") -> None:
    import boto3

    template = {
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation", region_name=region).create_stack(StackName=name, TemplateBody=json.dumps(template))


def test_import_deployment_registers_and_selects_the_stack(inprocess, env):
    from moto import mock_aws

    with mock_aws():
        _stack("HyperBatch-Control", OUTPUTS)
        result = CliRunner().invoke(inprocess, ["hosts", "import-deployment"])
        assert result.exit_code == 0, result.output
        assert "imported host HyperBatch" in result.output
        named = CliRunner().invoke(inprocess, ["hosts", "import-deployment", "--stack-name", "HyperBatch-Control",
                                               "--region", "us-east-1", "--name", "prod"])
        assert named.exit_code == 0, named.output
    data = hosts.load_hosts()
    assert data["selected"] == "prod"
    assert data["hosts"]["HyperBatch"] == {
        "kind": "aws", "url": OUTPUTS["ApiUrl"], "region": "us-east-1", "stack_name": "HyperBatch"}


@pytest.mark.parametrize(("stack", "outputs", "message"), [
    ("Other", OUTPUTS, "no CloudFormation stack HyperBatch-Control in us-east-1"),
    ("HyperBatch-Control", {"Region": "us-east-1"}, "has no output ApiUrl, StackName"),
])
def test_import_deployment_refuses_a_missing_or_foreign_stack(inprocess, env, stack, outputs, message):
    from moto import mock_aws

    with mock_aws():
        _stack(stack, outputs)
        result = CliRunner().invoke(inprocess, ["hosts", "import-deployment"])
    assert isinstance(result.exception, CliError) and result.exception.exit_code == 1
    assert message in str(result.exception) and "\n" not in str(result.exception)
    assert hosts.load_hosts()["hosts"] == {}

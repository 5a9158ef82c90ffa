"""`hyper deploy`: configuration checked first, then the CDK CLI run with its exit code passed through."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

FAKE_CDK = """#!{python}
import json, os, sys
with open(os.environ["FAKE_CDK_RECORD"], "w") as f:
    json.dump({{"args": sys.argv[1:], "config": os.environ.get("HYPERBATCH_CONFIG"), "cwd": os.getcwd(),
               "python": os.environ.get("HYPERBATCH_PYTHON")}}, f)
print("fake cdk output")
sys.exit(int(os.environ.get("FAKE_CDK_EXIT", "0")))
"""


def _bin_with(tmp_path: Path, *scripts: str) -> Path:
    """A directory to use as the whole PATH, holding fake executables with these names."""
    directory = tmp_path / "bin"
    directory.mkdir(exist_ok=True)
    for name in scripts:
        path = directory / name
        path.write_text(FAKE_CDK.format(python=sys.executable))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return directory


def test_dry_run_synthesizes_with_the_configuration_and_passes_the_exit_code(env, tmp_path):
    record = tmp_path / "cdk.json"
    path = str(_bin_with(tmp_path, "cdk"))
    result = env.run("deploy", "--dry-run", PATH=path, FAKE_CDK_RECORD=str(record), FAKE_CDK_EXIT="3")
    assert result.returncode == 3, result.stderr
    assert "fake cdk output" in result.stdout
    called = json.loads(record.read_text())
    assert called["args"] == ["synth", "--all"]
    assert called["config"] == str(env.config.resolve())
    assert (Path(called["cwd"]) / "cdk.json").is_file()
    result = env.run("deploy", "--dry-run", PATH=path, FAKE_CDK_RECORD=str(record))
    assert result.returncode == 0


def test_missing_cdk_cli_is_a_clear_message(env, tmp_path):
    result = env.run("deploy", "--dry-run", PATH=str(_bin_with(tmp_path)))
    assert result.returncode == 1
    assert result.stderr == "hyper: the AWS CDK CLI is missing: install it with `npm install -g aws-cdk@2`\n"


def test_npx_is_used_when_cdk_is_not_on_path(env, tmp_path):
    record = tmp_path / "cdk.json"
    result = env.run("deploy", "--dry-run", PATH=str(_bin_with(tmp_path, "npx")), FAKE_CDK_RECORD=str(record))
    assert result.returncode == 0, result.stderr
    assert json.loads(record.read_text())["args"] == ["--no-install", "aws-cdk@2", "synth", "--all"]


def test_npx_without_the_cdk_package_gets_the_same_hint_not_npms_output(env, tmp_path):
    directory = tmp_path / "bin"
    directory.mkdir()
    npx = directory / "npx"
    npx.write_text("#!/bin/sh\necho 'npm error could not determine executable to run' >&2\nexit 1\n")
    npx.chmod(0o755)
    result = env.run("deploy", "--dry-run", PATH=str(directory))
    assert result.returncode == 1
    assert result.stderr == "hyper: the AWS CDK CLI is missing: install it with `npm install -g aws-cdk@2`\n"
    assert result.stdout == ""


def test_synth_runs_with_the_interpreter_hyper_runs_in_unless_told_otherwise(env, tmp_path):
    record = tmp_path / "cdk.json"
    path = str(_bin_with(tmp_path, "cdk"))
    assert env.run("deploy", "--dry-run", PATH=path, FAKE_CDK_RECORD=str(record)).returncode == 0
    interpreter = Path(json.loads(record.read_text())["python"])
    assert interpreter.resolve() == Path(sys.executable).resolve()  # the virtualenv hyper is installed in
    assert env.run("deploy", "--dry-run", PATH=path, FAKE_CDK_RECORD=str(record),
                   HYPERBATCH_PYTHON="/opt/deploy/bin/python").returncode == 0
    assert json.loads(record.read_text())["python"] == "/opt/deploy/bin/python"


def test_invalid_configuration_is_one_line_per_problem_and_cdk_never_runs(env, tmp_path):
    record = tmp_path / "cdk.json"
    queues = json.loads((env.config / "queues.json").read_text())
    queues[0]["cluster"], queues[1]["definition"] = "nope", "missing"
    (env.config / "queues.json").write_text(json.dumps(queues))
    result = env.run("deploy", PATH=str(_bin_with(tmp_path, "cdk")), FAKE_CDK_RECORD=str(record))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "hyper: configuration error: queues.json: entry 'batch' field 'cluster': no cluster named 'nope'",
        "hyper: configuration error: queues.json: entry 'west' field 'definition': no definition named 'missing'",
    ]
    assert not record.exists()


def test_diff_needs_credentials(env, tmp_path):
    record = tmp_path / "cdk.json"
    result = env.run("deploy", "--diff", PATH=str(_bin_with(tmp_path, "cdk")), FAKE_CDK_RECORD=str(record))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "`cdk diff` needs AWS credentials (--dry-run does not): no AWS credentials found" in result.stderr
    assert not record.exists()


def test_deploy_runs_cdk_deploy_as_the_checked_identity(inprocess, env, tmp_path, monkeypatch, capfd):
    from moto import mock_aws

    from hyperbatch.cli.runner import run

    record = tmp_path / "cdk.json"
    monkeypatch.setenv("PATH", str(_bin_with(tmp_path, "cdk")) + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("FAKE_CDK_RECORD", str(record))
    with mock_aws():
        assert run(inprocess, "hyper", ["deploy"]) == 0
    assert "(account 123456789012)" in capfd.readouterr().err
    assert json.loads(record.read_text())["args"] == ["deploy", "--all", "--require-approval", "never"]

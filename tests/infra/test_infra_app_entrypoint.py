"""`python app.py`, as the CDK CLI runs it."""

from __future__ import annotations

import json
import re
import shutil

from infra_synthesis import EXAMPLE, start_app_py


def test_bad_configuration_stops_synth_with_file_entry_and_field(tmp_path):
    config_dir = tmp_path / "configurations"
    shutil.copytree(EXAMPLE, config_dir)
    queues = json.loads((config_dir / "queues.json").read_text())
    queues[0]["cluster"] = "no-such-cluster"
    (config_dir / "queues.json").write_text(json.dumps(queues))

    process = start_app_py(config_dir, tmp_path / "out")
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 1
    assert "queues.json: entry 'batch' field 'cluster': no cluster named 'no-such-cluster'" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_app_py_writes_the_control_plane_and_one_compute_template_per_region(app_py, synth):
    result, outdir = app_py
    assert result["returncode"] == 0, result["stderr"][-3000:]
    written = sorted(p.name for p in outdir.glob("*.template.json"))
    expected = [f"{synth.control_name}.template.json"] + [
        f"{synth.compute_name(r)}.template.json" for r in synth.config.compute_regions
    ]
    assert written == sorted(expected)
    # Same app, same templates as the in-process build. Asset hashes aside: they
    # follow the repository's files, which may change between the two builds.
    for name in synth.templates:
        from_app_py = (outdir / f"{name}.template.json").read_text()
        in_process = (synth.outdir / f"{name}.template.json").read_text()
        assert without_asset_hashes(from_app_py) == without_asset_hashes(in_process)


def without_asset_hashes(template_text: str) -> dict:
    return json.loads(re.sub(r"[0-9a-f]{64}", "<asset-hash>", template_text))


def test_app_py_run_by_hand_writes_cdk_out_and_names_the_templates(tmp_path):
    import os
    import subprocess
    import sys

    from infra_synthesis import REPO

    env = {k: v for k, v in os.environ.items() if k not in ("CDK_OUTDIR", "CDK_DEFAULT_ACCOUNT")}
    env["HYPERBATCH_CONFIG"] = str(EXAMPLE)
    result = subprocess.run([sys.executable, str(REPO / "app.py")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    written = sorted(p.name for p in (tmp_path / "cdk.out").glob("*.template.json"))
    assert written == ["HyperBatch-Compute-eu-west-1.template.json", "HyperBatch-Compute-us-east-1.template.json",
                       "HyperBatch-Compute-us-west-2.template.json", "HyperBatch-Control.template.json"]
    assert "HyperBatch-Control: cdk.out/HyperBatch-Control.template.json" in result.stdout


def run_cdk_json_app(tmp_path, env: dict) -> list[str]:
    """Run cdk.json's app command as the CDK CLI does (a shell, in the project directory, here a copy
    holding only a stand-in app.py); returns the argv the chosen interpreter was given."""
    import os
    import subprocess

    from infra_synthesis import REPO

    command = json.loads((REPO / "cdk.json").read_text())["app"]
    (tmp_path / "app.py").write_text("")
    record = tmp_path / "argv"
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(f'#!/bin/sh\necho "$0 $*" > {record}\n')
    fake.chmod(0o755)
    base = {"PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/")}
    subprocess.run(["/bin/sh", "-c", command], cwd=tmp_path, env=base | env, check=True, timeout=60)
    return record.read_text().split()


def test_cdk_json_runs_the_app_with_hyperbatch_python_else_the_python3_on_path(tmp_path):
    # `hyper deploy` passes the interpreter it runs in (HYPERBATCH_PYTHON); by hand, an activated
    # virtualenv's python3 comes first on PATH.
    chosen = tmp_path / "my venv" / "python"
    chosen.parent.mkdir()
    chosen.write_text(f'#!/bin/sh\necho "$0 $*" > {tmp_path / "argv"}\n')
    chosen.chmod(0o755)
    assert run_cdk_json_app(tmp_path, {"HYPERBATCH_PYTHON": str(chosen)})[-1] == "app.py"
    assert (tmp_path / "argv").read_text().startswith(f"{chosen} app.py")
    assert run_cdk_json_app(tmp_path, {}) == [str(tmp_path / "bin" / "python3"), "app.py"]


def test_app_py_run_by_a_python_without_the_deploy_dependencies_says_which_to_use():
    import subprocess
    import sys

    from infra_synthesis import REPO

    # -S: no site-packages, so neither the CDK nor pydantic can be imported.
    result = subprocess.run([sys.executable, "-S", "app.py"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "requirements-deploy.txt" in line and "HYPERBATCH_PYTHON" in line and sys.executable in line

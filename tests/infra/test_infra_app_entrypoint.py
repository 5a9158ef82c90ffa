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

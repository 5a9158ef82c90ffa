"""File staging through the files bucket (hyperbatch/core/bucket.py), end to end in the box: qsub
uploads a job's input by the URLs the API presigns, a worker downloads it into the job's directory and
uploads the job's stage-out files and its output, `hyper fetch` brings them into the submit directory;
another user can neither read a job's files nor point a job at someone else's upload.

The PBS commands and `hyper` run in this process against the API over HTTP (`http_api`, an AWS host
whose signer's access key names the caller); their presigned S3 transfers go to moto's server.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from hyperbatch.core import bucket
from hyperbatch.core.errors import PBSE_PERM
from tests.aws_box.harness import ALICE, BOB, http_api, moto_server, s3_opener

KEYS = {"AKIAALICE": ALICE, "AKIABOB": BOB}


@pytest.fixture
def cli(box, tmp_path, monkeypatch, capsys):
    """cli(user, "qsub", args...) -> (exit code, stdout, stderr): a command as `user` (alice, bob), in
    the submit directory `cli.workdir`, against the box as an AWS host."""
    from hyperbatch.cli import files

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    workdir = tmp_path / "submit"
    workdir.mkdir()
    with moto_server() as s3_url, http_api(box, KEYS) as api_url:
        hosts = {"selected": "box", "hosts": {"box": {"kind": "aws", "url": api_url, "region": box.region}}}
        (home / "hosts.json").write_text(json.dumps(hosts))
        monkeypatch.setattr(files, "_open", s3_opener(s3_url))

        def run(user: str, command: str, *args: str) -> tuple[int, str, str]:
            with monkeypatch.context() as m:
                m.setenv("HYPERBATCH_HOME", str(home))
                m.setenv("LOGNAME", user)
                m.setenv("AWS_ACCESS_KEY_ID", f"AKIA{user.upper()}")
                m.chdir(workdir)
                capsys.readouterr()
                if command == "hyper":
                    from hyperbatch.cli.hyper import hyper
                    from hyperbatch.cli.runner import run as run_click

                    code = run_click(hyper, "hyper", list(args))
                else:
                    code = getattr(importlib.import_module(f"hyperbatch.cli.pbs.{command}"), f"{command}_main")(list(args))
                out, err = capsys.readouterr()
            return code, out, err

        run.workdir = workdir  # type: ignore[attr-defined]
        yield run


def test_input_uploaded_by_qsub_is_read_by_a_worker_and_outputs_come_back_with_hyper_fetch(box, cli):
    work: Path = cli.workdir
    (work / "data").mkdir()
    (work / "data" / "in.txt").write_text("forty-two\n")
    (work / "job.sh").write_text("#!/bin/sh\nmkdir -p results\ntr a-z A-Z < in.txt > results/out.txt\n"
                                 "echo read $(cat in.txt)\necho warn >&2\n")
    code, out, err = cli("alice", "qsub", "-W", f"stagein=in.txt@localhost:{work}/data/in.txt",
                         "-W", f"stageout=results/out.txt@localhost:{work}/results/out.txt", "job.sh")
    assert (code, err) == (0, "")
    job_id = out.strip()
    # The upload is the caller's own, and the job names it by its s3:// URI.
    (stage_in,) = box.job(job_id)["stagein"]
    prefix = f"in.txt@s3://{box.files_bucket}/{bucket.UPLOAD_PREFIX}{bucket.owner_key(ALICE)}/"
    assert stage_in.startswith(prefix) and stage_in.endswith("/in.txt")

    box.start_worker()
    done = box.wait_state(job_id, "SUCCEEDED", "FAILED")
    assert done["state"] == "SUCCEEDED", done["reason"]
    assert done["stageout_files"] == [{"path": "results/out.txt", "dest": f"{work}/results/out.txt", "size": 10}]

    code, out, err = cli("alice", "hyper", "fetch", job_id)
    assert (code, err) == (0, "")
    seq = job_id.split(".")[0]
    assert (work / "results" / "out.txt").read_text() == "FORTY-TWO\n"
    assert (work / f"job.sh.o{seq}").read_text() == "read forty-two\n"
    assert (work / f"job.sh.e{seq}").read_text() == "warn\n"
    assert sorted(out.split("\n")[:-1]) == sorted([f"{work}/job.sh.e{seq} (5 bytes)", f"{work}/job.sh.o{seq} (15 bytes)",
                                                   f"{work}/results/out.txt (10 bytes)"])

    # Another user reads nothing of it: PBS's wording and exit status, and no file written.
    elsewhere = work / "bob"
    code, out, err = cli("bob", "hyper", "fetch", job_id, "--dest", str(elsewhere))
    assert (code, out, err) == (PBSE_PERM & 0xFF, "", f"hyper fetch: Unauthorized Request  {job_id}\n")
    assert not elsewhere.exists()
    status, answer = box.api("GET", f"/jobs/{job_id}/files", principal=BOB)
    assert (status, answer["pbs_errno"]) == (403, PBSE_PERM) and "url" not in json.dumps(answer)


def test_a_job_cannot_name_another_users_upload_nor_one_that_is_not_there(box, cli):
    status, upload = box.api("POST", "/uploads", body={"files": ["secret.txt"]})
    assert status == 201
    alices = upload["prefix"] + "secret.txt"
    # Bob names Alice's upload: refused at submit, nothing stored.
    status, answer = box.api("POST", "/jobs", principal=BOB, body={"command": ["true"], "stagein": [f"s.txt@{alices}"]})
    assert status == 400 and "only under its owner's uploads" in answer["message"]
    # Alice names it before uploading: refused until it is there.
    status, answer = box.api("POST", "/jobs", body={"command": ["true"], "stagein": [f"s.txt@{alices}"]})
    assert status == 400 and answer["message"].endswith("nothing was uploaded there (qsub uploads the file before it submits)")
    status, answer = box.api("GET", "/jobs", principal=BOB)
    assert status == 200 and answer["jobs"] == []
    # A stage-in from the submit host that no upload carried cannot reach a worker on AWS.
    status, answer = box.api("POST", "/jobs", body={"command": ["true"], "stagein": ["a@localhost:/tmp/a"]})
    assert status == 400 and "a worker on AWS cannot reach localhost" in answer["message"]


def test_a_missing_input_fails_the_job_and_a_failed_stage_out_keeps_what_went(box, cli):
    work: Path = cli.workdir
    (work / "in.txt").write_text("x\n")
    code, out, _ = cli("alice", "qsub", "--stage-in", "in.txt", "--stage-out", "*.csv:s3://elsewhere-bucket/out/",
                       "--", "sh", "-c", "echo a > a.csv; echo b > b.csv; exit 3")
    assert code == 2 and "workers may not write there" in _  # only settings.staging_locations
    code, out, err = cli("alice", "qsub", "--stage-in", "in.txt", "--stage-out", "*.csv", "--stage-out", "none.txt",
                         "--", "sh", "-c", "echo a > a.csv; echo b > b.csv; exit 3")
    assert (code, err) == (0, "")
    ran = out.strip()
    # The upload goes away before the job runs (lifecycle, say): the job fails with PBS's stage-in status.
    (stage_in,) = box.job(ran)["stagein"]
    box.s3.delete_object(Bucket=box.files_bucket, Key=bucket.parse_s3(stage_in.partition("@")[2]).key)
    box.start_worker()
    failed = box.wait_state(ran, "FAILED", "SUCCEEDED")
    assert failed["exit_status"] == -1 and failed["reason"].startswith("File stage in failed: in.txt@s3://")
    assert failed["stageout_files"] == [] and not (work / "a.csv").exists()

    # A job that exits 3: its CSVs still go out (whatever the exit status), the missing one is reported.
    (work / "in.txt").write_text("y\n")
    code, out, _ = cli("alice", "qsub", "--stage-in", "in.txt", "--stage-out", "*.csv", "--stage-out", "none.txt",
                       "--", "sh", "-c", "echo a > a.csv; echo b > b.csv; exit 3")
    second = out.strip()
    done = box.wait_state(second, "FAILED", "SUCCEEDED")
    assert done["exit_status"] == 3
    assert [f["path"] for f in done["stageout_files"]] == ["a.csv", "b.csv"]
    assert "File stage out failed: none.txt@" in done["reason"]
    code, out, err = cli("alice", "hyper", "fetch", second, "--dest", str(work / "got"))
    assert code == 0
    assert sorted(p.name for p in (work / "got").iterdir()) == ["STDIN.e" + second.split(".")[0],
                                                                 "STDIN.o" + second.split(".")[0], "a.csv", "b.csv"]
    assert (work / "got" / "b.csv").read_text() == "b\n"
    assert not (work / "a.csv").exists()  # --dest: everything under it, nothing where the pairs named


def test_qsub_wait_leaves_the_jobs_files_in_the_submit_directory(box, cli):
    work: Path = cli.workdir
    box.start_worker()
    code, out, err = cli("alice", "qsub", "--wait", "--stage-out", "out.txt", "--",
                         "sh", "-c", "echo result > out.txt; echo done; exit 4")
    assert (code, err) == (4, "")  # the job's exit status, as a shell reports it
    seq = out.strip().split(".")[0]
    assert (work / "out.txt").read_text() == "result\n"
    assert (work / f"STDIN.o{seq}").read_text() == "done\n"
    assert (work / f"STDIN.e{seq}").read_text() == ""


def test_a_workflow_step_s_input_is_uploaded_by_hyper_workflow_submit_and_read_by_its_worker(box, cli):
    work: Path = cli.workdir
    (work / "in.txt").write_text("seven\n")
    (work / "flow.yaml").write_text(
        "name: staged\n"
        "jobs:\n"
        "  read: {command: [sh, -c, 'test \"$(cat in.txt)\" = seven'], stagein: ['in.txt@localhost:in.txt']}\n"
        "  after: {command: ['true'], depends_on: [read]}\n")
    code, out, err = cli("alice", "hyper", "workflow", "submit", "flow.yaml")
    assert (code, err) == (0, ""), err
    jobs = dict(line.split("\t") for line in out.splitlines())
    (stage_in,) = box.job(jobs["read"])["stagein"]
    assert stage_in.startswith(f"in.txt@s3://{box.files_bucket}/{bucket.UPLOAD_PREFIX}{bucket.owner_key(ALICE)}/")
    box.start_worker()
    assert box.wait_state(jobs["after"], "SUCCEEDED", "CANCELLED")["state"] == "SUCCEEDED"
    assert box.job(jobs["read"])["exit_status"] == 0

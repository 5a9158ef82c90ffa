"""File staging through the files bucket (hyperbatch/core/bucket.py), end to end in the box: qsub
uploads a job's input by the URLs the API presigns, a worker downloads it into the job's directory and
uploads the job's stage-out files and its output, `hyper fetch` brings them into the submit directory;
another user can neither read a job's files nor point a job at someone else's upload.

The PBS commands and `hyper` run in this process against the API over HTTP (`http_api`, an AWS host
whose signer's access key names the caller); their presigned S3 transfers go to moto's server.
"""

from __future__ import annotations

import hashlib
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
@pytest.fixture
def small_parts(monkeypatch):
    """Multipart uploads from 1 KiB, in parts of 1 KiB, two URLs asked for at a time (the API's setting
    and qsub's batch lowered, and moto's smallest part with them), so that a test's file is small."""
    from hyperbatch.cli import files
    from hyperbatch.wiring import lambdas

    bucket_files = lambdas.get().files
    monkeypatch.setattr(bucket_files, "threshold", 1024)
    monkeypatch.setattr(bucket_files, "min_part", 1024)
    monkeypatch.setattr(files, "PART_BATCH", 2)
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 1024)


def _failing(monkeypatch, fails) -> list[str]:
    """qsub's S3 requests go through `fails(url)` first (it may raise); the URLs of every request tried."""
    from hyperbatch.cli import files

    tried, real = [], files._open

    def open_(request):
        tried.append(request.full_url)
        fails(request.full_url)
        return real(request)

    monkeypatch.setattr(files, "_open", open_)
    return tried


def _unfinished(box) -> list:
    return box.s3.list_multipart_uploads(Bucket=box.files_bucket).get("Uploads", [])


def test_a_large_input_goes_up_in_parts_and_a_part_that_fails_once_is_sent_again(box, cli, small_parts, monkeypatch):
    import urllib.error

    work: Path = cli.workdir
    data = bytes(range(256)) * 18 + b"end"  # 4,611 bytes: parts of 1,024 and a last of 515
    (work / "big.bin").write_bytes(data)
    failed = []

    def fails(url: str) -> None:
        if "partNumber=3&" in url + "&" and not failed:
            failed.append(url)
            raise urllib.error.HTTPError(url, 503, "Slow Down", {}, None)  # type: ignore[arg-type]

    tried = _failing(monkeypatch, fails)
    code, out, err = cli("alice", "qsub", "--stage-in", "big.bin", "--", "sh", "-c", "wc -c < big.bin; md5sum big.bin")
    assert (code, err) == (0, "")
    job_id = out.strip()
    parts = [url for url in tried if "partNumber=" in url]
    assert len(parts) == 6 and sum("partNumber=3&" in url + "&" for url in parts) == 2  # 5 parts, the third twice
    (stage_in,) = box.job(job_id)["stagein"]
    key = bucket.parse_s3(stage_in.partition("@")[2]).key
    stored = box.s3.get_object(Bucket=box.files_bucket, Key=key)
    assert stored["Body"].read() == data and stored["ETag"].strip('"').endswith("-5")  # one object of 5 parts
    assert _unfinished(box) == []

    box.start_worker()
    done = box.wait_state(job_id, "SUCCEEDED", "FAILED")
    assert done["state"] == "SUCCEEDED", done["reason"]
    code, out, err = cli("alice", "hyper", "fetch", job_id)
    output = (work / f"STDIN.o{job_id.split('.')[0]}").read_text()
    assert output == f"4611\n{hashlib.md5(data).hexdigest()}  big.bin\n"  # noqa: S324 (a checksum)


def test_a_part_that_cannot_go_aborts_the_upload_and_submits_nothing(box, cli, small_parts, monkeypatch):
    import urllib.error

    (cli.workdir / "big.bin").write_bytes(b"x" * 3000)

    def fails(url: str) -> None:
        if "partNumber=2&" in url + "&":
            raise urllib.error.HTTPError(url, 403, "Forbidden", {}, None)  # type: ignore[arg-type]

    _failing(monkeypatch, fails)
    code, out, err = cli("alice", "qsub", "--stage-in", "big.bin", "--", "true")
    assert (code, out) == (1, "")
    assert err == f"qsub: cannot upload {cli.workdir}/big.bin (part 2): S3 answered 403 Forbidden\n"
    assert _unfinished(box) == [] and box.api("GET", "/jobs")[1]["jobs"] == []


def test_each_step_of_a_multipart_upload_is_its_owners_only(box, small_parts):
    status, alices = box.api("POST", "/uploads", body={"files": [{"path": "big.bin", "size": 5000}, "small.txt"]})
    assert status == 201 and list(alices["urls"]) == ["small.txt"]
    assert alices["multipart"]["big.bin"]["part_size"] == 1024 and alices["multipart"]["big.bin"]["parts"] == 5
    mine = {"uri": alices["prefix"] + "big.bin", "upload_id": alices["multipart"]["big.bin"]["upload_id"]}
    status, page = box.api("POST", "/uploads/parts", body={**mine, "first": 4, "count": 2})
    assert status == 200 and [u["number"] for u in page["urls"]] == [4, 5]

    # Bob names Alice's object: refused at every step, in PBS's words.
    for step, body in (("parts", mine), ("complete", {**mine, "parts": [{"number": 1, "etag": "x"}]}), ("abort", mine)):
        status, answer = box.api("POST", f"/uploads/{step}", principal=BOB, body=body)
        assert (status, answer["pbs_errno"], answer["message"]) == (403, PBSE_PERM, f"{mine['uri']} is not one of your uploads")
    # Bob names his own object with Alice's upload id: no such upload there.
    status, bobs = box.api("POST", "/uploads", principal=BOB, body={"files": [{"path": "big.bin", "size": 5000}]})
    status, answer = box.api("POST", "/uploads/parts", principal=BOB,
                             body={"uri": bobs["prefix"] + "big.bin", "upload_id": mine["upload_id"]})
    assert status == 404 and f"no multipart upload {mine['upload_id']} is in progress there" in answer["message"]
    # Bob continuing "Alice's" upload id writes under his own prefix, never hers.
    status, more = box.api("POST", "/uploads", principal=BOB, body={"files": ["x.txt"], "upload": alices["upload"]})
    assert status == 201 and more["prefix"] != alices["prefix"] and bucket.owner_key(BOB) in more["prefix"]

    # Alice aborts hers: it is gone, and nothing of it stays.
    assert box.api("POST", "/uploads/abort", body=mine)[0] == 200
    status, answer = box.api("POST", "/uploads/parts", body=mine)
    assert status == 404
    assert [u["Key"] for u in _unfinished(box)] == [bucket.parse_s3(bobs["prefix"]).key + "big.bin"]


def test_an_arrays_inputs_are_uploaded_per_index_and_a_task_whose_input_is_missing_fails(box, cli, monkeypatch):
    work: Path = cli.workdir
    for index in (1, 3):
        (work / f"part{index}.txt").write_text(f"p{index}\n")
    pair = f"in.txt@localhost:{work}/part^array_index^.txt"
    with monkeypatch.context() as m:  # past the limit: refused in one line, nothing uploaded nor submitted
        m.setattr(bucket, "MAX_STAGED_FILES", 1)
        code, out, err = cli("alice", "qsub", "-J", "1-3", "-W", f"stagein={pair}", "--", "cat", "in.txt")
    assert (code, out, err) == (1, "", f"qsub: stagein: {work}/part^array_index^.txt: the array's inputs are more than "
                                       "qsub uploads (1 files, 100 GiB); put them in S3 and name s3://BUCKET/KEY with "
                                       "^array_index^ in it instead\n")
    assert box.s3.list_objects_v2(Bucket=box.files_bucket, Prefix=bucket.UPLOAD_PREFIX)["KeyCount"] == 0

    code, out, err = cli("alice", "qsub", "-J", "1-3", "-W", f"stagein={pair}", "--", "cat", "in.txt")
    assert (code, err) == (0, "")
    job_id = out.strip()
    (stage_in,) = box.job(job_id)["stagein"]
    assert stage_in.endswith("/0/^array_index^/part^array_index^.txt")
    box.start_worker()
    done = box.wait_state(job_id, "FAILED", "SUCCEEDED")
    assert done["exit_status"] == -1
    status, view = box.api("GET", f"/jobs/{job_id}")
    assert view["array"]["failed_tasks"] == {"2": -1}, view["array"]
    # Its reason is in the array's history (tracejob), as a plain job's would be.
    (line,) = [text for _, source, text in view["history"] if "File stage in failed" in text]
    assert line.startswith("task 2: File stage in failed: in.txt@s3://") and "/0/2/part2.txt does not exist" in line
    code, out, err = cli("alice", "hyper", "fetch", job_id, "--dest", str(work / "got"))
    seq = job_id.split("[")[0]
    assert [(work / "got" / str(i) / f"STDIN.o{seq}.{i}").read_text() for i in (1, 3)] == ["p1\n", "p3\n"]

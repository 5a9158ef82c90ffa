"""File staging: throughput locally and through S3 (moto), and what staging adds to a job's control-plane cost.

    .venv/bin/python bench/staging.py [--big-mb 200] [--small 1000] [--small-kb 10]

Throughput: the stagers themselves, in this process, on one 200 MB file and on 1,000 files of
10 KB (a directory), stage-in then stage-out:
- locally, `adapters/local/staging.LocalStager` between two directories of this machine (stage-in
  copies, or hard-links a read-only file; stage-out moves, a rename on one filesystem);
- through S3, `adapters/aws/staging.S3Stager` against moto in this process: moto keeps objects in
  memory and answers without a network, so the figure is only relative (`ratio_s3_vs_local`), a
  measure of the code's own overhead per file and per byte, not of S3. (Locally a stage-out on one
  filesystem is a rename, so its "throughput" is that of a rename.)

Cost: one job with one 1 MB input uploaded by qsub and one 1 MB output fetched back, run in
AWS in a box (tests/aws_box/harness.py), every call counted: the API requests and Lambda time the
upload and the fetch add (POST /uploads, GET /jobs/ID and /files), the S3 requests of the API and
the worker (metered), the presigned PUT and GETs (counted), and the storage of the input and the
outputs for their lifecycle (bench/prices.py). Printed per job and per million jobs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import prices  # noqa: E402

MB = 1 << 20
RETENTION_DAYS = 30  # settings.job_retention_days as configurations/settings.json sets it


def _tree(root: Path, big_mb: int, small: int, small_kb: int) -> None:
    (root / "small").mkdir(parents=True)
    with open(root / "big.bin", "wb") as f:
        for _ in range(big_mb):
            f.write(os.urandom(MB))
    for i in range(small):
        (root / "small" / f"f{i:05d}.dat").write_bytes(os.urandom(small_kb * 1024))


def _rate(label: str, seconds: float, nbytes: int, files: int) -> dict:
    return {f"{label}_mb_per_s": round(nbytes / MB / seconds, 1), f"{label}_files_per_s": round(files / seconds, 1)}


def _run(stager, job_in: dict, job_out: dict, workdir: Path, nbytes: int, files: int, label: str) -> dict:
    started = time.perf_counter()
    done = stager.stage_in(job_in, None, workdir)
    took_in = time.perf_counter() - started
    assert not done.failures, done.failures
    started = time.perf_counter()
    done = stager.stage_out(job_out, None, workdir)
    took_out = time.perf_counter() - started
    assert not done.failures, done.failures
    return {**_rate(f"{label}_stage_in", took_in, nbytes, files), **_rate(f"{label}_stage_out", took_out, nbytes, files)}


def throughput(big_mb: int, small: int, small_kb: int) -> dict:
    from hyperbatch.adapters.local.staging import LocalStager

    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="hb-stage-bench-") as tmp:
        root = Path(tmp)
        _tree(root / "src", big_mb, small, small_kb)
        cases = {"big": ("big.bin", big_mb * MB, 1), "small": ("small/", small * small_kb * 1024, small)}
        for name, (path, nbytes, files) in cases.items():
            local = path.rstrip("/")
            work = root / f"work-{name}"
            work.mkdir()
            job = {"id": "1", "stagein": [f"{local}@localhost:{root / 'src' / local}"],
                   "stageout": [f"{local}@localhost:{root / 'out' / name}/"]}
            figures.update(_run(LocalStager(), job, job, work, nbytes, files, f"local_{name}"))
        figures.update(_through_moto(root, cases))
    for name in ("big", "small"):
        for way in ("stage_in", "stage_out"):
            local, s3 = figures[f"local_{name}_{way}_mb_per_s"], figures[f"s3_{name}_{way}_mb_per_s"]
            figures[f"ratio_s3_vs_local_{name}_{way}"] = float(f"{s3 / local:.3g}") if local else None
    return figures


def _through_moto(root: Path, cases: dict) -> dict:
    import boto3
    from moto import mock_aws

    from hyperbatch.adapters.aws.files import S3Transfers
    from hyperbatch.adapters.aws.staging import S3Stager

    figures: dict = {}
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="bench-files")
        transfers = S3Transfers(client, "bench-files")
        for name, (path, nbytes, files) in cases.items():
            local = path.rstrip("/")
            source = root / "src" / local
            for file in ([source] if source.is_file() else sorted(source.rglob("*"))):
                key = f"uploads/bench/{name}/{file.relative_to(root / 'src').as_posix()}"
                client.upload_file(str(file), "bench-files", key)
            remote = f"s3://bench-files/uploads/bench/{name}/{path}"
            work = root / f"s3-work-{name}"
            work.mkdir()
            job = {"id": name, "stagein": [f"{local}@{remote}"], "stageout": [f"{local}@localhost:/results/"]}
            figures.update(_run(S3Stager(transfers), job, job, work, nbytes, files, f"s3_{name}"))
    return figures


# ---- cost ---------------------------------------------------------------------------------------

S3_PUT_CLASS = {"PutObject", "ListObjectsV2", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload",
                "CopyObject"}


class _BoxClient:
    """The CLI's client (hyperbatch.cli.client.Client.request) over the box's API function, as Alice."""

    def __init__(self, box):
        self.box = box

    def request(self, method, path, query=None, body=None):
        from hyperbatch.cli.errors import ApiError

        status, answer = self.box.api(method, path, body=body, query=query)
        if status >= 300:
            raise ApiError(status, "", str(answer))
        return status, answer


def cost_per_job() -> dict:
    from hyperbatch.cli import files as cli_files
    from tests.aws_box.harness import Box, moto_server, s3_opener

    with tempfile.TemporaryDirectory(prefix="hb-stage-cost-") as tmp, Box() as box:
        work = Path(tmp)
        (work / "in.bin").write_bytes(os.urandom(MB))
        box.start_stream()
        transfers = {"PUT": 0, "GET": 0}
        with moto_server() as url:
            opener = s3_opener(url)

            def counted(request):
                transfers[request.get_method()] += 1
                return opener(request)

            cli_files._open = counted
            client = _BoxClient(box)
            # Warm: the API function's S3 client is made once per execution environment, not per job.
            box.api("POST", "/uploads", body={"files": ["warm"]})
            box.meter.clear()
            first = len(box.invocations)
            stagein = cli_files.upload_stage_in(client, [f"in.bin@localhost:{work / 'in.bin'}"])
            added = [i for i in box.invocations[first:] if i.function == "api"]  # POST /uploads
            job = box.submit(command=["sh", "-c", "head -c 1048576 /dev/urandom > out.bin; echo done"],
                             stagein=stagein, stageout=[f"out.bin@localhost:{work}/results/"], workdir=str(work))
            box.start_worker()
            job = box.wait_state(job["id"], "SUCCEEDED", "FAILED", timeout=60)
            assert job["state"] == "SUCCEEDED", job["reason"]
            first = len(box.invocations)
            _, job = client.request("GET", f"/jobs/{job['id']}")
            written = cli_files.fetch(client, job, str(work / "fetched"))
            added += [i for i in box.invocations[first:] if i.function == "api"]  # GET /jobs/ID, /jobs/ID/files
        calls = [c for c in box.meter.calls if c.service == "s3"]
        api_calls = len(added)
        api_seconds = sum(max(0.001, i.seconds) for i in added)
        memory_gb = box.memory_mb["api"] / 1024

    put_class = sum(1 for c in calls if c.operation in S3_PUT_CLASS) + transfers["PUT"]
    get_class = sum(1 for c in calls if c.operation not in S3_PUT_CLASS) + transfers["GET"]
    # Byte-months: the input kept job retention (30 days) + 14, the outputs job retention.
    stored = MB * (RETENTION_DAYS + 14) / 30 + sum(size for _, size in written) * RETENTION_DAYS / 30
    usd = {
        "api_gateway": api_calls * prices.API_GATEWAY_HTTP_PER_REQUEST,
        "lambda": api_calls * prices.LAMBDA_PER_REQUEST + api_seconds * memory_gb * prices.LAMBDA_PER_GB_SECOND_ARM64,
        "s3_requests": put_class * prices.S3_PUT_PER_REQUEST + get_class * prices.S3_GET_PER_REQUEST,
        "s3_storage": stored / (1 << 30) * prices.S3_STORAGE_PER_GB_MONTH,
    }
    total = sum(usd.values())
    return {
        "api_requests_added": api_calls,
        "s3_put_class_requests": put_class,
        "s3_get_class_requests": get_class,
        "s3_operations": sorted({f"{c.operation}" for c in calls}),
        **{f"usd_per_million_jobs_{k}": round(v * 1e6, 2) for k, v in usd.items()},
        "staging_cost_per_million_jobs_usd": round(total * 1e6, 2),
        "egress_to_submit_host_per_million_jobs_usd": round(
            sum(size for _, size in written) / (1 << 30) * prices.DATA_TRANSFER_OUT_PER_GB * 1e6, 2),
        "prices_as_of": prices.PRICES_AS_OF,
    }


def main() -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server: one line per request
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--small-kb", type=int, default=10)
    args = parser.parse_args()
    for key, value in {**throughput(args.big_mb, args.small, args.small_kb), **cost_per_job()}.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()

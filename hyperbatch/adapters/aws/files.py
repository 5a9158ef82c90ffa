"""The files bucket (HYPER_FILES_BUCKET) as the API and the workers use it; the layout is
hyperbatch.core.bucket's.

The API side (`S3Files`) hands out presigned URLs and looks at what is there:
PUT URLs for a new upload under the caller's own prefix, GET URLs for a job's
files, and whether the uploads a submitted job names exist. A URL is signed
with the API function's role, so users need no S3 permissions at all.

The worker side (`S3Transfers`) moves files between the job's directory and S3
with boto3's transfer manager: objects over TRANSFER.multipart_threshold go in
parts, several at once, and botocore retries each call (the shared clients'
standard mode: backoff on throttling, 5xx and broken connections; aws/clients.py)
before a transfer counts as failed.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

from boto3.s3.transfer import S3Transfer, TransferConfig
from botocore.exceptions import ClientError

from hyperbatch.core import bucket as layout
from hyperbatch.core.bucket import S3Uri

URL_SECONDS = 3600  # a presigned URL's life: an upload or a download started within the hour
TRANSFER = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=8)
MAX_UPLOAD_FILES = 1000  # files one upload may name (a directory's tree counts file by file)


class S3Files:
    """The API's view of the bucket: presigned URLs, and what is there."""

    def __init__(self, client, bucket: str, *, url_seconds: int = URL_SECONDS):
        self.client, self.bucket, self.url_seconds = client, bucket, url_seconds

    def upload(self, owner: str, paths: list[str]) -> dict:
        """A new upload of `owner`: its S3 prefix and a PUT URL per relative path."""
        prefix = layout.upload_prefix(owner, uuid.uuid4().hex)
        urls = {path: self._url("put_object", prefix + layout.check_relative(path)) for path in paths}
        return {"prefix": f"s3://{self.bucket}/{prefix}", "urls": urls, "expires_in": self.url_seconds}

    def missing(self, uris: list[S3Uri]) -> list[S3Uri]:
        """Which of these objects (or prefixes, ending in '/') of the bucket hold nothing."""
        return [uri for uri in uris if not self._exists(uri)]

    def job_files(self, job_id: str) -> list[dict]:
        """A job's files (its tasks' too), each with its size and a GET URL: {"name", "size", "url"}."""
        prefix = layout.job_prefix(job_id)
        return [{"name": key[len(prefix):], "size": size, "url": self._url("get_object", key)}
                for key, size in _objects(self.client, self.bucket, prefix)]

    def _url(self, method: str, key: str) -> str:
        return self.client.generate_presigned_url(method, Params={"Bucket": self.bucket, "Key": key},
                                                  ExpiresIn=self.url_seconds)

    def _exists(self, uri: S3Uri) -> bool:
        if uri.key.endswith("/"):
            return bool(self.client.list_objects_v2(Bucket=uri.bucket, Prefix=uri.key, MaxKeys=1).get("KeyCount"))
        try:
            self.client.head_object(Bucket=uri.bucket, Key=uri.key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True


class S3Transfers:
    """A worker's transfers between its job directories and S3 (multipart, retried)."""

    def __init__(self, client, bucket: str):
        self.client, self.bucket = client, bucket
        self._manager: S3Transfer | None = None

    @property
    def manager(self) -> S3Transfer:
        """One transfer manager for all transfers: its threads are started once, not per file (a
        directory of a thousand small files would otherwise start a thousand pools)."""
        if self._manager is None:
            self._manager = S3Transfer(self.client, TRANSFER)
        return self._manager

    def download(self, uri: S3Uri, dest: Path) -> list[Path]:
        """The object to `dest`, or every object under a prefix (a key ending in '/') into the
        directory `dest`, keeping their relative paths. Raises FileNotFoundError when nothing is there."""
        if not uri.key.endswith("/"):
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.manager.download_file(uri.bucket, uri.key, str(dest))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    raise FileNotFoundError(f"{uri} does not exist") from None
                raise
            return [dest]
        got = []
        for key, _ in _objects(self.client, uri.bucket, uri.key):
            relative = key[len(uri.key):]
            if not relative or relative.endswith("/"):
                continue  # a "folder" object the console makes
            target = dest / layout.check_relative(relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            self.manager.download_file(uri.bucket, key, str(target))
            got.append(target)
        if not got:
            raise FileNotFoundError(f"{uri} holds no objects")
        return got

    def upload(self, path: Path, uri: S3Uri) -> int:
        """The file at `path` to `uri` (a key ending in '/': the file's name under that prefix); its size."""
        key = uri.key + path.name if uri.key.endswith("/") or not uri.key else uri.key
        self.manager.upload_file(str(path), uri.bucket, key)
        return path.stat().st_size

    def put(self, key: str, data: bytes) -> None:
        """Small bytes (a run's stdout, say) to a key of the files bucket."""
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def job_uri(self, job_id: str, index: int | None, relative: str) -> S3Uri:
        return S3Uri(self.bucket, layout.job_prefix(job_id, index) + layout.check_relative(relative))


def _objects(client, bucket: str, prefix: str) -> Iterator[tuple[str, int]]:
    """(key, size) of every object under `prefix`, in key order."""
    token = None
    while True:
        params = {"Bucket": bucket, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
        page = client.list_objects_v2(**params)
        for item in page.get("Contents", []):
            yield item["Key"], item["Size"]
        token = page.get("NextContinuationToken")
        if not token:
            return



READ_BYTES = 1 << 20  # a run's output is read back from the log store this much at a time


class OutputsToBucket:
    """The agent's `deliver` on AWS (services/agent.Settings): when a run ends, each output file PBS
    would write (core/outputs: NAME.oN, NAME.eN, or the -o/-e name) goes to the job's prefix under
    its file name, read back from the log store that the run's output was shipped to as it came.
    `hyper fetch` and `qsub --wait` download them into the submit directory."""

    def __init__(self, transfers: S3Transfers, logs):
        self.transfers, self.logs = transfers, logs

    def __call__(self, job_id: str, index: int | None, stream: str, path: str, mode: int) -> None:
        try:
            data, offset = bytearray(), 0
            while True:
                chunk, offset = self.logs.read(job_id, index, stream, offset, READ_BYTES)
                if not chunk:
                    break
                data += chunk
            key = layout.job_prefix(job_id, index) + layout.check_relative(os.path.basename(path) or stream)
            self.transfers.put(key, bytes(data))
        except Exception as exc:  # the agent reports an OSError and carries on; a worker never dies of it
            raise OSError(f"could not keep {stream} in s3://{self.transfers.bucket}: {exc}") from exc

"""The files bucket (HYPER_FILES_BUCKET) as the API and the workers use it; the layout is
hyperbatch.core.bucket's.

The API side (`S3Files`) hands out presigned URLs and looks at what is there:
PUT URLs for a new upload under the caller's own prefix, GET URLs for a job's
files, and whether the uploads a submitted job names exist. A URL is signed
with the API function's role, so users need no S3 permissions at all. A file
of `threshold` bytes or more gets a multipart upload instead of a PUT URL:
UploadPart URLs a page at a time, then the API completes (or aborts) it. Every
step names the object's key, which must be the caller's (core/bucket.owned_upload),
and the upload id must be one in progress for that very key (S3 would also
refuse another key's id; the listing says so in words, and moto does not check).

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
from hyperbatch.core.errors import NotFound, SpecError

URL_SECONDS = 3600  # a presigned URL's life: an upload or a download started within the hour
# A worker's transfers: parts of 16 MiB above 16 MiB (s3transfer grows them for objects over 160 GB, to
# stay within 10,000 parts), 8 at once; each request retried by botocore (aws/clients.py), a download's
# broken stream retried 5 times.
TRANSFER = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=8,
                          num_download_attempts=5)


class S3Files:
    """The API's view of the bucket: presigned URLs, and what is there."""

    def __init__(self, client, bucket: str, *, url_seconds: int = URL_SECONDS,
                 threshold: int = layout.MULTIPART_THRESHOLD, min_part: int = layout.MIN_PART):
        self.client, self.bucket, self.url_seconds = client, bucket, url_seconds
        self.threshold, self.min_part = threshold, min_part  # lowered by tests, to keep their files small

    def upload(self, owner: str, files: list[tuple[str, int | None]], upload_id: str | None = None) -> dict:
        """Files (relative path, size if known) of an upload of `owner`: a new one, or more of one of
        theirs (`upload_id`: its prefix is made from the caller, so it can only be their own). A PUT
        URL for each file under the threshold; a multipart upload for each file at or above it."""
        upload_id = upload_id or uuid.uuid4().hex
        prefix = layout.upload_prefix(owner, upload_id)
        urls, multipart = {}, {}
        for path, size in files:
            key = prefix + layout.check_relative(path)
            if size is None or size < self.threshold:
                urls[path] = self._url("put_object", {"Key": key})
                continue
            part = layout.part_size(size, self.min_part)
            started = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
            multipart[path] = {"upload_id": started["UploadId"], "part_size": part,
                               "parts": layout.part_count(size, part)}
        return {"prefix": f"s3://{self.bucket}/{prefix}", "upload": upload_id, "urls": urls,
                "multipart": multipart, "expires_in": self.url_seconds}

    def part_urls(self, owner: str, uri: str, upload_id: str, first: int, count: int) -> list[dict]:
        """UploadPart URLs for parts first .. first+count-1 of `owner`'s multipart upload at `uri`."""
        key = self._in_progress(owner, uri, upload_id)
        last = min(first + count - 1, layout.MAX_PARTS)
        return [{"number": n, "url": self._url("upload_part", {"Key": key, "UploadId": upload_id, "PartNumber": n})}
                for n in range(first, last + 1)]

    def complete(self, owner: str, uri: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        """The object at `uri` made of its parts (number, ETag), in order."""
        key = self._in_progress(owner, uri, upload_id)
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in sorted(parts)]})
        except ClientError as exc:  # a part missing or too small, an ETag that is not the part's
            error = exc.response.get("Error", {})
            raise SpecError(f"{uri}: S3 refused to complete the upload: {error.get('Code')} "
                            f"{error.get('Message') or ''}".rstrip()) from None

    def abort(self, owner: str, uri: str, upload_id: str) -> None:
        """Drop `owner`'s unfinished multipart upload at `uri` and the parts it holds."""
        key = self._in_progress(owner, uri, upload_id)
        self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def _in_progress(self, owner: str, uri: str, upload_id: str) -> str:
        """The key of `uri` if it is `owner`'s and `upload_id` is a multipart upload in progress for it."""
        key = layout.owned_upload(uri, self.bucket, owner).key
        pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=key)
        if not any(u["Key"] == key and u["UploadId"] == upload_id for page in pages for u in page.get("Uploads", [])):
            raise NotFound(f"{uri}: no multipart upload {upload_id} is in progress there (finished, aborted, "
                           "or dropped after a day)")
        return key

    def missing(self, uris: list[S3Uri]) -> list[S3Uri]:
        """Which of these objects (or prefixes, ending in '/') of the bucket hold nothing."""
        return [uri for uri in uris if not self._exists(uri)]

    def job_files(self, job_id: str) -> list[dict]:
        """A job's files (its tasks' too), each with its size and a GET URL: {"name", "size", "url"}."""
        prefix = layout.job_prefix(job_id)
        return [{"name": key[len(prefix):], "size": size, "url": self._url("get_object", {"Key": key})}
                for key, size in _objects(self.client, self.bucket, prefix)]

    def _url(self, method: str, params: dict) -> str:
        return self.client.generate_presigned_url(method, Params={"Bucket": self.bucket, **params},
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

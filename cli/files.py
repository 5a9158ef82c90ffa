"""A job's files between this machine and a deployment's files bucket, through the URLs the API presigns
(hyperbatch/core/bucket.py): the API is the only door, and a user needs no S3 permissions.

- `upload_stage_in`: qsub to an AWS host. Each stage-in pair whose source is a file or directory on
  this machine is uploaded under one new upload of the caller (POST /uploads, then a PUT per file),
  and the pair is rewritten to name the upload's `s3://` URI; the API accepts the job only once its
  uploads are there. Pairs naming S3 already are left as they are. In an array, a path naming
  `^array_index^` is uploaded for each index whose file exists, under `PAIR/INDEX/`, and the pair names
  `PAIR/^array_index^/NAME`, which each task turns into its own (at most MAX_STAGED_FILES files and
  MAX_STAGED_BYTES: past that the inputs belong in S3, named by an s3:// URI with `^array_index^`).
- `fetch`: `hyper fetch` and `qsub --wait`. What the job's runs left (GET /jobs/ID/files): the output
  files (NAME.oN, NAME.eN) go to the submit directory, files staged out to the destination their pair
  named on this machine; with a DEST directory, everything goes under it by its name in the job's prefix.

A file under the multipart threshold (core/bucket.py, 64 MiB) goes in one PUT; a larger one in parts
(POST /uploads/parts, /uploads/complete, or /uploads/abort when qsub gives up), a few at once. Each
request is retried with backoff on a broken connection, 429 and 5xx, so a failure costs one part, not
the file. A download lands under a temporary name first, so a file is never left half written.
Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile
import urllib.error
import urllib.request

from hyperbatch.cli.errors import CliError
from hyperbatch.core import bucket
from hyperbatch.support import backoff

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TRIES = 5
RETRY_BASE_SECONDS = 0.2  # then 0.4, 0.8, 1.6 (hyperbatch.support.backoff)
CHUNK = 1 << 20
TIMEOUT = 60.0


def _open(request: urllib.request.Request) -> Any:
    """One HTTP exchange (the tests route it to S3 in a box)."""
    return urllib.request.urlopen(request, timeout=TIMEOUT)  # noqa: S310 (https URLs the API presigned)


def _retried(what: str, attempt) -> Any:
    for number in range(TRIES):
        try:
            return attempt()
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429 or number == TRIES - 1:
                raise CliError(f"{what}: S3 answered {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            if number == TRIES - 1:
                reason = getattr(exc, "reason", None) or exc
                raise CliError(f"{what}: {reason}") from None
        backoff.pause(number, RETRY_BASE_SECONDS)
    raise AssertionError("unreachable")


def put_file(url: str, path: str) -> None:
    size = os.path.getsize(path)

    def attempt() -> None:
        with open(path, "rb") as body:
            request = urllib.request.Request(url, data=body, method="PUT",
                                             # not urllib's form type, which S3 would keep on the object
                                             headers={"Content-Length": str(size),
                                                      "Content-Type": "application/octet-stream"})
            with _open(request) as response:
                response.read()

    _retried(f"cannot upload {path}", attempt)


def get_file(url: str, dest: str) -> int:
    """Download to `dest` (replaced whole); its size."""
    directory = os.path.dirname(dest) or "."
    os.makedirs(directory, exist_ok=True)

    def attempt() -> int:
        fd, temporary = tempfile.mkstemp(prefix=".hyper-fetch-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out, _open(urllib.request.Request(url)) as response:
                shutil.copyfileobj(response, out, CHUNK)
            os.replace(temporary, dest)
        except BaseException:
            os.unlink(temporary)
            raise
        return os.path.getsize(dest)

    return _retried(f"cannot download {dest}", attempt)


# ---- qsub: stage-in uploads ----------------------------------------------------------------------

PARALLEL = 4  # parts of a large file put at once
PART_BATCH = 32  # UploadPart URLs asked for at a time: fresh when their parts go (a URL lasts an hour)


class _Slice:
    """`length` bytes of an open file from where it stands: one part's body, read as it is sent."""

    def __init__(self, file: Any, length: int):
        self.file, self.left = file, length

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.file.read(size)
        self.left -= len(data)
        return data


def put_part(url: str, path: str, offset: int, length: int, number: int) -> str:
    """One part of `path` (`length` bytes from `offset`) by its presigned UploadPart URL; its ETag."""

    def attempt() -> str:
        with open(path, "rb") as file:
            file.seek(offset)
            request = urllib.request.Request(url, data=_Slice(file, length), method="PUT",
                                             headers={"Content-Length": str(length),
                                                      "Content-Type": "application/octet-stream"})
            with _open(request) as response:
                response.read()
                return str(response.headers["ETag"])

    return _retried(f"cannot upload {path} (part {number})", attempt)


def put_parts(client: Any, uri: str, path: str, size: int, multipart: dict) -> None:
    """A large file as a multipart upload (POST /uploads gave its id and part size): parts a few at a
    time, each retried on its own, by URLs asked for a batch at a time; then the API completes it."""
    from concurrent.futures import ThreadPoolExecutor

    upload_id, part, count = multipart["upload_id"], multipart["part_size"], multipart["parts"]
    etags: dict[int, str] = {}
    with ThreadPoolExecutor(PARALLEL) as pool:
        for first in range(1, count + 1, PART_BATCH):
            _, page = client.request("POST", "/uploads/parts", body={
                "uri": uri, "upload_id": upload_id, "first": first, "count": min(PART_BATCH, count - first + 1)})
            sent = {u["number"]: pool.submit(put_part, u["url"], path, (u["number"] - 1) * part,
                                             min(part, size - (u["number"] - 1) * part), u["number"])
                    for u in page["urls"]}
            try:
                etags.update((number, future.result()) for number, future in sent.items())
            except BaseException:
                for future in sent.values():
                    future.cancel()  # the parts not started yet: the upload is given up
                raise
    client.request("POST", "/uploads/complete", body={
        "uri": uri, "upload_id": upload_id, "parts": [{"number": n, "etag": etags[n]} for n in sorted(etags)]})


def _local_files(source: str) -> list[tuple[str, str]]:
    """(path on this machine, relative name) of the file at `source`, or of every file under a directory."""
    if os.path.isdir(source):
        found = []
        for root, dirs, names in os.walk(source):
            dirs.sort()
            for name in sorted(names):
                path = os.path.join(root, name)
                found.append((path, os.path.relpath(path, source).replace(os.sep, "/")))
        if not found:
            raise CliError(f"stagein: {source} is an empty directory: nothing to stage in")
        return found
    if not os.path.isfile(source):
        raise CliError(f"stagein: {source}: no such file or directory on this machine")
    return [(source, posixpath.basename(source))]


def _per_index(source: str, folder: str, indices: Any) -> tuple[str, list[tuple[str, str]]]:
    """An array's stage-in whose path names `^array_index^`: each index's file (or directory) that
    exists on this machine, under `folder`/INDEX/; and the pair's name relative to the upload, with
    `^array_index^` still in it, which each task's own stage-in turns into its index (core/staging)."""
    from hyperbatch.core.staging import ARRAY_INDEX

    found: list[tuple[str, str]] = []
    kinds = set()
    for index in indices:
        path = source.replace(ARRAY_INDEX, str(index))
        if not os.path.exists(path):
            continue  # that task fails with its stage-in status when it runs
        kinds.add(os.path.isdir(path))
        found += [(p, f"{folder}{index}/{name}") for p, name in _local_files(path)]
        if len(found) > bucket.MAX_STAGED_FILES:
            break
    if not found:
        raise CliError(f"stagein: {source}: no such file on this machine for any index of the array")
    if len(kinds) > 1:
        raise CliError(f"stagein: {source}: a file for some indices and a directory for others; give one kind")
    directory = kinds.pop()
    return f"{folder}{ARRAY_INDEX}/" + ("" if directory else posixpath.basename(source.rstrip("/"))), found


def upload_stage_in(client: Any, pairs: list[str], array: str | None = None) -> list[str]:
    """The stage-in pairs with this machine's files uploaded and named by their s3:// URIs. In an array
    (`array`: its range), a path naming `^array_index^` is uploaded for each index whose file exists."""
    from hyperbatch.core import staging
    from hyperbatch.core.arrays import parse_array

    stages = [staging.parse(text) for text in pairs]
    names: dict[int, str] = {}  # pair -> its name relative to the upload
    files: list[tuple[str, str, int]] = []  # (path here, name in the upload, size)
    for number, stage in enumerate(stages):
        if stage.is_s3:
            continue
        source, folder = stage.path, f"{number}/"
        if array and staging.ARRAY_INDEX in source:
            names[number], found = _per_index(source, folder, parse_array(array).indices())
            sizes = [os.path.getsize(path) for path, _ in found]
            if sum(sizes) > bucket.MAX_STAGED_BYTES or len(files) + len(found) > bucket.MAX_STAGED_FILES:
                raise CliError(f"stagein: {source}: the array's inputs are more than qsub uploads "
                               f"({bucket.MAX_STAGED_FILES} files, {bucket.MAX_STAGED_BYTES >> 30} GiB); put them "
                               f"in S3 and name s3://BUCKET/KEY with {staging.ARRAY_INDEX} in it instead")
        else:
            found = [(path, folder + name) for path, name in _local_files(source)]
            names[number] = folder if os.path.isdir(source) else found[0][1]
            sizes = [os.path.getsize(path) for path, _ in found]
        files += [(path, name, size) for (path, name), size in zip(found, sizes)]
    if len(files) > bucket.MAX_STAGED_FILES:
        raise CliError(f"stagein: {len(files)} files are more than qsub uploads ({bucket.MAX_STAGED_FILES}); "
                       "put them in S3 and name an s3:// source instead")
    if not files:
        return list(pairs)
    prefix, urls, multipart = _ask_upload(client, files)
    _send(client, prefix, files, urls, multipart)
    out = list(pairs)
    for number, name in names.items():
        out[number] = staging.Stage(stages[number].local, prefix + name).text()
    return out


def _ask_upload(client: Any, files: list[tuple[str, str, int]]) -> tuple[str, dict, dict]:
    """One upload for all the files (POST /uploads, up to MAX_UPLOAD_FILES a request): its s3:// prefix,
    the PUT URL of each small file and the multipart upload of each large one."""
    upload: str | None = None
    prefix, urls, multipart = "", {}, {}
    for start in range(0, len(files), bucket.MAX_UPLOAD_FILES):
        chunk = [{"path": name, "size": size} for _, name, size in files[start:start + bucket.MAX_UPLOAD_FILES]]
        _, answer = client.request("POST", "/uploads", body={"files": chunk, **({"upload": upload} if upload else {})})
        prefix, upload = answer["prefix"], answer["upload"]
        urls.update(answer["urls"])
        multipart.update(answer.get("multipart") or {})
    return prefix, urls, multipart


def _send(client: Any, prefix: str, files: list[tuple[str, str, int]], urls: dict, multipart: dict) -> None:
    """Every file: a small one by its PUT URL (a few at once), a large one in parts. On a failure every
    multipart upload not completed is aborted, so that no part is left in the bucket (the bucket's
    lifecycle also drops unfinished uploads after a day)."""
    from concurrent.futures import ThreadPoolExecutor

    open_uploads = [(path, name, size) for path, name, size in files if name in multipart]
    try:
        with ThreadPoolExecutor(PARALLEL) as pool:
            for future in [pool.submit(put_file, urls[name], path) for path, name, _ in files if name in urls]:
                future.result()
        while open_uploads:
            path, name, size = open_uploads[0]
            put_parts(client, prefix + name, path, size, multipart[name])
            open_uploads.pop(0)
    except BaseException:
        for _, name, _ in open_uploads:
            with contextlib.suppress(Exception):
                client.request("POST", "/uploads/abort", body={"uri": prefix + name,
                                                               "upload_id": multipart[name]["upload_id"]})
        raise


# ---- hyper fetch ---------------------------------------------------------------------------------

def fetch(client: Any, job: dict, dest: str | None) -> list[tuple[str, int]]:
    """Download what the job's runs left; (path written, size) of each file."""
    from hyperbatch.cli.client import job_path

    _, answer = client.request("GET", job_path(str(job["id"]), "files"))
    staged = {f["path"]: f["dest"] for f in job.get("stageout_files") or [] if isinstance(f, dict)}
    workdir = job.get("workdir") if job.get("workdir") and os.path.isdir(job["workdir"]) else os.getcwd()
    written = []
    for item in answer.get("files") or []:
        name = item["name"]
        target = os.path.join(dest, name) if dest else _place(name, staged, workdir)
        written.append((target, get_file(item["url"], target)))
    return written


def _place(name: str, staged: dict[str, str], workdir: str) -> str:
    """Where a file of the job's prefix goes without --dest: a file staged out to the destination on
    this machine its pair named (inside it, when that is a directory here, as local mode would put
    it), an output file (or a task's) into the submit directory."""
    first, _, rest = name.partition("/")
    relative = rest if first.isdigit() and rest else name  # an array task's files are under its index
    remote = staged.get(relative)
    if remote and remote.startswith("/"):
        return os.path.join(remote, posixpath.basename(relative)) if os.path.isdir(remote) else remote
    return os.path.join(workdir, relative)

"""A job's files between this machine and a deployment's files bucket, through the URLs the API presigns
(hyperbatch/core/bucket.py): the API is the only door, and a user needs no S3 permissions.

- `upload_stage_in`: qsub to an AWS host. Each stage-in pair whose source is a file or directory on
  this machine is uploaded under one new upload of the caller (POST /uploads, then a PUT per file),
  and the pair is rewritten to name the upload's `s3://` URI; the API accepts the job only once its
  uploads are there. Pairs naming S3 already are left as they are.
- `fetch`: `hyper fetch` and `qsub --wait`. What the job's runs left (GET /jobs/ID/files): the output
  files (NAME.oN, NAME.eN) go to the submit directory, files staged out to the destination their pair
  named on this machine; with a DEST directory, everything goes under it by its name in the job's prefix.

Transfers go in one request each, retried with backoff (a presigned PUT takes up to 5 GB), and a
download lands under a temporary name first, so a file is never left half written. Standard library only.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
import time
import urllib.error
import urllib.request

from hyperbatch.cli.errors import CliError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TRIES = 5
CHUNK = 1 << 20
TIMEOUT = 60.0


def _open(request: urllib.request.Request) -> Any:
    """One HTTP exchange (the tests route it to S3 in a box)."""
    return urllib.request.urlopen(request, timeout=TIMEOUT)  # noqa: S310 (https URLs the API presigned)


def _retried(what: str, attempt) -> Any:
    delay = 0.2
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
        time.sleep(delay)
        delay *= 2
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


def upload_stage_in(client: Any, pairs: list[str]) -> list[str]:
    """The stage-in pairs with this machine's files uploaded and named by their s3:// URIs."""
    from hyperbatch.core import staging

    stages = [staging.parse(text) for text in pairs]
    plan: list[tuple[int, str, list[tuple[str, str]]]] = []  # (pair, its upload folder, files)
    for number, stage in enumerate(stages):
        if stage.is_s3:
            continue
        source = stage.path
        folder = f"{number}/"
        plan.append((number, folder, [(path, folder + name) for path, name in _local_files(source)]))
    if not plan:
        return list(pairs)
    names = [name for _, _, files in plan for _, name in files]
    _, answer = client.request("POST", "/uploads", body={"files": names})
    prefix, urls = answer["prefix"], answer["urls"]
    for _, _, files in plan:
        for path, name in files:
            put_file(urls[name], path)
    out = list(pairs)
    for number, folder, files in plan:
        stage = stages[number]
        source = stage.path
        remote = prefix + (folder if os.path.isdir(source) else files[0][1])
        out[number] = staging.Stage(stage.local, remote).text()
    return out


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

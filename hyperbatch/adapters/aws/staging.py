"""The Stager on AWS (hyperbatch.core.ports.Stager): a job's files between S3 and its directory on
the worker. The agent stages, the job does not: the job's process never holds the worker's
credentials (hyperbatch.core.isolation), and the worker's role reaches only the files bucket's
prefixes and the S3 locations the settings allow (stacks/worker_roles.py).

Stage-in: each pair's source is an `s3://` URI: one qsub uploaded (the submit host's files reach a
worker only that way, under the owner's uploads: hyperbatch.core.bucket) or one the user named. An
object is downloaded to LOCAL; a prefix (a URI ending in '/') into the directory LOCAL, keeping the
objects' relative paths. A pair naming a path on a host fails: no worker can reach it (the API
refuses such a job at submit already).

Stage-out: what each pair's LOCAL matches (a path or a glob, as locally: support/stage_files) is
uploaded, a directory file by file, and removed once uploaded. To an `s3://` destination: under it
when it ends in '/' or LOCAL is a glob, else to that key. To the submit host: kept under the job's
prefix at its path in the job's directory (`jobs/<id>/[<index>/]results/a.csv`) and recorded with
the submit host's destination, where `hyper fetch` and `qsub --wait` put it. Transfers are multipart
and retried (aws/files.py). PBS's rules for failures are hyperbatch.core.staging's.
"""

from __future__ import annotations

import os
from pathlib import Path

from hyperbatch.core.bucket import S3Uri, parse_s3
from hyperbatch.core.staging import Stage
from hyperbatch.support import stage_files
from hyperbatch.support.stage_files import Destination, RunStager
from hyperbatch.adapters.aws.files import S3Transfers


class S3Stager(RunStager):
    def __init__(self, transfers: S3Transfers):
        super().__init__()
        self.transfers = transfers

    def _fetch(self, stage: Stage, target: Path) -> int:
        if not stage.is_s3:
            raise FileNotFoundError(f"{stage.host} is not reachable from AWS: qsub uploads the submit "
                                    "host's files when it submits")
        return sum(p.stat().st_size for p in self.transfers.download(parse_s3(stage.remote), target))

    def _destination(self, job: dict, index: int | None, stage: Stage, path: Path, name: str,
                     several: bool) -> Destination:
        if stage.is_s3:
            uri = _under(parse_s3(stage.remote), path.name, several)
            dest = str(uri)
        else:  # kept under the job's prefix at its path in the job's directory, for `hyper fetch`
            uri = self.transfers.job_uri(job["id"], index, name)
            dest = _host_target(stage.path, path.name, several)

        def send() -> int:
            size = self._upload(path, uri)
            stage_files.remove(path)
            return size

        return Destination(dest, dest, send)

    def _upload(self, path: Path, uri: S3Uri) -> int:
        """The file, or every file under the directory (as `cp -r` would put it at `uri`); the bytes sent."""
        if not path.is_dir():
            return self.transfers.upload(path, uri)
        total = 0
        for root, dirs, names in os.walk(path):
            dirs.sort()
            for name in sorted(names):
                file = Path(root) / name
                key = f"{uri.key.rstrip('/')}/{file.relative_to(path).as_posix()}"
                total += self.transfers.upload(file, S3Uri(uri.bucket, key))
        return total


def _under(dest: S3Uri, name: str, several: bool) -> S3Uri:
    """Where a file `name` staged out to an S3 destination goes: inside it when it ends in '/' (or
    names a whole bucket) or the pattern may match several, else the destination itself."""
    if several or not dest.key or dest.key.endswith("/"):
        prefix = dest.key if not dest.key or dest.key.endswith("/") else dest.key + "/"
        return S3Uri(dest.bucket, prefix + name)
    return dest


def _host_target(dest: str, name: str, several: bool) -> str:
    """support/stage_files.target for a path on the submit host, which the worker cannot look at:
    inside `dest` when it ends in '/' or the pattern may match several (`hyper fetch` also puts it
    inside when `dest` is a directory there)."""
    return os.path.join(dest, name) if several or dest.endswith("/") else dest


"""The deployment's files bucket on AWS: what lives where, and which S3 locations a job may name.

One bucket per deployment (stacks/storage.py) holds three kinds of objects, each
under a prefix of its own, so that IAM grants and lifecycle rules can name them:

    scripts/<sha256>                          job scripts over a few KB (adapters/aws/scripts.py)
    uploads/<owner key>/<upload id>/<path>    stage-in files `qsub` uploaded through the API
    jobs/<job id>/[<index>/]<path>            what a run left: NAME.oN, NAME.eN and its stage-out files

Users have no S3 permissions of their own: the API hands out presigned URLs
(PUT for an upload, GET for a job's files), so the API stays the only door and
checks the owner. Workers read `scripts/` and `uploads/` and write `jobs/`.

An upload is tied to its owner by its key, which the API makes from the
caller's identity (`owner_key`): qsub asks for PUT URLs (`POST /uploads`), puts
the files, then submits a job whose stage-in names them by their `s3://` URI.
The API accepts an `s3://` URI in the deployment's bucket only under the
caller's own upload prefix (`check_job_uri`), and only once every object named
is there, so a job never starts before its inputs exist and nobody can point a
job at another user's upload (or at a job prefix, or at a script). Upload ids
are random, so one user's uploads never collide either.

Any other `s3://` location must be one the deployment's settings allow
(`settings.staging_locations`): the workers' role may read and write only there.

A file of MULTIPART_THRESHOLD or more goes up in parts (`part_size`): the API
starts an S3 multipart upload and presigns each UploadPart, a page of URLs at a
time; qsub puts the parts, a few at once, each retried on its own, and the API
completes the upload with the parts' ETags (or aborts it when qsub gives up).
Each of those steps names the upload's key, which must lie under the caller's
own uploads (`owned_upload`): a multipart upload is its owner's as its key is.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from hyperbatch.core.errors import Forbidden, SpecError
from hyperbatch.core.names import JOB_PREFIX, SCRIPT_PREFIX, UPLOAD_PREFIX  # noqa: F401 (the stacks' names too)

MIB = 1 << 20
MULTIPART_THRESHOLD = 64 * MIB  # a file this large or larger goes up in parts (a single PUT takes up to 5 GB)
MIN_PART = 64 * MIB  # parts are at least this large: 10,000 of them reach 625 GiB before parts must grow
MAX_PARTS = 10_000  # S3's most parts in one upload
MAX_OBJECT = 5 * (1 << 40)  # S3's largest object, 5 TiB
MAX_UPLOAD_FILES = 1000  # files one POST /uploads may name; qsub sends more to the same upload in several
MAX_STAGED_FILES = 10_000  # files one qsub uploads (an array's ^array_index^ inputs count one by one)
MAX_STAGED_BYTES = 100 * (1 << 30)  # bytes of ^array_index^ inputs one qsub uploads: beyond, name them in S3
PART_PAGE = 500  # UploadPart URLs the API presigns per request (each ~1.5 KB: far under a response's 6 MB)

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str  # may be "" (the whole bucket) or end with "/" (a prefix)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def within(self, other: "S3Uri") -> bool:
        """Whether this location lies inside `other` (the same object, or under its prefix)."""
        if self.bucket != other.bucket:
            return False
        prefix = other.key
        return not prefix or self.key == prefix or self.key.startswith(prefix if prefix.endswith("/") else prefix + "/")


def is_s3(text: str) -> bool:
    return text.startswith("s3://")


def parse_s3(text: str) -> S3Uri:
    """`s3://bucket/key`; a bad one is refused in words that say what to fix."""
    if not is_s3(text):
        raise SpecError(f"{text!r} is not an S3 URI: write s3://BUCKET/KEY")
    bucket, _, key = text[len("s3://"):].partition("/")
    if not _BUCKET.match(bucket):
        raise SpecError(f"{text!r}: '{bucket}' is not an S3 bucket name (3-63 lower-case letters, digits, '.', '-')")
    if any(part in ("..", ".") for part in key.split("/")):
        raise SpecError(f"{text!r}: a key with '.' or '..' parts names nothing clearly; write the key as it is")
    return S3Uri(bucket, key)


def owner_key(owner: str) -> str:
    """The prefix component of an owner's uploads: a hash of the principal the API verified (ARNs hold
    ':' and '/', and the key needs to be neither secret nor readable, only the caller's own)."""
    return hashlib.sha256(owner.encode()).hexdigest()[:32]


def upload_prefix(owner: str, upload_id: str) -> str:
    return f"{UPLOAD_PREFIX}{owner_key(owner)}/{upload_id}/"


def part_size(size: int, minimum: int = MIN_PART) -> int:
    """The part size of a multipart upload of `size` bytes: `minimum`, or larger (whole MiB) when
    `size` would otherwise need more than S3's 10,000 parts."""
    if size > MAX_OBJECT:
        raise SpecError(f"a file of {size} bytes is larger than S3's largest object (5 TiB)")
    needed = -(-size // MAX_PARTS)
    return minimum if needed <= minimum else -(-needed // MIB) * MIB


def part_count(size: int, part: int) -> int:
    """How many parts of `part` bytes carry `size` bytes (an empty file: one empty part)."""
    return max(1, -(-size // part))


def owned_upload(uri: str, bucket: str, owner: str) -> S3Uri:
    """An upload's object named by a multipart step: in the deployment's bucket and under `owner`'s
    own uploads (uploads/<owner key>/<upload id>/<path>), else Forbidden (PBS's "Unauthorized Request")."""
    target = parse_s3(uri)
    mine = f"{UPLOAD_PREFIX}{owner_key(owner)}/"
    upload_id, _, path = target.key[len(mine):].partition("/") if target.key.startswith(mine) else ("", "", "")
    if target.bucket != bucket or not upload_id or not path:
        raise Forbidden(f"{uri} is not one of your uploads")
    check_relative(path)
    return target


def job_prefix(job_id: str, index: int | None = None) -> str:
    """A job's prefix (an array task's: a prefix under its array's), where its run's files go."""
    return f"{JOB_PREFIX}{job_id}/" + ("" if index is None else f"{index}/")


def check_relative(path: str) -> str:
    """A file's path under a prefix: relative, no '.' or '..' parts, no empty parts."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise SpecError(f"files: {path!r} must be a relative path without '.', '..' or empty parts")
    return path


def check_job_uri(uri: S3Uri, *, bucket: str, owner: str, allowed: list[str], writing: bool) -> None:
    """May a job of `owner` read (stage in) or write (stage out) `uri`? In the deployment's bucket,
    reading only under the owner's own uploads and writing nowhere (a job's files go to its own prefix
    without naming it); elsewhere only under a location the settings allow."""
    if uri.bucket == bucket:
        mine = S3Uri(bucket, f"{UPLOAD_PREFIX}{owner_key(owner)}/")
        if writing or not uri.within(mine) or uri.key == mine.key:
            raise SpecError(f"{uri}: a job may read the deployment's bucket only under its owner's uploads "
                            f"(qsub uploads local files there) and writes its files to its own prefix by itself")
        return
    if not any(uri.within(parse_s3(location)) for location in allowed):
        where = ", ".join(allowed) if allowed else "none are"
        raise SpecError(f"{uri}: workers may not {'write' if writing else 'read'} there; the S3 locations "
                        f"this deployment allows (settings.staging_locations): {where}")

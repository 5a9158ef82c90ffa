"""Job scripts larger than a few KB live in the files bucket; the job item keeps only a reference.

Why: a job item is written at submit, start and finish, and each write (and
each stream record, which carries the old and the new image) bills by the
kilobyte; a 256 KiB script inline would make every one of those writes cost
up to 256 write units, and a batch of 1,000 such jobs would pass the 4 MB
transaction and the 16 MB BatchWriteItem limits. So `DynamoJobStore.create`
hands the new documents to `S3Scripts.stage` first: a script over
INLINE_SCRIPT_BYTES is put in the bucket and the document written carries
`script` None and `script_ref` (the object's key) instead. The worker, the
only reader of a script, asks `DynamoJobStore.script(doc)`, which fetches it.

Keys are `scripts/<sha256 of the text>`: the same script submitted many times
(a batch of 1,000 jobs running one script with different variables, which the
API takes once per request) is one PutObject, not 1,000 (S3 bills $5 per
million PUTs, more than a job's whole control plane). Only the API function
may put objects and only workers may get them, so a key names nothing a job
could use, and two owners' identical scripts share an object harmlessly. The
bucket's lifecycle expires objects some time after the jobs that may still
need them have expired (stacks/storage.py); a put of an existing key renews it.

Local mode keeps scripts in SQLite; nothing there needs this.
"""

from __future__ import annotations

import hashlib

from hyperbatch.core.bucket import SCRIPT_PREFIX as PREFIX

INLINE_SCRIPT_BYTES = 4096  # scripts up to this size stay in the job item
SCRIPT_REF = "script_ref"  # the job item's attribute naming the object


def script_key(text: str) -> str:
    return PREFIX + hashlib.sha256(text.encode()).hexdigest()


class S3Scripts:
    """The files bucket (HYPER_FILES_BUCKET): `stage` before a create, `fetch` when a worker runs a job."""

    def __init__(self, client, bucket: str, *, inline_bytes: int = INLINE_SCRIPT_BYTES):
        self.client, self.bucket, self.inline_bytes = client, bucket, inline_bytes

    def stage(self, docs: list[dict]) -> list[dict]:
        """The documents to write: large scripts put in the bucket (each distinct one once) and replaced
        by a reference; the others returned as they are."""
        out, put = [], set()
        for doc in docs:
            text = doc.get("script")
            if text is None or len(text.encode()) <= self.inline_bytes:
                out.append(doc)
                continue
            key = script_key(text)
            if key not in put:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=text.encode(),
                                       ContentType="text/plain; charset=utf-8")
                put.add(key)
            out.append({**doc, "script": None, SCRIPT_REF: key})
        return out

    def fetch(self, key: str) -> str:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode()

"""The files bucket's rules (hyperbatch/core/bucket.py): which S3 locations a job may stage from and to."""

import pytest

from hyperbatch.core import bucket
from hyperbatch.core.errors import Forbidden, SpecError

OURS = "hb-files-123456789012-us-east-1"
ALICE = "arn:aws:iam::123456789012:user/alice"
BOB = "arn:aws:iam::123456789012:user/bob"


def check(uri: str, owner: str = ALICE, allowed=("s3://shared-data/in/",), writing=False) -> None:
    bucket.check_job_uri(bucket.parse_s3(uri), bucket=OURS, owner=owner, allowed=list(allowed), writing=writing)


def test_a_job_reads_its_owners_uploads_and_allowed_locations_only():
    mine = f"s3://{OURS}/{bucket.upload_prefix(ALICE, 'u1')}in.txt"
    check(mine)
    check("s3://shared-data/in/a/b.csv")
    check("s3://shared-data/in/", writing=True)
    refusals = {
        f"s3://{OURS}/{bucket.upload_prefix(BOB, 'u1')}in.txt": "only under its owner's uploads",  # Bob's upload
        f"s3://{OURS}/{bucket.UPLOAD_PREFIX}{bucket.owner_key(ALICE)}/": "only under its owner's uploads",  # all of them
        f"s3://{OURS}/jobs/7/out.txt": "only under its owner's uploads",  # another job's files
        f"s3://{OURS}/scripts/abc": "only under its owner's uploads",
        "s3://shared-data/input/x": "may not read there",  # a sibling prefix is not inside in/
        "s3://other/x": "may not read there",
    }
    for uri, words in refusals.items():
        with pytest.raises(SpecError, match=words):
            check(uri)
    with pytest.raises(SpecError, match="writes its files to its own prefix"):
        check(mine, writing=True)
    with pytest.raises(SpecError, match=r"\(settings.staging_locations\): none are"):
        check("s3://shared-data/in/x", allowed=())


@pytest.mark.parametrize("text, words", [
    ("s3://Bad_Bucket/k", "not an S3 bucket name"),
    ("s3://ok-bucket/a/../b", "'.' or '..' parts"),
    ("/tmp/x", "not an S3 URI"),
])
def test_bad_uris_say_what_to_fix(text, words):
    with pytest.raises(SpecError, match=words):
        bucket.parse_s3(text)


def test_keys_per_owner_and_job():
    assert bucket.upload_prefix(ALICE, "u1") != bucket.upload_prefix(BOB, "u1")
    assert bucket.upload_prefix(ALICE, "u1").startswith(bucket.UPLOAD_PREFIX)
    assert (bucket.job_prefix("12"), bucket.job_prefix("12", 3)) == ("jobs/12/", "jobs/12/3/")
    for bad in ("", "/abs", "a/../b", "a//b", "./a"):
        with pytest.raises(SpecError):
            bucket.check_relative(bad)


def test_staging_locations_are_checked_in_the_settings():
    from pydantic import ValidationError

    from hyperbatch.config import Settings

    assert Settings(main_region="us-east-1", staging_locations=["s3://shared-data/in/"]).staging_locations
    for bad, words in (("shared-data/in/", "not an S3 URI"), ("s3://shared-data/in", "a prefix ending in '/'")):
        with pytest.raises(ValidationError, match=words):
            Settings(main_region="us-east-1", staging_locations=[bad])


def test_parts_are_64_mib_or_more_and_never_more_than_s3s_ten_thousand():
    mib = bucket.MIB
    assert bucket.part_size(200 * mib) == 64 * mib and bucket.part_count(200 * mib, 64 * mib) == 4
    assert bucket.part_count(0, 64 * mib) == 1  # an empty file is one empty part
    for size in (640 * 1024 * mib, 640 * 1024 * mib + 1, 3 * (1 << 40), bucket.MAX_OBJECT):
        part = bucket.part_size(size)
        assert part % mib == 0 and bucket.part_count(size, part) <= bucket.MAX_PARTS
    assert bucket.part_size(bucket.MAX_OBJECT) == 525 * mib  # 5 TiB: parts grow to 525 MiB
    with pytest.raises(SpecError, match="larger than S3's largest object"):
        bucket.part_size(bucket.MAX_OBJECT + 1)


def test_a_multipart_step_names_an_object_of_the_callers_own_uploads():
    mine = f"s3://{OURS}/{bucket.upload_prefix(ALICE, 'u1')}data/big.bin"
    assert bucket.owned_upload(mine, OURS, ALICE) == bucket.parse_s3(mine)
    for uri in (mine.replace(OURS, "other-bucket"), f"s3://{OURS}/{bucket.upload_prefix(ALICE, 'u1')}",
                f"s3://{OURS}/{bucket.UPLOAD_PREFIX}{bucket.owner_key(ALICE)}/u1", f"s3://{OURS}/jobs/7/out.txt"):
        with pytest.raises(Forbidden, match="is not one of your uploads"):
            bucket.owned_upload(uri, OURS, ALICE)
    with pytest.raises(Forbidden):
        bucket.owned_upload(mine, OURS, BOB)  # Alice's, named by Bob

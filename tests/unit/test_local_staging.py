"""Local mode's stager (adapters/local/staging.py) on real files: what it links, copies, moves and removes."""

import os

import pytest

from hyperbatch.adapters.local.staging import LocalStager
from hyperbatch.core import staging


def _job(stagein=(), stageout=(), job_id="7"):
    return {"id": job_id, staging.STAGEIN: list(stagein), staging.STAGEOUT: list(stageout)}


@pytest.fixture
def places(tmp_path):
    src, run = tmp_path / "src", tmp_path / "run"
    src.mkdir()
    run.mkdir()
    return src, run


def test_a_read_only_input_is_hard_linked_and_a_writable_one_copied(places):
    src, run = places
    (src / "ro.dat").write_text("ro")
    (src / "ro.dat").chmod(0o444)
    (src / "rw.dat").write_text("rw")
    done = LocalStager("box").stage_in(_job([f"ro.dat@box:{src}/ro.dat", f"rw.dat@localhost:{src}/rw.dat"]), None, run)
    assert done.failures == () and [(f.path, f.size) for f in done.files] == [("ro.dat", 2), ("rw.dat", 2)]
    assert os.path.samefile(src / "ro.dat", run / "ro.dat")
    assert not os.path.samefile(src / "rw.dat", run / "rw.dat")  # a job writing it in place must not change the original
    (run / "rw.dat").write_text("changed by the job")
    assert (src / "rw.dat").read_text() == "rw"


def test_after_the_run_only_what_staging_created_is_removed(places):
    src, run = places
    (src / "a.txt").write_text("new")
    (run / "a.txt").write_text("the user's own")  # replaced (as PBS), but it was there before: not removed
    (src / "b.txt").write_text("b")
    stager = LocalStager("box")
    job = _job([f"a.txt@box:{src}/a.txt", f"b.txt@box:{src}/b.txt"])
    stager.stage_in(job, None, run)
    assert (run / "a.txt").read_text() == "new"
    stager.stage_out(job, None, run)
    assert (run / "a.txt").exists() and not (run / "b.txt").exists()


def test_other_hosts_and_s3_are_unreachable_from_local_mode(places):
    src, run = places
    (src / "a.txt").write_text("a")
    stager = LocalStager("box.example.org")
    done = stager.stage_in(_job([f"a.txt@box:{src}/a.txt", f"b@far:{src}/a.txt"]), None, run)
    assert done.failures == (f"b@far:{src}/a.txt: host 'far' is not this machine (box.example.org); "
                             "local mode stages files on this machine only",)
    assert not (run / "a.txt").exists()  # the one staged before the failure is gone again
    out = stager.stage_out(_job(stageout=["*.csv@s3://bucket/out/"]), None, run)
    assert out.failures == ("*.csv@s3://bucket/out/: local mode stages files on this machine only; "
                            "s3:// needs a deployment on AWS",)


def test_a_file_staged_out_onto_itself_is_neither_copied_nor_removed(places):
    _, run = places
    (run / "keep.txt").write_text("k")
    done = LocalStager("box").stage_out(_job(stageout=[f"keep.txt@box:{run}/keep.txt"]), None, run)
    assert done.failures == () and [(f.dest, f.size) for f in done.files] == [(f"{run}/keep.txt", 1)]
    assert (run / "keep.txt").read_text() == "k"


def test_a_directory_goes_out_whole_and_replaces_a_file_atomically(places):
    src, run = places
    (run / "res" / "deep").mkdir(parents=True)
    (run / "res" / "deep" / "x").write_text("xyz")
    (run / "one.txt").write_text("new")
    (src / "one.txt").write_text("old")
    done = LocalStager("box").stage_out(_job(stageout=[f"res@box:{src}/res", f"one.txt@box:{src}/one.txt"]), None, run)
    assert done.failures == () and [(f.path, f.size) for f in done.files] == [("res", 3), ("one.txt", 3)]
    assert (src / "res" / "deep" / "x").read_text() == "xyz" and (src / "one.txt").read_text() == "new"
    assert sorted(p.name for p in src.iterdir()) == ["one.txt", "res"]  # no temporary file left beside it

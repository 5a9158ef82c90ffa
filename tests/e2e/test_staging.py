"""File staging in local mode, end to end (issue 13): qsub's -W stagein/stageout and --stage-in/--stage-out
against a real daemon; files go into the directory the job starts in (its home, as PBS) and come back."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

from tests.e2e.conftest import one_line, task_id

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_staging")]

HOST = socket.gethostname()


def test_pbs_syntax_reads_the_input_and_the_output_appears_under_results(hb):
    """The issue's example: the job reads in.txt and writes out.txt where it starts; both travel."""
    (hb.workdir / "data").mkdir()
    (hb.workdir / "data" / "in.txt").write_text("forty-two\n")
    script = hb.script("#!/bin/bash\ntr a-z A-Z < in.txt > out.txt\n", "upper.sh")
    job_id = hb.submit("-W", f"stagein=in.txt@localhost:{hb.workdir}/data/in.txt",
                       "-W", f"stageout=out.txt@localhost:{hb.workdir}/results/out.txt", script)
    job = hb.wait_state(job_id, "SUCCEEDED")
    assert (hb.workdir / "results" / "out.txt").read_text() == "FORTY-TWO\n"
    assert (hb.workdir / "data" / "in.txt").read_text() == "forty-two\n"  # the source stays
    # PBS: the file staged out is moved, the file staged in removed; nothing is left where the job ran
    assert not (hb.user_home / "in.txt").exists() and not (hb.user_home / "out.txt").exists()
    full = hb.full(job_id)
    assert full["stagein"] == f"in.txt@localhost:{hb.workdir}/data/in.txt"
    assert full["stageout"] == f"out.txt@localhost:{hb.workdir}/results/out.txt"
    assert full["stageout_files"] == f"{hb.workdir}/results/out.txt (10 bytes)"
    assert job["stageout_files"] == [{"path": "out.txt", "dest": f"{hb.workdir}/results/out.txt", "size": 10}]


def test_a_missing_input_fails_the_job_before_it_runs_with_its_reason(hb):
    script = hb.script("#!/bin/bash\ntouch ran.txt\n", "never.sh")
    missing = hb.workdir / "nowhere" / "in.txt"
    job_id = hb.submit("-W", f"stagein=b.txt@{HOST}:{hb.workdir}/never.sh,in.txt@{HOST}:{missing}", script)
    hb.wait_state(job_id, "FAILED")
    full = hb.full(job_id)
    assert full["Exit_status"] == "-1"
    assert full["comment"] == f"File stage in failed: in.txt@{HOST}:{missing}: No such file or directory"
    assert not (hb.user_home / "ran.txt").exists()  # it never ran
    assert not (hb.user_home / "b.txt").exists()  # what was staged in before the failure is removed (PBS)
    history = hb.run("tracejob", job_id).stdout
    assert f"File stage in failed: in.txt@{HOST}:{missing}: No such file or directory" in history


def test_a_file_and_a_directory_go_in_and_a_glob_comes_out(hb):
    (hb.workdir / "ref").mkdir()
    (hb.workdir / "ref" / "a.txt").write_text("a\n")
    (hb.workdir / "ref" / "sub").mkdir()
    (hb.workdir / "ref" / "sub" / "b.txt").write_text("bb\n")
    (hb.workdir / "params.txt").write_text("3\n")
    script = hb.script(
        "#!/bin/bash\nset -e\nmkdir -p results\n"
        "cat input/params.txt ref/a.txt ref/sub/b.txt > results/all.csv\n"
        "echo one > results/one.csv\necho skip > results/skip.log\n", "collect.sh")
    job_id = hb.submit("--stage-in", "params.txt:input/params.txt", "--stage-in", "ref",
                       "--stage-out", "results/*.csv:collected/", script)
    job = hb.wait_state(job_id, "SUCCEEDED")
    assert (hb.workdir / "collected" / "all.csv").read_text() == "3\na\nbb\n"
    assert (hb.workdir / "collected" / "one.csv").read_text() == "one\n"
    assert not (hb.workdir / "collected" / "skip.log").exists()
    assert sorted((f["path"], f["size"]) for f in job["stageout_files"]) == [
        ("results/all.csv", 7), ("results/one.csv", 4)]
    assert not (hb.user_home / "ref").exists() and not (hb.user_home / "input" / "params.txt").exists()
    assert (hb.user_home / "results" / "skip.log").read_text() == "skip\n"  # not staged: it stays


def test_stage_out_runs_after_a_failing_job_and_a_missing_output_is_reported(hb):
    script = hb.script("#!/bin/bash\necho partial > partial.txt\nexit 3\n", "fails.sh")
    job_id = hb.submit("--stage-out", "partial.txt", "--stage-out", "final.txt:out/", script)
    job = hb.wait_state(job_id, "FAILED")
    assert job["exit_status"] == 3
    assert (hb.workdir / "partial.txt").read_text() == "partial\n"  # default destination: the submit directory
    full = hb.full(job_id)
    assert full["stageout_files"] == f"{hb.workdir}/partial.txt (8 bytes)"
    assert full["comment"] == (f"exit status 3; File stage out failed: final.txt@{HOST}:{hb.workdir}/out/: "
                               "no such file in the job's directory")
    assert "File stage out failed: final.txt" in hb.run("tracejob", job_id).stdout


def test_a_failed_stage_out_keeps_what_was_copied_and_leaves_its_file(hb):
    (hb.workdir / "blocker").write_text("a file where a directory is wanted\n")
    script = hb.script("#!/bin/bash\necho a > a.txt\necho b > b.txt\n", "two.sh")
    job_id = hb.submit("--stage-out", "a.txt:blocker/", "--stage-out", "b.txt:kept/", script)
    job = hb.wait_state(job_id, "SUCCEEDED")
    assert (hb.workdir / "kept" / "b.txt").read_text() == "b\n"
    assert job["reason"] == f"File stage out failed: a.txt@{HOST}:{hb.workdir}/blocker/a.txt: Not a directory"
    assert (hb.user_home / "a.txt").read_text() == "a\n"  # not staged out: left where the job ran
    assert [f["path"] for f in job["stageout_files"]] == ["b.txt"]


def test_an_array_task_stages_its_own_files(hb):
    for i in (1, 2):
        (hb.workdir / f"part{i}.txt").write_text(f"p{i}\n")
    script = hb.script("#!/bin/bash\nsed s/p/q/ in.txt > out.txt\n", "arr.sh")
    job_id = hb.submit("-J", "1-2", "-W", "sandbox=PRIVATE",
                       "-W", f"stagein=in.txt@localhost:{hb.workdir}/part^array_index^.txt",
                       "-W", f"stageout=out.txt@localhost:{hb.workdir}/done^array_index^.txt", script)
    hb.wait_state(job_id, "SUCCEEDED")
    assert [(hb.workdir / f"done{i}.txt").read_text() for i in (1, 2)] == ["q1\n", "q2\n"]
    assert hb.job(task_id(job_id, 2))["state"] == "SUCCEEDED"


def test_directives_carry_staging_and_bad_values_store_nothing(hb):
    (hb.workdir / "d.txt").write_text("from a directive\n")
    script = hb.script(f"#!/bin/bash\n#PBS -W stagein=d.txt@localhost:{hb.workdir}/d.txt\n"
                       "#HYPER --stage-out d2.txt\ncp d.txt d2.txt\n", "directive.sh")
    job_id = hb.submit(script)
    hb.wait_state(job_id, "SUCCEEDED")
    assert (hb.workdir / "d2.txt").read_text() == "from a directive\n"
    before = len(hb.jobs())
    for args in (("-W", "stagein=in.txt"), ("-W", "stageout=x@elsewhere.example:/r/"),
                 ("--stage-in", "data:/etc/x")):
        proc = hb.run("qsub", *args, "--", "true", check=False)
        assert (proc.returncode, proc.stdout) == (2, "")
        assert one_line(proc.stderr).startswith(("qsub: illegal -W value: ", "qsub: --stage-in ")), proc.stderr
    assert len(hb.jobs()) == before


def _post(hb, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(hb.url + "/jobs", data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {hb.token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_api_reads_the_same_pairs_and_refuses_bad_ones_storing_nothing(hb):
    before = len(hb.jobs())
    status, answer = _post(hb, {"command": ["true"], "stagein": "in.txt"})
    assert status == 400 and "illegal -W value: stagein 'in.txt': give LOCAL@HOST:REMOTE" in json.dumps(answer)
    status, answer = _post(hb, {"command": ["true"], "stageout": ["a@far.example:/r/"],
                                "env": {"PBS_O_HOST": HOST}})
    assert status == 400 and "stageout host 'far.example'" in json.dumps(answer)
    assert len(hb.jobs()) == before
    status, job = _post(hb, {"command": ["true"], "workdir": str(hb.workdir),
                             "stagein": ["x.txt@localhost:data/x.txt"], "stageout": "y@localhost:out/"})
    assert status == 201, job
    assert (job["stagein"], job["stageout"]) == ([f"x.txt@localhost:{hb.workdir}/data/x.txt"],
                                                 [f"y@localhost:{hb.workdir}/out/"])

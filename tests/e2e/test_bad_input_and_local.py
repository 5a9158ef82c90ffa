"""Bad input gets one clear line and the right exit code, and changes nothing; the API refuses
what it must; `hyper local status`, the token file and the listening address."""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import urllib.error
import urllib.request

import pytest

from tests.e2e.conftest import ID_RE, Daemon, one_line

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_bad_input_and_local")]

UNKNOWN_ID = "999999"  # well formed, never issued by this daemon


@pytest.fixture(scope="module")
def finished_job(hb) -> str:
    job_id = hb.submit("-N", "finished", "--", "echo", "hello")
    hb.wait_state(job_id, "SUCCEEDED")
    return job_id


@pytest.fixture
def unchanged(hb, finished_job):
    """Asserts after the test that the set of jobs and their states did not change."""
    before = {j["id"]: j["state"] for j in hb.jobs()}
    yield
    after = {j["id"]: j["state"] for j in hb.jobs()}
    assert after == before


def _script(hb, text: str = "#!/bin/bash\necho hi\n", name: str = "ok.sh") -> str:
    return str(hb.script(text, name))


QSUB_CASES = {
    "unknown queue": (["-q", "nope"], 170, r"unknown queue 'nope'.*batch.*west"),  # PBSE_UNKQUE, as PBS's qsub
    "bad array": (["-J", "5-1"], 2, r"array range '5-1'"),
    "bad dependency kind": (["-W", f"depend=afterfoo:{UNKNOWN_ID}"], 2, r"afterfoo"),
    "dependency on unknown id": (["-W", f"depend=afterok:{UNKNOWN_ID}"], 206, UNKNOWN_ID),  # PBSE_BADDEPEND
    "bad walltime": (["-l", "walltime=abc"], 2, r"walltime 'abc'"),
    "unknown option": (["--bogus"], 2, r"--bogus"),
    "bad job name": (["-N", "no spaces allowed"], 2, r"name"),
}


@pytest.mark.parametrize("case", list(QSUB_CASES))
def test_qsub_rejects_bad_options(hb, unchanged, case):
    args, code, pattern = QSUB_CASES[case]
    proc = hb.run("qsub", *args, _script(hb), check=False)
    assert proc.returncode in (code if isinstance(code, tuple) else (code,)), proc
    assert proc.stdout == ""
    line = one_line(proc.stderr)
    assert line.startswith("qsub: "), line
    assert re.search(pattern, line), line
    assert "Traceback" not in proc.stderr


def test_qsub_missing_script_file(hb, unchanged):
    missing = hb.workdir / "no-such-script.sh"
    proc = hb.run("qsub", missing, check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    line = one_line(proc.stderr)
    assert line.startswith("qsub: ") and str(missing) in line and "not found" in line, line


def test_qsub_bad_directive_in_script(hb, unchanged):
    script = _script(hb, "#!/bin/bash\n#PBS -l walltime=abc\necho hi\n", "bad-directive.sh")
    proc = hb.run("qsub", script, check=False)
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert "line 2" in line and "walltime" in line, line


def test_qdel_unknown_id(hb, unchanged):
    proc = hb.run("qdel", UNKNOWN_ID, check=False)
    assert proc.returncode == 153  # PBSE_UNKJOBID, as PBS's qdel exits
    assert proc.stdout == ""
    assert one_line(proc.stderr) == f"qdel: Unknown Job Id {UNKNOWN_ID}"  # qdel echoes the id as given


def test_qrls_of_a_finished_job(hb, unchanged, finished_job):
    proc = hb.run("qrls", finished_job, check=False)
    assert proc.returncode == 35  # PBSE_HISTJOBID
    assert one_line(proc.stderr) == "qrls: Job has finished"
    assert hb.job(finished_job)["state"] == "SUCCEEDED"


def test_qlog_unknown_id(hb, unchanged):
    proc = hb.run("qlog", UNKNOWN_ID, check=False)
    assert proc.returncode == 153
    assert proc.stdout == ""
    assert one_line(proc.stderr) == f"qlog: Unknown Job Id {UNKNOWN_ID}.{hb.server}"


def test_qstat_unknown_id(hb, unchanged):
    proc = hb.run("qstat", UNKNOWN_ID, check=False)
    assert proc.returncode == 153
    assert one_line(proc.stderr) == f"qstat: Unknown Job Id {UNKNOWN_ID}.{hb.server}"


# ---------------------------------------------------------------------------------------------
# the API itself


def _api(hb, method: str, path: str, body=None, token: str | None = "default"):
    headers = {"Content-Type": "application/json"}
    if token == "default":
        token = hb.token
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(hb.url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_api_refuses_requests_without_the_token(hb, unchanged, token):
    for method, path, body in (("GET", "/jobs", None), ("POST", "/jobs", {"command": ["true"]}),
                               ("GET", "/queues", None)):
        status, answer = _api(hb, method, path, body, token=token)
        assert status == 401, (method, path, answer)
        assert answer["error"] == "Unauthorized"


def test_api_refuses_an_oversize_batch(hb, unchanged):
    status, answer = _api(hb, "POST", "/jobs", {"jobs": [{"command": ["true"]}] * 1001})
    assert status == 400, answer
    # The message must say what to fix: the batch is too large (1000 jobs at most).
    assert "1000" in answer["message"], answer


def test_api_refuses_an_unknown_field(hb, unchanged):
    status, answer = _api(hb, "POST", "/jobs", {"command": ["true"], "colour": "blue"})
    assert status == 400, answer
    assert "colour" in answer["message"], answer


def test_api_refuses_an_unknown_field_inside_a_batch(hb, unchanged):
    status, answer = _api(hb, "POST", "/jobs", {"jobs": [{"command": ["true"]}, {"command": ["true"], "colour": "x"}]})
    assert status == 400, answer
    assert "colour" in answer["message"], answer


# ---------------------------------------------------------------------------------------------
# local mode


def test_local_status(hb, finished_job):
    out = hb.run("hyper", "local", "status").stdout
    lines = out.splitlines()
    state = hb.state
    assert f"url: {hb.url}" in lines
    assert state["url"] == hb.url
    assert f"pid: {state['pid']}" in lines
    workers = next(l for l in lines if l.startswith("workers: "))
    assert workers == "workers: none" or re.fullmatch(r"workers: ([a-z]{2}-[a-z]+-\d=\d+(, )?)+", workers), workers
    jobs_line = next(l for l in lines if l.startswith("jobs: "))
    counts = dict(re.findall(r"([A-Z]+)=(\d+)", jobs_line))
    listed = hb.jobs()
    expected: dict[str, int] = {}
    for job in listed:
        expected[job["state"]] = expected.get(job["state"], 0) + 1
    assert {k: int(v) for k, v in counts.items()} == expected
    assert any(l.startswith("queue batch:") for l in lines)
    assert any(l.startswith("queue west:") for l in lines)
    assert "parked events: 0" in lines  # no release failed for good


def test_token_file_is_private(hb):
    token = hb.home / "token"
    mode = stat.S_IMODE(os.stat(token).st_mode)
    assert mode == 0o600, oct(mode)
    assert len(hb.token) >= 32
    hosts = json.loads((hb.home / "hosts.json").read_text())
    assert hosts["hosts"]["local"]["url"] == hb.url
    assert hb.token not in (hb.home / "hosts.json").read_text()  # the token stays in its own file


def _listeners(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) with a LISTEN socket on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            address, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":
                found.append(address)
    return found


def test_daemon_listens_on_loopback_only(hb):
    listeners = _listeners(hb.port)
    assert listeners, f"nothing listens on port {hb.port}"
    assert listeners == ["0100007F"], f"listening on {listeners}, not only 127.0.0.1"
    assert hb.state["url"].startswith("http://127.0.0.1:")


def test_relative_home(tmp_path_factory):
    """HYPERBATCH_HOME given relative to the current directory works like an absolute one."""
    # A name no other session uses: the clean-up finds this daemon's processes by the relative path.
    daemon = Daemon(tmp_path_factory.mktemp(f"relative-home-{secrets.token_hex(4)}"))
    daemon.cwd = daemon.root.parent
    daemon.env["HYPERBATCH_HOME"] = f"{daemon.root.name}/home"
    try:
        up = daemon.run("hyper", "local", "up", "--port", daemon.port, "--config", daemon.config_dir,
                        check=False, timeout=40)
        assert up.returncode == 0, up.stderr
        assert daemon.state is not None
        daemon.daemon_pids = [int(daemon.state["pid"])]
        proc = daemon.run("qsub", "--wait", "--", "echo", "relative", timeout=40)
        job_id = proc.stdout.strip()
        assert daemon.job(job_id)["state"] == "SUCCEEDED"
        assert daemon.run("qlog", job_id).stdout == "relative\n"
    finally:
        daemon.down(check=False)
        daemon.kill_everything()


def test_api_batch_of_1000_is_accepted(hb):
    """The limit itself is allowed (held, so the jobs never run). Last in the module: it adds 1000 jobs."""
    status, answer = _api(hb, "POST", "/jobs", {"jobs": [{"command": ["true"], "hold": True}] * 1000})
    assert status == 201, answer
    ids = [j["id"] for j in answer["jobs"]]
    assert len(set(ids)) == 1000 and all(ID_RE.fullmatch(i) for i in ids)
    assert {j["state"] for j in hb.jobs(ids[0], ids[-1])} == {"HELD"}


def test_the_api_describes_itself(hb):
    import json
    import urllib.request

    def get(path):
        request = urllib.request.Request(hb.url + path, headers={"Authorization": f"Bearer {hb.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()

    status, kind, body = get("/openapi.json")
    spec = json.loads(body)
    assert status == 200 and spec["info"]["title"] == "HyperBatch"
    for path in ("/jobs", "/jobs/{job_id}", "/jobs/{job_id}/log", "/jobs/{job_id}/hold", "/queues", "/health"):
        assert path in spec["paths"], path
    status, kind, body = get("/swagger")
    assert status == 200 and kind.startswith("text/html") and "swagger" in body.lower()

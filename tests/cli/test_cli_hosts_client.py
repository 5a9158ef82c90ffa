"""hyperbatch.cli.host_registry and hyperbatch.cli.client, in process."""

from __future__ import annotations

import json
import stat
import threading

import pytest

from hyperbatch.cli import host_registry as hosts
from hyperbatch.cli.client import ApiError, Client, Unreachable, job_path
from hyperbatch.cli.errors import HostError
from tests.cli.conftest import TOKEN

LOCAL = {"kind": "local", "url": "http://127.0.0.1:8765", "token_file": "/tmp/token"}
AWS = {"kind": "aws", "url": "https://abc.execute-api.us-east-1.amazonaws.com/prod/", "region": "us-east-1"}


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERBATCH_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("HYPERBATCH_HOST", raising=False)
    return tmp_path / "state"


# -- hosts ------------------------------------------------------------------------------------


def test_no_hosts(state):
    assert hosts.load_hosts() == {"selected": None, "hosts": {}}
    with pytest.raises(HostError, match="hyper local up"):
        hosts.current()


def test_register_defaults_to_local_and_file_is_private(state):
    hosts.register("local", LOCAL)
    assert hosts.current() == ("local", LOCAL)
    path = state / "hosts.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"selected": None, "hosts": {"local": LOCAL}}
    assert sorted(p.name for p in state.iterdir()) == ["hosts.json", "hosts.lock"]  # no temp files left


def test_select_env_override_and_remove(state, monkeypatch):
    hosts.register("local", LOCAL)
    hosts.register("prod", AWS, select=True)
    assert hosts.current()[0] == "prod"
    monkeypatch.setenv("HYPERBATCH_HOST", "local")
    assert hosts.current()[0] == "local"
    monkeypatch.setenv("HYPERBATCH_HOST", "nope")
    with pytest.raises(HostError, match="HYPERBATCH_HOST.*'nope'"):
        hosts.current()
    monkeypatch.delenv("HYPERBATCH_HOST")
    hosts.select("local")
    assert hosts.current()[0] == "local"
    hosts.select("prod")
    hosts.remove("prod")
    assert hosts.load_hosts()["selected"] is None
    assert hosts.current()[0] == "local"  # nothing selected: "local"
    with pytest.raises(HostError, match="unknown HyperBatch host 'prod'"):
        hosts.select("prod")
    with pytest.raises(HostError):
        hosts.remove("prod")


def test_only_non_local_hosts_and_nothing_selected(state):
    hosts.register("prod", AWS)
    with pytest.raises(HostError, match="hyper hosts select"):
        hosts.current()


def test_bad_entries_and_bad_file(state):
    with pytest.raises(HostError, match="kind"):
        hosts.register("x", {"kind": "gcp", "url": "http://x"})
    with pytest.raises(HostError, match="token_file"):
        hosts.register("x", {"kind": "local", "url": "http://x"})
    with pytest.raises(HostError, match="host name"):
        hosts.register("bad name", LOCAL)
    state.mkdir(parents=True, exist_ok=True)
    (state / "hosts.json").write_text("{nope")
    with pytest.raises(HostError, match="not valid JSON"):
        hosts.current()


def test_concurrent_registers_lose_nothing(state):
    threads = [
        threading.Thread(target=hosts.register, args=(f"h{i}", {**LOCAL, "url": f"http://127.0.0.1:{9000 + i}"}))
        for i in range(12)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(hosts.load_hosts()["hosts"]) == sorted(f"h{i}" for i in range(12))


# -- client -----------------------------------------------------------------------------------


@pytest.fixture
def local_entry(api, tmp_path):
    token = tmp_path / "tok"
    token.write_text(TOKEN + "\n")
    return {"kind": "local", "url": api.url, "token_file": str(token)}


def test_request_headers_query_and_keepalive(api, local_entry, monkeypatch):
    monkeypatch.setenv("LOGNAME", "carol")
    client = Client(local_entry)
    api.add(id="7.testhost")
    status, body = client.request("GET", "/jobs", query={"owner": "*", "state": "QUEUED,RUNNING", "next": None})
    assert status == 200 and body["jobs"][0]["id"] == "7.testhost"
    status, body = client.request("GET", job_path("7.testhost"))
    assert status == 200 and body["id"] == "7.testhost"
    first, second = api.requests
    assert first["raw_path"] == "/jobs?owner=%2A&state=QUEUED%2CRUNNING"
    assert first["query"] == {"owner": "*", "state": "QUEUED,RUNNING"}
    assert first["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert first["headers"]["x-hyper-user"] == "carol"
    client.close()


def test_api_error_carries_status_code_message(api, local_entry):
    client = Client(local_entry)
    with pytest.raises(ApiError) as info:
        client.request("GET", job_path("99"))
    assert (info.value.status, info.value.code, info.value.message, info.value.exit_code) == (
        404,
        "NotFound",
        "Unknown Job Id 99.testhost",
        153,  # the PBS error number's low byte, as PBS's commands exit
    )
    assert (info.value.pbs_errno, info.value.job_id) == (15001, "99.testhost")
    api.override("POST", "/jobs", (422, {"error": "InvalidSpec", "message": "bad"}))
    with pytest.raises(ApiError) as info:
        client.request("POST", "/jobs", body={"command": ["true"]})
    assert info.value.exit_code == 2


def test_non_json_error_body(api, local_entry):
    api.override("GET", "/health", lambda q, b: (502, None))
    with pytest.raises(ApiError, match="server error"):
        Client(local_entry).request("GET", "/health")


def test_stage_path_prefix(api, local_entry):
    api.override("GET", "/prod/health", (200, {"status": "ok"}))
    entry = {**local_entry, "url": api.url + "/prod/"}
    assert Client(entry).request("GET", "/health") == (200, {"status": "ok"})


def test_unreachable_and_missing_token(local_entry, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    entry = {**local_entry, "url": f"http://127.0.0.1:{port}"}
    with pytest.raises(Unreachable, match=r"cannot reach HyperBatch at .*: is `hyper local up` running\?"):
        Client(entry).request("GET", "/health")
    with pytest.raises(HostError, match="token file"):
        Client({**local_entry, "token_file": str(tmp_path / "missing")}).request("GET", "/health")


def test_aws_hosts_are_signed_with_sigv4(api, monkeypatch, tmp_path):
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    api.override("POST", "/prod/jobs", (201, {"id": "7.testhost"}))
    entry = {"kind": "aws", "url": api.url + "/prod", "region": "us-east-1"}
    status, body = Client(entry).request("POST", "/jobs", query={"owner": "*"}, body={"command": ["true"]})
    assert status == 201
    received = api.requests[0]
    auth = received["headers"]["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-east-1/execute-api/aws4_request" in auth
    assert "x-hyper-user" not in received["headers"]

    # Re-sign what the server received: the signature must match, so API Gateway would accept it.
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    headers = {h: received["headers"][h] for h in signed}
    request = AWSRequest(
        method="POST", url=f"http://{received['headers']['host']}{received['raw_path']}", data=received["raw_body"],
        headers=headers,
    )
    request.context["timestamp"] = received["headers"]["x-amz-date"]
    signer = SigV4Auth(
        Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), "execute-api", "us-east-1"
    )
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    assert auth.endswith(f"Signature={expected}")

"""Who may do what: the caller is the IAM principal API Gateway verified."""

from tests.aws_box.harness import ADMIN, ALICE, BOB


def test_a_request_without_an_iam_principal_is_refused_with_403(box):
    status, body = box.api("GET", "/jobs", principal=None)
    assert status == 403 and body["error"] == "Forbidden"
    status, _ = box.api("POST", "/jobs", principal=None, body={"command": ["true"]})
    assert status == 403
    assert box.store.query(owner=ALICE).items == []


def test_a_user_sees_and_cancels_only_their_own_jobs_unless_admin(box):
    status, job = box.api("POST", "/jobs", principal=ALICE, body={"command": ["true"], "hold": True})
    assert status == 201 and job["owner"] == ALICE
    for method, path in (("GET", f"/jobs/{job['id']}"), ("DELETE", f"/jobs/{job['id']}"),
                         ("GET", f"/jobs/{job['id']}/log"), ("POST", f"/jobs/{job['id']}/release")):
        status, body = box.api(method, path, principal=BOB)
        assert (status, body["error"]) == (403, "Forbidden"), (method, path)
    status, mine = box.api("GET", "/jobs", principal=BOB)
    assert status == 200 and mine["jobs"] == []
    status, _ = box.api("GET", "/jobs", principal=BOB, query={"owner": ALICE})
    assert status == 403
    # owner=* (what qstat asks for, as PBS lists every job) is every job the caller may see: Bob's own
    assert box.api("GET", "/jobs", principal=BOB, query={"owner": "*"}) == (200, {"jobs": [], "next": None})
    assert box.api("GET", "/jobs", principal=ALICE)[1]["jobs"][0]["id"] == job["id"]
    status, seen = box.api("GET", "/jobs", principal=ADMIN, query={"owner": "*"})
    assert status == 200 and [j["id"] for j in seen["jobs"]] == [job["id"]]
    status, cancelled = box.api("DELETE", f"/jobs/{job['id']}", principal=ADMIN)
    assert status == 200 and cancelled["state"] == "CANCELLED"


def test_an_admin_role_admits_every_session_of_it():
    """settings.admins names the role people sign in through (SSO, assume-role); each sign-in is a new
    session ARN, and every one of them is an admin. A session of another role is not."""
    from tests.aws_box.harness import ACCOUNT, Box

    with Box(admins=(f"arn:aws:iam::{ACCOUNT}:role/teams/Operators",)) as box:
        status, job = box.api("POST", "/jobs", principal=ALICE, body={"command": ["true"], "hold": True})
        assert status == 201
        for session in ("alice@example.com", "botocore-session-1700000000"):
            caller = f"arn:aws:sts::{ACCOUNT}:assumed-role/Operators/{session}"
            status, seen = box.api("GET", f"/jobs/{job['id']}", principal=caller)
            assert status == 200 and seen["id"] == job["id"], caller
        status, body = box.api("GET", f"/jobs/{job['id']}", principal=f"arn:aws:sts::{ACCOUNT}:assumed-role/Dev/bob")
        assert (status, body["error"]) == (403, "Forbidden")

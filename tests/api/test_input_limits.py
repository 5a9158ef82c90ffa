"""The API refuses what a worker could not run, and bodies it must not parse: 400 (413 for size) with one
message that names the field, and nothing stored (issue 9, items 6 and 7, and `qsub -J ""` of item 11).

Before, each of these requests was accepted (201) and the job then killed its worker in a loop until
it ended FAILED "worker lost", or the request crashed the API (500).
"""

from __future__ import annotations

import json

import pytest

from hyperbatch.core import limits

OK = {"command": ["true"]}

REFUSED = {
    "NUL in an environment value": ({**OK, "env": {"A": "x\0y"}}, "env: the value of A contains a NUL byte"),
    "'=' in an environment name": ({**OK, "env": {"A=B": "x"}}, "env: environment variable name 'A=B'"),
    "an environment name that is no name": ({**OK, "env": {"1X": "x"}}, "env: environment variable name '1X'"),
    "NUL in an argument": ({"command": ["echo", "a\0b"]}, "command: argument 1 contains a NUL byte"),
    "NUL in the workdir": ({**OK, "workdir": "/tmp/a\0b"}, "workdir: contains a NUL byte"),
    "NUL in a script": ({"script": "#!/bin/sh\necho \0\n"}, "script: the script contains a NUL byte"),
    "a walltime of 10**400 seconds": ({**OK, "walltime": 10**400}, "walltime: give 1 to 31536000 seconds"),
    "a walltime of 0": ({**OK, "walltime": 0}, "walltime: give 1 to 31536000 seconds"),
    "a walltime past a year, as text": ({**OK, "walltime": "9000:00:00"}, "walltime '9000:00:00': give 1 to 31536000 seconds"),
    "a walltime that is true": ({**OK, "walltime": True}, "walltime: give seconds as a whole number"),
    "a priority of 10**400": ({**OK, "priority": 10**400}, "priority: give a whole number from -1024 to 1023"),
    "an empty array range (qsub -J '')": ({**OK, "array": ""}, "array range: give a value"),
    "an empty queue": ({**OK, "queue": ""}, "queue: give a value"),
    "too many variables": ({**OK, "env": {f"V{i}": "x" * 1000 for i in range(70)}}, "env: the variables are larger"),
    "a bad job in a batch": ({"jobs": [OK, {**OK, "env": {"A=B": "x"}}]}, "jobs.1.env: environment variable name"),
    "a directive past a limit": ({"script": "#!/bin/sh\n#PBS -l walltime=9000:00:00\ntrue\n"},
                                 "script line 2: illegal -l value: walltime '9000:00:00': give 1 to 31536000 seconds"),
    "a list for a body": ([OK], "the body must be a JSON object"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_request_a_worker_could_not_run_is_refused_and_changes_nothing(api, case):
    body, message = REFUSED[case]
    status, answer = api.call("POST", "/jobs", body)
    assert status == 400, answer
    assert answer["message"].startswith(message), answer["message"]
    assert "\n" not in answer["message"]
    assert api.jobs() == []


def test_a_request_at_the_limits_is_accepted(api):
    status, job = api.call("POST", "/jobs", {
        "command": ["echo", "x" * 1000], "env": {"A": "y" * (limits.MAX_ENV_BYTES - 3)},
        "walltime": limits.MAX_WALLTIME_SECONDS, "priority": limits.PRIORITY_MAX, "workdir": "/tmp/here",
        "resources": {"mem": "2gb"},
    })
    assert status == 201, job
    assert job["walltime"] == limits.MAX_WALLTIME_SECONDS and len(api.jobs()) == 1


BODIES = {
    "JSON nested 100,000 deep": (b"[" * 100_000 + b"]" * 100_000, 400, "the body nests arrays and objects"),
    "JSON nested 33 deep, within a field": (
        b'{"command": ["true"], "env": ' + b'{"a": ' * 33 + b"1" + b"}" * 34, 400, "the body nests"),
    "not JSON": (b"{command: true}", 400, "the body must be JSON"),
    "not UTF-8": (b'{"command": ["\xff"]}', 400, "the body must be JSON (UTF-8 text)"),
    "a number of 5,000 digits": (b'{"command": ["true"], "priority": 1' + b"0" * 5000 + b"}", 400,
                                 "the body holds a number too long to read"),
    "over 10 MiB": (b'{"command": ["' + b"x" * limits.MAX_BODY_BYTES + b'"]}', 413, "the request body is over 10 MiB"),
}


@pytest.mark.parametrize("case", list(BODIES))
def test_a_body_that_must_not_be_parsed_is_refused(api, case):
    raw, status, message = BODIES[case]
    got, answer = api.call("POST", "/jobs", raw=raw)
    assert (got, answer["message"][: len(message)]) == (status, message), answer
    assert api.jobs() == []


def test_a_query_number_past_any_log_or_array_is_refused(api):
    _, job = api.call("POST", "/jobs", OK)
    for path in (f"/jobs/{job['id']}/log?offset={10**400}", f"/jobs/{job['id']}?index={10**30}",
                 f"/jobs/{job['id']}/tasks?offset={10**30}"):
        method = "DELETE" if "index" in path else "GET"
        status, answer = api.call(method, path)
        assert status == 400, (path, answer)
    assert api.jobs()[0]["state"] == "QUEUED"


def test_the_openapi_document_describes_the_submit_body(api):
    status, doc = api.call("GET", "/openapi.json")
    assert status == 200
    body = doc["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    names = {ref["$ref"].rsplit("/", 1)[1] for ref in body["anyOf"]}
    assert names == {"JobRequest", "BatchRequest"}
    job = doc["components"]["schemas"]["JobRequest"]["properties"]
    assert job["priority"]["anyOf"][0]["maximum"] == limits.PRIORITY_MAX
    assert json.dumps(doc)  # plain JSON all through


def test_a_full_store_answers_507_in_words_and_changes_nothing(api):
    """Item 11: with the disk full, qsub got HTTP 500 "database or disk is full"."""
    conn = api.backend.db.conn  # the calls below run in this thread, on this connection
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # as good as a full disk: the file may not grow
    answers = [api.call("POST", "/jobs", {**OK, "env": {"PAD": "x" * 3000}}) for _ in range(20)]
    refused = [answer for status, answer in answers if status != 201]
    assert refused, "the store never filled up"
    assert {status for status, _ in answers} == {201, 507}
    assert refused[0]["error"] == "InsufficientStorage"
    assert refused[0]["message"].startswith("the job store's disk is full (database or disk is full): nothing was changed")
    assert len(api.jobs()) == len(answers) - len(refused)

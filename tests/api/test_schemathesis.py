"""schemathesis against the API as the local server serves it: no request it makes gets a 5xx, and
every answer is one the document describes: a status code it lists for the operation, its content
type, and a body that fits that status's schema (the response models of hyperbatch.core.responses,
the error body for every 4xx).

The schema is the application's own GET /openapi.json (powertools' routes plus the submit body,
hyperbatch.api.openapi_document). Requests go over HTTP to the local server on 127.0.0.1, with
the bearer token, so the server's framing and the application's validation are both under test.
Each operation gets MAX_EXAMPLES requests that fit the schema and as many that break it,
derandomized so that a run is repeatable, and bounded in number (about 20 s in all).

schemathesis's own pytest integration (`schema.parametrize()`) does not run under pytest 9.2
(it reads the removed `Function._nodeid`), so the operations' strategies are driven here with
Hypothesis directly.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from tests.api.conftest import TOKEN

MAX_EXAMPLES = 25
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def api_schema(served_api):
    status, doc = served_api.call("GET", "/openapi.json")
    assert status == 200
    schema = schemathesis.openapi.from_dict(doc)
    schema.config.update(base_url=served_api.url, headers={"Authorization": f"Bearer {TOKEN}"})
    return schema


def operations(schema) -> list:
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) >= 9, [op.label for op in found]  # every route of hyperbatch.api, the openapi one aside
    return found


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_gets_a_server_error_nor_an_answer_the_document_does_not_describe(api_schema, mode):
    server_errors: list[str] = []
    undescribed: list[str] = []
    tried: list[str] = []
    for operation in operations(api_schema):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case):
            response = case.call(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            if response.status_code >= 500:
                server_errors.append(f"{response.status_code} {response.text[:300]}\n  {case.as_curl_command()}")
            try:
                case.validate_response(response, checks=CONFORMANCE)
            except FailureGroup as exc:  # what broke, each failure with the schema and the value
                undescribed.append(f"{operation.label} {response.status_code} {response.text[:200]}: "
                                   f"{str(exc)[:400]}\n  {case.as_curl_command()}")

        try:
            call()
        except Unsatisfiable:  # nothing in it to break (GET /health has no parameters): no negative case
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        tried.append(operation.label)
    assert "POST /jobs" in tried
    assert server_errors == []
    assert undescribed == []

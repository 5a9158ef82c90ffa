"""The API's description (GET /openapi.json) and its Swagger UI (GET /swagger).

The document must be a valid OpenAPI 3 document that a client can be generated from: every
operation behind the platform's sign-in, a typed answer for success and for errors, a request body
where it takes one, examples that fit their schemas; and what the API really answers must fit it
(here for the answers about a job that exists, which schemathesis's generated ids seldom name).
The Swagger page must work with no internet: its script and style come from the API itself.
"""

from __future__ import annotations

import json
import urllib.request
from html.parser import HTMLParser
from urllib.parse import urljoin, urlparse

import jsonschema
import pytest
from openapi_spec_validator import validate

from hyperbatch.adapters.local.http import _Context, to_event
from hyperbatch.api import AWS, SESSION_COOKIE, build_app, openapi_document
from tests.api.conftest import TOKEN

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def document(api) -> dict:
    status, doc = api.call("GET", "/openapi.json")
    assert status == 200
    return doc


def operations(doc: dict) -> list[tuple[str, str, dict]]:
    return [(method.upper(), path, op) for path, item in doc["paths"].items()
            for method, op in item.items() if method in METHODS]


def resolve(doc: dict, schema: dict) -> dict:
    return doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]] if "$ref" in schema else schema


def conforms(doc: dict, method: str, path: str, status: int, body) -> list[str]:
    """Where `body` breaks the schema the document gives for `status` of `method path` (none: it fits)."""
    return fits(doc, doc["paths"][path][method.lower()]["responses"][str(status)]["content"]["application/json"]["schema"],
                body)


def fits(doc: dict, schema: dict, body) -> list[str]:
    """Where `body` breaks `schema`, a schema of the document (none: it fits)."""
    validator = jsonschema.Draft202012Validator({**schema, "components": doc["components"]})
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(body)]


def test_the_document_is_valid_openapi_3(document):
    validate(document)  # raises on any fault, naming it
    assert document["openapi"].startswith("3.")
    assert len(operations(document)) >= 15


def test_locally_every_operation_takes_the_bearer_token_or_the_dashboard_cookie(document):
    schemes = {name: {k: v for k, v in scheme.items() if k != "description"}
               for name, scheme in document["components"]["securitySchemes"].items()}
    assert schemes == {"bearerAuth": {"type": "http", "scheme": "bearer"},
                       "sessionCookie": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE}}
    assert document["security"] == [{"bearerAuth": []}, {"sessionCookie": []}]
    # No operation opts out (an empty requirement, or one naming no scheme): /health needs the token too.
    for method, path, op in operations(document):
        assert op.get("security", document["security"]) == document["security"], f"{method} {path}"


def test_on_aws_the_document_names_sigv4():
    doc = openapi_document(build_app(scheduler=None, authorize=lambda event: None, workers=dict, platform=AWS), AWS)
    sigv4 = doc["components"]["securitySchemes"]
    assert list(sigv4) == ["sigv4"]
    assert {k: v for k, v in sigv4["sigv4"].items() if k != "description"} == {
        "type": "apiKey", "in": "header", "name": "Authorization", "x-amazon-apigateway-authtype": "awsSigv4"}
    assert doc["security"] == [{"sigv4": []}]
    assert all("403" in op["responses"] and "401" not in op["responses"] for _, _, op in operations(doc))
    validate(doc)


def test_every_operation_has_a_typed_answer_a_typed_error_and_the_body_it_takes(document):
    for method, path, op in operations(document):
        where = f"{method} {path}"
        ok = [code for code in op["responses"] if code.startswith("2")]
        assert len(ok) == 1, where
        schema = op["responses"][ok[0]]["content"]["application/json"]["schema"]
        for variant in schema.get("anyOf", [schema]):
            model = resolve(document, variant)
            assert model.get("properties") and model.get("required"), f"{where}: untyped answer {variant}"
            assert model.get("examples"), f"{where}: {variant} has no example"
        errors = [code for code in op["responses"] if not code.startswith("2")]
        assert {"400", "401", "500"} <= set(errors), where
        assert "422" not in errors, where  # the API answers a request its models refuse with 400
        for code in errors:
            assert op["responses"][code]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorBody"}, f"{where} {code}"
        if method in ("POST", "PATCH") and not path.endswith(("/hold", "/release", "/rerun")):
            body = op.get("requestBody")
            assert body and body["required"], f"{where} takes a body"
            content = body["content"]["application/json"]
            for variant in content["schema"].get("anyOf", [content["schema"]]):
                model = resolve(document, variant)
                assert model.get("properties") and model.get("examples"), f"{where}: {variant}"
    submit = document["paths"]["/jobs"]["post"]
    assert "201" in submit["responses"]
    assert [v["$ref"] for v in submit["requestBody"]["content"]["application/json"]["schema"]["anyOf"]] == [
        "#/components/schemas/JobRequest", "#/components/schemas/BatchRequest"]


def test_every_example_fits_its_schema(document):
    schemas = document["components"]["schemas"]
    assert [name for name, schema in schemas.items() if "properties" in schema and not schema.get("examples")] == []
    for name, schema in schemas.items():
        for example in schema.get("examples", []):
            assert fits(document, schema, example) == [], name
    bodies = document["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]
    for example in bodies["examples"].values():
        assert fits(document, bodies["schema"], example["value"]) == []


def test_what_the_api_answers_about_a_job_fits_the_document(api, document):
    status, array = api.call("POST", "/jobs", {"command": ["true"], "array": "1-3", "name": "sweep",
                                               "walltime": "01:00:00", "umask": "022", "env": {"A": "b"},
                                               "stagein": ["in.txt@host:/data/in.txt"]})
    assert status == 201 and conforms(document, "POST", "/jobs", 201, array) == []
    status, batch = api.call("POST", "/jobs", {"script": "echo hi\n", "jobs": [{"name": "a"}, {"name": "b"}]})
    assert status == 201 and conforms(document, "POST", "/jobs", 201, batch) == []
    seq, single = array["seq"], batch["jobs"][0]["seq"]
    answers = [
        ("GET", "/jobs", "/jobs", None),
        ("GET", f"/jobs/{seq}", "/jobs/{job_id}", None),
        ("GET", f"/jobs/{seq}%5B2%5D", "/jobs/{job_id}", None),  # one task: a TaskView
        ("GET", f"/jobs/{seq}/tasks", "/jobs/{job_id}/tasks", None),
        ("GET", f"/jobs/{seq}/log?index=1", "/jobs/{job_id}/log", None),
        ("PATCH", f"/jobs/{single}", "/jobs/{job_id}", {"priority": 5}),
        ("POST", f"/jobs/{single}/hold", "/jobs/{job_id}/hold", None),
        ("POST", f"/jobs/{single}/release", "/jobs/{job_id}/release", None),
        ("POST", f"/jobs/{single}/move", "/jobs/{job_id}/move", {"queue": "west"}),
        ("DELETE", f"/jobs/{single}", "/jobs/{job_id}", None),
        ("GET", "/queues", "/queues", None),
        ("GET", "/nodes", "/nodes", None),
        ("GET", "/health", "/health", None),
        # errors: each in the error body
        ("GET", "/jobs/99999", "/jobs/{job_id}", None),
        ("POST", f"/jobs/{single}/hold", "/jobs/{job_id}/hold", None),  # cancelled: 409
        ("POST", "/jobs/1/signal", "/jobs/{job_id}/signal", {"signal": ""}),
        ("POST", "/uploads", "/uploads", {"files": ["in.txt"]}),  # local mode keeps no job files: 404
    ]
    seen = set()
    for method, url, path, body in answers:
        status, answer = api.call(method, url, body)
        seen.add(status)
        assert conforms(document, method, path, status, answer) == [], f"{method} {url} {status} {answer}"
    assert seen == {200, 400, 404, 409}


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.found.append((tag, value))


def test_swagger_loads_its_script_and_style_from_the_api_itself(served_api):
    def get(url: str) -> tuple[int, str, bytes]:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read()

    page_url = f"{served_api.url}/swagger"
    status, content_type, page = get(page_url)
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    parser = _Assets()
    parser.feed(page.decode())
    assert sorted(tag for tag, _ in parser.found) == ["link", "script"]
    types = {"link": "text/css; charset=utf-8", "script": "text/javascript; charset=utf-8"}
    for tag, ref in parser.found:
        url = urljoin(page_url, ref)
        assert urlparse(url).netloc == urlparse(served_api.url).netloc, f"{ref} is not served by the API"
        status, content_type, asset = get(url)
        assert (status, content_type) == (200, types[tag])
        assert len(asset) > 100_000  # Swagger UI's bundle and style, not a stub
    assert b"SwaggerUIBundle" in page and b'"bearerAuth"' in page  # the document is in the page, with its schemes


def test_swagger_and_its_assets_need_sign_in_as_every_route_does(api):
    for path in ("/swagger", "/swagger/swagger-ui.js", "/swagger/swagger-ui.css", "/openapi.json"):
        status, body = api.call("GET", path, headers={"Authorization": "Bearer wrong"})
        assert (status, body["error"]) == (401, "Unauthorized"), path


def test_the_document_in_the_swagger_page_is_the_one_served(api, document):
    page = api.app.resolve(to_event("GET", "/swagger", {"Authorization": f"Bearer {TOKEN}"}, b""), _Context())["body"]
    start = page.index("spec: ") + len("spec: ")
    spec, _ = json.JSONDecoder().raw_decode(page[start:].replace("<\\/", "</"))
    assert spec == document

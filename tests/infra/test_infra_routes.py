"""API Gateway routes every path the API application serves (a route missing there answers 404)."""

import re

from stacks.api import ROUTES

from hyperbatch.api import SWAGGER_ASSETS, build_app
from hyperbatch.web.routes import AWS_PAGES


def test_the_http_api_routes_every_path_of_the_application():
    app = build_app(scheduler=None, authorize=lambda event: None, workers=dict)
    schema = app.get_openapi_schema(title="HyperBatch")
    served = {(method.upper(), re.sub(r"\{\w+\}", "{id}", path))
              for path, item in schema.paths.items() for method in item.model_dump(exclude_none=True)}
    served |= {("GET", "/openapi.json"), ("GET", "/swagger")}  # served, but kept out of the schema
    served |= {("GET", f"/swagger/{asset}") for asset in SWAGGER_ASSETS}
    served |= set(AWS_PAGES)  # the dashboard's pages, likewise
    assert served == set(ROUTES)

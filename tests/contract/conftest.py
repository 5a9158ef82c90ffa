"""Each port's contract runs against every adapter: `backend` is parametrized by adapter kind.

The AWS adapters join by adding a parameter that builds them under moto.
"""

import pytest

from hyperbatch.backends import open_local

KINDS = ["local"]


@pytest.fixture(params=KINDS)
def backend(request, tmp_path):
    if request.param == "local":
        yield open_local(tmp_path)

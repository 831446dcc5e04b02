"""R9 (docs/guarantees.md): schemathesis against the OpenAPI document a real `tradehub serve` serves.

Each operation gets a bounded number of generated requests, with an admin
token so they reach the handlers; every response must keep the documented
contract (status codes, content types, schemas) and none may be a 5xx.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from .conftest import SECRET
from .test_server import Server, free_port

pytestmark = [pytest.mark.broker, pytest.mark.slow]  # `serve` starts its own nats-server

EXAMPLES = 25
# Check digits, code lists and cross-field rules go beyond what JSON Schema can say, so a
# schema-valid declaration may rightly get 422 (documented, with the failing paths).
BEYOND_JSON_SCHEMA = [positive_data_acceptance]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = dict(os.environ, TRADEHUB_DATA_DIR=str(tmp_path_factory.mktemp("fuzz") / "var"),
               TRADEHUB_SECRET=SECRET)
    env.pop("TRADEHUB_DATABASE_URL", None)
    server = Server(env, free_port())
    yield server
    server.stop()


def test_the_api_keeps_its_contract(served: Server):
    headers = {"Authorization": f"Bearer {served.token('--role', 'admin')}"}
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def keeps_contract(case) -> None:
            case.call_and_validate(headers=headers, excluded_checks=BEYOND_JSON_SCHEMA)

        keeps_contract()

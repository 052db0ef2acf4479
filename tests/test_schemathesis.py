"""Property-based checks of the API against its own OpenAPI schema (schemathesis, in-process).

Hundreds of generated requests over every endpoint: no 5xx, and every response (status code,
content type, headers, body, each server-sent event) conforms to the schema. No LLM server runs
here, so `openai-chat` (`qa-openai-chat` on /v1) must fail as documented: 502 naming the
backend, never another 5xx.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from qa.config import load_settings
from qa.pipeline import Pipeline
from qa.server.app import app_state, create_app

# The schema comes from an app without an index (cheap at collection time); the fixture below
# gives it the real demo pipeline before any request is made. Uploads off: generated files
# must not land in the demo corpus (the documented 403 is checked instead).
APP = create_app(load_settings(uploads="off", _env_file=None))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def _ready(demo_pipeline: Pipeline) -> None:
    app_state(APP).ready(demo_pipeline)


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_schema(case: Any) -> None:
    excluded = [not_a_server_error]
    if case.path == "/v1/chat/completions":
        # "The last message is the user's" has no JSON Schema spelling, so schema-valid bodies
        # ending with another role get the documented 400; every response is still checked.
        excluded.append(positive_data_acceptance)
    response = case.call_and_validate(excluded_checks=excluded)
    if response.status_code >= 500:
        assert response.status_code == 502, response.text
        body = case.body if isinstance(case.body, dict) else {}
        if case.path.startswith("/v1/"):  # OpenAI's error shape, the model names the answerer
            assert body.get("model") == "qa-openai-chat"
            detail = response.json()["error"]["message"]
        else:
            assert body.get("answerer") == "openai-chat"
            detail = response.json()["detail"]
        assert "The LLM backend at http://127.0.0.1:" in detail

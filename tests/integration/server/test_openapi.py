"""schemathesis against the served OpenAPI document: no 5xx, every response conforms.

Bounded (20 examples per operation, no deadline) so it stays well under a minute. It
runs with an admin key, so every operation gets past authentication and exercises its
validation, its handler and its documented answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.server.support import Served, serve

# Fuzzing sends thousands of requests from one key; the limits are not under test here.
SERVER_SETTINGS = {"server": {"rate_limit": {"per_second": 100000, "burst": 100000}}}
WITHOUT_INPUT = {
    f"GET {path}"
    for path in (
        "/healthz",
        "/readyz",
        "/metrics",
        "/.well-known/jwks.json",
        "/v1/log/checkpoint",
        "/v1/log/vkey",
        "/v1/policies",
    )
}
"""Operations that take no parameters: no negative case exists for them."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def fuzzed_calls(served: Served) -> int:
    """How many requests the server answered so far (from its own request metric)."""
    text = httpx.get(f"{served.url}/metrics").text
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("clearance_http_request_seconds_count")
        )
    )


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = serve(tmp_path_factory.mktemp("openapi") / "home", SERVER_SETTINGS)
    try:
        yield served
    finally:
        served.stop()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_conforms_to_its_openapi(fuzzed: Served, mode: GenerationMode) -> None:
    # One strategy per operation, driven by hypothesis here (schemathesis' own pytest
    # plugin does not run on this pytest version), each bounded to 20 examples.
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    headers = {"Authorization": f"Bearer {fuzzed.keys['admin']}"}
    results: list[Any] = list(schema.get_all_operations())
    operations = [result.ok() for result in results]
    assert len(operations) == 22
    unsatisfiable: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=20,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def conforms(case: Any) -> None:
            case.call_and_validate(base_url=fuzzed.url, headers=headers, checks=CHECKS)

        try:
            conforms()
        except Unsatisfiable:
            # No invalid input exists for an operation without parameters or body.
            assert mode == GenerationMode.NEGATIVE, operation.label
            unsatisfiable.append(operation.label)
    assert set(unsatisfiable) <= WITHOUT_INPUT, unsatisfiable
    calls = fuzzed_calls(fuzzed)
    assert calls >= 20 * len(operations) // 2, calls


def test_the_openapi_document_describes_every_contract_path(fuzzed: Served) -> None:
    document = httpx.get(f"{fuzzed.url}/openapi.json").json()
    paths = set(document["paths"])
    assert paths == {
        "/v1/authorize",
        "/v1/traces",
        "/v1/traces/{trace_id}",
        "/v1/executions",
        "/v1/requests/{request_id}",
        "/v1/receipts/{request_id}",
        "/v1/log/checkpoint",
        "/v1/log/vkey",
        "/v1/log/proofs/inclusion",
        "/v1/log/proofs/consistency",
        "/v1/log/entries",
        "/v1/approvals",
        "/v1/approvals/{approval_id}",
        "/v1/approvals/{approval_id}/grant",
        "/v1/policies",
        "/v1/policies/evaluate",
        "/.well-known/jwks.json",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    assert "ApiKey" in document["components"]["securitySchemes"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), (method, path)
            for status, response in operation["responses"].items():
                content = response.get("content", {})
                if status.startswith(("2",)) and "application/json" in content:
                    schema_ref = content["application/json"]["schema"]
                    assert schema_ref, (method, path, status)
    examples = document["components"]["schemas"]["Allowed"].get("examples")
    assert examples
    assert examples[0]["effect"] == "allow"

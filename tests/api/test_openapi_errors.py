"""The OpenAPI document shows the error shapes the API sends: problem JSON outside /fhir, an
OperationOutcome on /fhir, OAuth errors at the token endpoint; and an error sent matches them."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from hub.app import create_app
from hub.settings import Settings


def _spec() -> dict[str, Any]:
    return create_app(Settings(database_url="sqlite://", environment="test", auth_disabled=True)).openapi()


def _error_schema(spec: dict[str, Any], path: str, method: str, status: str, media_type: str) -> dict[str, Any]:
    return spec["paths"][path][method]["responses"][status]["content"][media_type]["schema"]


def test_json_apis_document_their_problems() -> None:
    spec = _spec()
    for path, method in (("/admin/api/jobs/{job_id}", "get"), ("/referrals/{task_id}/status", "post"),
                         ("/admin/api/clients/{client_id}/revoke", "post")):
        schema = _error_schema(spec, path, method, "404", "application/problem+json")
        assert {"type", "status", "title", "issues"} <= set(schema["required"]), path


def test_fhir_documents_operation_outcomes_and_the_token_endpoint_oauth_errors() -> None:
    spec = _spec()
    outcome = _error_schema(spec, "/fhir/{resource_type}/{resource_id}", "get", "404", "application/fhir+json")
    assert set(outcome["required"]) == {"resourceType", "issue"}
    oauth = _error_schema(spec, "/auth/token", "post", "401", "application/json")
    assert "error" in oauth["required"]
    token = spec["paths"]["/auth/token"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert token == {"$ref": "#/components/schemas/TokenOut"}


def test_a_problem_sent_has_the_documented_fields(client: TestClient) -> None:
    response = client.get("/admin/api/jobs/999999")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 404 and problem["issues"][0]["code"] == "not-found"

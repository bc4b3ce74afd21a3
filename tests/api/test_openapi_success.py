"""The OpenAPI document names what the admin and referral routes answer on success: a schema
with its fields, not an empty object."""

from __future__ import annotations

from typing import Any

from hub.app import create_app
from hub.settings import Settings


def _spec() -> dict[str, Any]:
    return create_app(Settings(database_url="sqlite://", environment="test", auth_disabled=True)).openapi()


def _success(spec: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    return spec["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]


def _component(spec: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    assert set(ref) == {"$ref"}, ref
    return spec["components"]["schemas"][ref["$ref"].rsplit("/", 1)[-1]]


def test_admin_messages_and_jobs_answer_named_schemas() -> None:
    spec = _spec()
    page = _component(spec, _success(spec, "/admin/api/messages", "get", "200"))
    assert {"total", "items"} <= set(page["properties"])
    message = _component(spec, page["properties"]["items"]["items"])
    assert {"id", "status", "resource", "correlation_id", "created_at"} <= set(message["properties"])
    job = _component(spec, _success(spec, "/admin/api/jobs/{job_id}", "get", "200"))
    assert {"id", "status", "attempts", "idempotency_key", "next_attempt_at", "holding"} <= set(job["properties"])
    routes = _success(spec, "/admin/api/routes", "get", "200")
    assert routes["type"] == "array"
    assert "interactions" in _component(spec, routes["items"])["properties"]


def test_referral_routes_answer_named_schemas() -> None:
    spec = _spec()
    referral = _component(spec, _success(spec, "/referrals", "post", "201"))
    assert {"task", "service_request", "status", "version"} <= set(referral["properties"])
    plan = _component(spec, _success(spec, "/referrals/{task_id}/plan-of-care", "post", "201"))
    assert {"care_plan", "revision", "document", "return_code", "obligations"} <= set(plan["properties"])
    signed = _component(spec, _success(spec, "/certifications/{task_id}/sign", "post", "200"))
    assert {"task", "kind", "due", "overdue"} <= set(signed["properties"])

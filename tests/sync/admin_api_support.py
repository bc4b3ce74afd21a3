"""The recording admin API client (``api``), the ``emr`` webhook fixture and the helpers of the admin API tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from hub.settings import Settings
from hub.sync.delivery import deliver
from sandboxes.webhook import SandboxReceiver
from tests.sync.conftest import SECRET

ADMIN = "/admin/api"


class Recorder:
    """Every admin response of a test, to check that no secret ever leaves the hub."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.bodies: list[str] = []

    def __getattr__(self, method: str) -> Any:
        call = getattr(self.client, method)

        def record(*args: Any, **kwargs: Any) -> httpx.Response:
            response = call(*args, **kwargs)
            self.bodies.append(response.text)
            return response

        return record


@pytest.fixture
def api(client: TestClient) -> Iterator[Recorder]:
    recorder = Recorder(client)
    yield recorder
    leaks = [body[:200] for body in recorder.bodies if SECRET in body]
    assert not leaks, f"a connector secret left the hub: {leaks}"


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert an error is a JSON problem document carrying its status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["issues"]
    return body


def put_webhook(api: Recorder, name: str, url: str, **options: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "kind": "webhook",
        "config": {"url": url, "secret": SECRET},
        "max_attempts": 3,
        "timeout_seconds": 2.0,
        "backoff_base_seconds": 1.0,
        "backoff_max_seconds": 60.0,
        **options,
    }
    response = api.put(f"{ADMIN}/connectors/{name}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def post_route(
    api: Recorder, name: str, resource_type: str, connector: str, **options: Any
) -> dict[str, Any]:
    response = api.post(
        f"{ADMIN}/routes",
        json={"name": name, "resource_type": resource_type, "connector": connector, **options},
    )
    assert response.status_code == 201, response.text
    return response.json()


def create(
    api: Recorder,
    resource_type: str = "ServiceRequest",
    patient: str = "p1",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    resource = {
        "resourceType": resource_type,
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
        **extra,
    }
    if resource_type == "Observation":
        resource = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "ROM"},
            "subject": {"reference": f"Patient/{patient}"},
        }
    response = api.post(
        f"/fhir/{resource_type}",
        content=json.dumps(resource),
        headers={"Content-Type": "application/fhir+json", **(headers or {})},
    )
    assert response.status_code == 201, response.text
    return response.json()


def jobs(api: Recorder, **params: Any) -> list[dict[str, Any]]:
    response = api.get(f"{ADMIN}/jobs", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def messages(api: Recorder, **params: Any) -> dict[str, Any]:
    response = api.get(f"{ADMIN}/messages", params=params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def emr(api: Recorder, receiver: SandboxReceiver) -> str:
    put_webhook(api, "emr", receiver.url + "/webhook")
    post_route(api, "referrals", "ServiceRequest", "emr")
    return "emr"


def dead_job(
    api: Recorder, settings: Settings, receiver: SandboxReceiver, patient: str = "p1", status: int = 422
) -> dict[str, Any]:
    create(api, patient=patient)
    job = jobs(api)[0]
    receiver.configure(fail_keys={**receiver.controls.fail_keys, job["idempotency_key"]: status})
    assert deliver(settings, job["id"]) is None
    return next(j for j in jobs(api) if j["id"] == job["id"])

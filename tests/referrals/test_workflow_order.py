"""The workflow reacts to a write after it, in order: a write is routed before the writes it causes,
and a rule that refuses a change refuses it in the write's own transaction (nothing is routed)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

FHIR = {"Content-Type": "application/fhir+json"}
SECRET = "sandbox-secret-for-tests-0123456789"


def _route_to_webhook(client: TestClient, *resource_types: str) -> None:
    response = client.put("/admin/api/connectors/clinic-emr", json={
        "name": "clinic-emr", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/webhook", "secret": SECRET}})
    assert response.status_code == 200, response.text
    for resource_type in resource_types:
        response = client.post("/admin/api/routes", json={
            "name": f"{resource_type.lower()}-to-emr", "resource_type": resource_type, "connector": "clinic-emr"})
        assert response.status_code == 201, response.text


def _jobs(client: TestClient) -> list[dict]:
    """Every delivery job, oldest first (by id: the order they were written in)."""
    items = client.get("/admin/api/jobs", params={"limit": 500}).json()["items"]
    return sorted(items, key=lambda job: job["id"])


def _referral_request() -> dict:
    return {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "5154007"}]}],
            "subject": {"reference": "Patient/p1"}}


def test_a_service_request_is_routed_before_the_task_it_opens(client: TestClient) -> None:
    _route_to_webhook(client, "ServiceRequest", "Task")
    created = client.post("/fhir/ServiceRequest", content=json.dumps(_referral_request()), headers=FHIR)
    assert created.status_code == 201, created.text
    sr_id = created.json()["id"]
    [task] = [e["resource"] for e in client.get("/fhir/Task", params={"focus": f"ServiceRequest/{sr_id}"})
              .json()["entry"]]

    jobs = _jobs(client)
    assert [job["resource"] for job in jobs] == [f"ServiceRequest/{sr_id}", f"Task/{task['id']}"]


def test_a_refused_task_change_is_refused_in_its_transaction_and_not_routed(client: TestClient) -> None:
    _route_to_webhook(client, "Task")
    sr_id = client.post("/fhir/ServiceRequest", content=json.dumps(_referral_request()), headers=FHIR).json()["id"]
    [task] = [e["resource"] for e in client.get("/fhir/Task", params={"focus": f"ServiceRequest/{sr_id}"})
              .json()["entry"]]
    before = _jobs(client)
    assert [job["resource"] for job in before] == [f"Task/{task['id']}"]

    illegal = client.put(f"/fhir/Task/{task['id']}", content=json.dumps({**task, "status": "completed"}),
                         headers=FHIR)
    assert illegal.status_code == 409, illegal.text
    assert client.get(f"/fhir/Task/{task['id']}").json()["meta"]["versionId"] == task["meta"]["versionId"]
    assert _jobs(client) == before  # the routing of the refused version went with its transaction

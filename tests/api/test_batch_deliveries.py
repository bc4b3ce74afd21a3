"""A batch Bundle publishes the delivery jobs of the entries it kept, and only those: an entry refused
after its write was routed (its savepoint rolled back) leaves no job to publish."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from hub.app import create_app
from hub.settings import Settings
from hub.unit_of_work import using_enqueuer
from tests.enqueuers import RecordingEnqueuer

FHIR = {"Content-Type": "application/fhir+json"}
FULFILL = {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]}


@pytest.fixture
def recorder() -> Iterator[RecordingEnqueuer]:
    recording = RecordingEnqueuer()
    with using_enqueuer(recording):
        yield recording


@pytest.fixture
def app_client(settings: Settings, recorder: RecordingEnqueuer) -> Iterator[TestClient]:
    with TestClient(create_app(settings, enqueuer=recorder), base_url="http://testserver") as client:
        response = client.put("/admin/api/connectors/partner", json={
            "name": "partner", "kind": "webhook",
            "config": {"url": "http://127.0.0.1:9/hook", "secret": "partner-secret-0123456789abcdef"}})
        assert response.status_code == 200, response.text
        response = client.post("/admin/api/routes", json={"name": "tasks", "resource_type": "Task",
                                                          "connector": "partner"})
        assert response.status_code == 201, response.text
        yield client


def _task(client: TestClient) -> dict:
    task = {"resourceType": "Task", "status": "requested", "intent": "order", "code": FULFILL}
    response = client.post("/fhir/Task", content=json.dumps(task), headers=FHIR)
    assert response.status_code == 201, response.text
    return response.json()


def _put(task: dict, status: str) -> dict:
    return {"resource": {**task, "status": status}, "request": {"method": "PUT", "url": f"Task/{task['id']}"}}


def test_a_refused_batch_entry_publishes_no_job(app_client: TestClient, recorder: RecordingEnqueuer) -> None:
    good, refused = _task(app_client), _task(app_client)
    recorder.sent.clear()
    bundle = {"resourceType": "Bundle", "type": "batch",
              # requested -> completed is no transition of a referral: the workflow refuses it after routing
              "entry": [_put(good, "received"), _put(refused, "completed")]}
    response = app_client.post("/fhir", content=json.dumps(bundle), headers=FHIR)
    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses[0].startswith("200") and statuses[1].startswith("409"), statuses

    assert len(recorder.sent) == 1, recorder.sent
    job = app_client.get(f"/admin/api/jobs/{recorder.sent[0]}")
    assert job.status_code == 200, job.text
    assert job.json()["resource"] == f"Task/{good['id']}"
    jobs = app_client.get("/admin/api/jobs").json()
    assert [j["id"] for j in jobs["items"] if j["resource"] == f"Task/{refused['id']}"
            and j["resource_version"] == 2] == []
    assert app_client.get(f"/fhir/Task/{refused['id']}").json()["status"] == "requested"

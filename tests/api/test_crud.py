"""Create, read, vread, update, delete and conditional create through /fhir."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

FHIR = {"Content-Type": "application/fhir+json"}


def service_request(**extra):
    resource = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.1", "value": "REF-1"}],
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "91251008"}]}],
    }
    resource.update(extra)
    return resource


def create(client: TestClient, resource: dict, **headers) -> dict:
    response = client.post(f"/fhir/{resource['resourceType']}", content=json.dumps(resource), headers={**FHIR, **headers})
    assert response.status_code == 201, response.text
    return response.json()


def test_create_returns_201_with_location_etag_and_body(client: TestClient) -> None:
    response = client.post("/fhir/ServiceRequest", content=json.dumps(service_request()), headers=FHIR)
    assert response.status_code == 201
    body = response.json()
    assert body["meta"]["versionId"] == "1"
    assert response.headers["location"] == f"http://testserver/fhir/ServiceRequest/{body['id']}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["last-modified"].endswith("GMT")
    assert response.headers["content-type"].startswith("application/fhir+json")


def test_read_vread_update_and_history(client: TestClient) -> None:
    created = create(client, service_request())
    rid = created["id"]
    updated = dict(created, status="completed")
    response = client.put(f"/fhir/ServiceRequest/{rid}", content=json.dumps(updated), headers=FHIR)
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "2"
    assert client.get(f"/fhir/ServiceRequest/{rid}").json()["status"] == "completed"
    assert client.get(f"/fhir/ServiceRequest/{rid}/_history/1").json()["status"] == "active"
    history = client.get(f"/fhir/ServiceRequest/{rid}/_history").json()
    assert history["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]

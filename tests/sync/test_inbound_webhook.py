"""Signed inbound webhooks: HMAC with a replay window, inbox dedupe, store first, no echo."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient

from connectors.webhook.signing import signature_header

SECRET = "partner-shared-secret-0123456789"


def _setup(client: TestClient) -> None:
    assert client.put("/admin/api/connectors/partner", json={
        "name": "partner", "kind": "webhook",
        "config": {"url": "http://127.0.0.1:9/unused", "secret": SECRET}}).status_code == 200
    assert client.post("/admin/api/routes", json={"name": "echo", "resource_type": "Patient",
                                                   "connector": "partner"}).status_code == 201


def _post(client: TestClient, body: bytes, *, key: str, secret: str = SECRET, ts: int | None = None):
    ts = int(time.time()) if ts is None else ts
    return client.post("/inbound/default/partner", content=body, headers={
        "Content-Type": "application/fhir+json", "Idempotency-Key": key, "X-Hub-Timestamp": str(ts),
        "X-Hub-Signature-256": signature_header(secret, ts, body, idempotency_key=key)})


PATIENT = json.dumps({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "M-9"}],
                      "name": [{"family": "Okonkwo"}]}).encode()


def test_signed_push_is_stored_once_and_not_echoed(client: TestClient) -> None:
    _setup(client)
    first = _post(client, PATIENT, key="evt-1")
    assert first.status_code == 202, first.text
    again = _post(client, PATIENT, key="evt-1")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert client.get("/fhir/Patient", params={"identifier": "urn:mrn|M-9"}).json()["total"] == 1
    changed = json.dumps({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "M-9"}],
                          "name": [{"family": "Okonkwo-Lee"}]}).encode()
    assert _post(client, changed, key="evt-2").status_code == 202
    found = client.get("/fhir/Patient", params={"identifier": "urn:mrn|M-9"}).json()
    assert found["total"] == 1 and found["entry"][0]["resource"]["name"][0]["family"] == "Okonkwo-Lee"
    messages = client.get("/admin/api/messages", params={"status": "unrouted"}).json()["items"]
    assert len(messages) == 2  # stored, translated, and not routed back to the partner it came from
    assert client.get("/admin/api/jobs").json()["total"] == 0


def test_bad_or_stale_signatures_are_refused_and_not_stored(client: TestClient) -> None:
    _setup(client)
    assert _post(client, PATIENT, key="k1", secret="another-secret-0123456789").status_code == 401
    assert _post(client, PATIENT, key="k2", ts=int(time.time()) - 3600).status_code == 401
    tampered = client.post("/inbound/default/partner", content=PATIENT + b" ", headers={
        "Idempotency-Key": "k3", "X-Hub-Timestamp": str(int(time.time())),
        "X-Hub-Signature-256": signature_header(SECRET, int(time.time()), PATIENT, idempotency_key="k3")})
    assert tampered.status_code == 401
    assert client.post("/inbound/default/nobody", content=PATIENT).status_code == 401
    assert client.get("/admin/api/messages").json()["total"] == 0
    assert client.get("/fhir/Patient").json()["total"] == 0


def test_invalid_resource_is_kept_as_rejected(client: TestClient) -> None:
    _setup(client)
    response = _post(client, b'{"resourceType": "Patient", "gender": "bogus"}', key="bad-1")
    assert response.status_code == 422 and "Patient.gender" in response.json()["error"]
    rejected = client.get("/admin/api/messages", params={"status": "rejected"}).json()["items"]
    assert len(rejected) == 1 and rejected[0]["has_payload"]

"""Inbound webhook security: the Idempotency-Key is signed, unknown and known names answer alike,
the write policy of inbound channels (per-connector types, never the hub's own records), and the
AuditEvent every inbound write leaves, with the connector as agent."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi.testclient import TestClient

from connectors.webhook.signing import signature_header

SECRET = "partner-shared-secret-0123456789"
PATIENT = json.dumps({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "M-9"}]}).encode()
FORGED_AUDIT = json.dumps({
    "resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded": "2024-01-01T00:00:00Z",
    "agent": [{"requestor": True, "altId": "someone-else"}], "source": {"observer": {"display": "x"}}}).encode()


def _setup(client: TestClient, name: str = "partner", **config: Any) -> None:
    assert client.put(f"/admin/api/connectors/{name}", json={
        "name": name, "kind": "webhook",
        "config": {"url": "http://127.0.0.1:9/unused", "secret": SECRET, **config}}).status_code == 200


def _headers(body: bytes, key: str, ts: int | None = None, secret: str = SECRET) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    return {"Content-Type": "application/fhir+json", "Idempotency-Key": key, "X-Hub-Timestamp": str(ts),
            "X-Hub-Signature-256": signature_header(secret, ts, body, idempotency_key=key)}


def _audits(client: TestClient) -> list[dict[str, Any]]:
    bundle = client.get("/fhir/AuditEvent", params={"_count": "100"}).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def test_the_same_signed_request_under_a_new_key_is_refused(client: TestClient) -> None:
    _setup(client)
    headers = _headers(PATIENT, "evt-1")
    assert client.post("/inbound/default/partner", content=PATIENT, headers=headers).status_code == 202
    replay = {**headers, "Idempotency-Key": "evt-1-again"}
    response = client.post("/inbound/default/partner", content=PATIENT, headers=replay)
    assert response.status_code == 401
    assert client.get("/admin/api/messages").json()["total"] == 1
    assert client.get("/fhir/Patient").json()["total"] == 1


def test_unknown_disabled_and_wrong_kind_names_answer_as_a_bad_signature(client: TestClient) -> None:
    _setup(client)
    _setup(client, "off")
    assert client.put("/admin/api/connectors/off", json={
        "name": "off", "kind": "webhook", "enabled": False,
        "config": {"url": "http://127.0.0.1:9/unused", "secret": SECRET}}).status_code == 200
    assert client.put("/admin/api/connectors/emr", json={
        "name": "emr", "kind": "fhir_rest", "config": {"base_url": "http://127.0.0.1:9/fhir"}}).status_code == 200
    wrong = client.post("/inbound/default/partner", content=PATIENT,
                        headers=_headers(PATIENT, "k1", secret="not-the-partner-secret-0123"))
    answers = [wrong] + [client.post(f"/inbound/{tenant}/{name}", content=PATIENT, headers=_headers(PATIENT, "k1"))
                         for tenant, name in (("default", "nobody"), ("default", "off"), ("default", "emr"),
                                              ("other-tenant", "partner"))]
    assert [a.status_code for a in answers] == [401] * 5
    assert len({a.text for a in answers}) == 1
    assert client.get("/admin/api/messages").json()["total"] == 0


def test_a_pushed_audit_event_is_refused_kept_as_rejected_and_audited(client: TestClient) -> None:
    _setup(client)
    response = client.post("/inbound/default/partner", content=FORGED_AUDIT, headers=_headers(FORGED_AUDIT, "a1"))
    assert response.status_code == 403, response.text
    assert response.json()["status"] == "rejected" and "AuditEvent" in response.json()["error"]
    rejected = client.get("/admin/api/messages", params={"status": "rejected"}).json()["items"]
    assert len(rejected) == 1 and rejected[0]["has_payload"]
    audits = _audits(client)
    assert not any(a.get("agent", [{}])[0].get("altId") == "someone-else" for a in audits)  # nothing forged
    [refusal] = [a for a in audits if a["agent"][0].get("name") == "partner"]
    assert refusal["outcome"] == "4" and refusal["agent"][0]["who"]["identifier"]["value"] == "webhook:partner"


def test_inbound_types_of_the_connector_limit_what_it_writes(client: TestClient) -> None:
    _setup(client, inbound_types=["Observation"])
    response = client.post("/inbound/default/partner", content=PATIENT, headers=_headers(PATIENT, "p1"))
    assert response.status_code == 403 and "inbound_types" in response.json()["error"]
    assert client.get("/fhir/Patient").json()["total"] == 0
    observation = json.dumps({"resourceType": "Observation", "status": "final", "code": {"text": "ROM"}}).encode()
    assert client.post("/inbound/default/partner", content=observation,
                       headers=_headers(observation, "o1")).status_code == 202
    # the hub's own records cannot be configured in
    for types in (["AuditEvent"], ["Provenance"], ["patient"]):
        refused = client.put("/admin/api/connectors/partner", json={
            "name": "partner", "kind": "webhook",
            "config": {"url": "http://127.0.0.1:9/unused", "secret": SECRET, "inbound_types": types}})
        assert refused.status_code == 400 and "inbound_types" in refused.text, refused.text


def test_each_inbound_write_is_audited_with_the_connector_as_agent(client: TestClient) -> None:
    _setup(client)
    assert client.post("/inbound/default/partner", content=PATIENT, headers=_headers(PATIENT, "w1")).status_code == 202
    changed = json.dumps({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "M-9"}],
                          "gender": "female"}).encode()
    assert client.post("/inbound/default/partner", content=changed, headers=_headers(changed, "w2")).status_code == 202
    [patient] = [e["resource"] for e in client.get("/fhir/Patient").json()["entry"]]
    mine = [a for a in _audits(client) if a["agent"][0].get("name") == "partner"]
    assert sorted(a["subtype"][0]["code"] for a in mine) == ["create", "update"]
    for audit in mine:
        assert audit["outcome"] == "0" and audit["entity"][0]["what"]["reference"] == f"Patient/{patient['id']}"
        assert audit["agent"][0]["who"]["identifier"] == {
            "system": "https://therapy-hub.example/sid/connector", "value": "webhook:partner"}
        assert "M-9" not in json.dumps(audit)  # no identifier of the patient in the trail


def test_a_body_that_is_not_json_is_a_400_and_kept(client: TestClient) -> None:
    _setup(client)
    for key, body in (("d1", b"[" * 10_000 + b"]" * 10_000), ("d2", b'{"resourceType": NaN}'),
                      ("d3", "{}".encode("utf-16"))):
        response = client.post("/inbound/default/partner", content=body, headers=_headers(body, key))
        assert response.status_code == 400, (key, response.text)
    assert client.get("/admin/api/messages", params={"status": "rejected"}).json()["total"] == 3


CLAIM_RESPONSE = json.dumps({
    "resourceType": "ClaimResponse", "status": "active", "type": {"text": "professional"}, "use": "claim",
    "patient": {"display": "x"}, "created": "2026-01-01", "insurer": {"display": "payer"}, "outcome": "complete",
    "identifier": [{"system": "urn:payer-icn", "value": "ICN-1"}]}).encode()
ELIGIBILITY = json.dumps({
    "resourceType": "CoverageEligibilityResponse", "status": "active", "purpose": ["benefits"],
    "patient": {"display": "x"}, "created": "2026-01-01", "request": {"display": "r"}, "outcome": "complete",
    "insurer": {"display": "payer"}}).encode()


def test_payer_adjudications_are_not_written_by_a_partner_by_default(client: TestClient) -> None:
    _setup(client)  # no inbound_types: the default
    for key, body in (("cr1", CLAIM_RESPONSE), ("el1", ELIGIBILITY)):
        response = client.post("/inbound/default/partner", content=body, headers=_headers(body, key))
        assert response.status_code == 403 and "inbound_types" in response.json()["error"], response.text
    assert client.get("/fhir/ClaimResponse").json()["total"] == 0
    assert client.get("/fhir/CoverageEligibilityResponse").json()["total"] == 0
    # a connector that names them may write them
    _setup(client, inbound_types=["ClaimResponse", "CoverageEligibilityResponse"])
    for key, body in (("cr2", CLAIM_RESPONSE), ("el2", ELIGIBILITY)):
        response = client.post("/inbound/default/partner", content=body, headers=_headers(body, key))
        assert response.status_code == 202, response.text
    assert client.get("/fhir/ClaimResponse").json()["total"] == 1
    assert client.get("/fhir/CoverageEligibilityResponse").json()["total"] == 1

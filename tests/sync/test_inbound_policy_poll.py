"""Polling writes under the connector's inbound policy and leaves an AuditEvent per write."""

from __future__ import annotations

from fastapi.testclient import TestClient

from hub.settings import Settings
from hub.sync.polling import poll_named
from sandboxes.fhir import SandboxFhirServer


def test_polled_types_outside_inbound_types_are_rejected_and_writes_audited(client: TestClient,
                                                                             settings: Settings) -> None:
    with SandboxFhirServer() as emr:
        emr.seed({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "P-1"}]})
        emr.seed({"resourceType": "Observation", "status": "final", "code": {"text": "ROM"}})
        assert client.put("/admin/api/connectors/emr", json={"name": "emr", "kind": "fhir_rest", "config": {
            "base_url": emr.url, "resource_types": ["Patient", "Observation"],
            "inbound_types": ["Observation"]}}).status_code == 200
        report = poll_named(settings, settings.default_tenant, "emr")
    assert report["ok"] and (report["stored"], report["rejected"]) == (1, 1), report
    assert client.get("/fhir/Patient").json()["total"] == 0
    [observation] = [e["resource"] for e in client.get("/fhir/Observation").json()["entry"]]
    [rejected] = client.get("/admin/api/messages", params={"status": "rejected"}).json()["items"]
    assert "Patient is not accepted" in rejected["error"]
    audits = [e["resource"] for e in client.get("/fhir/AuditEvent").json().get("entry", [])]
    by_poll = {(a["outcome"], a["subtype"][0]["code"]): a for a in audits
               if a["agent"][0]["who"]["identifier"]["value"] == "poll:emr"}
    assert set(by_poll) == {("0", "create"), ("4", "create")}
    assert by_poll["0", "create"]["entity"][0]["what"]["reference"] == f"Observation/{observation['id']}"

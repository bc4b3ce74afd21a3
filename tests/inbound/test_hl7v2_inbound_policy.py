"""HL7 v2 intake under the inbound policy: an AuditEvent per message with the listener as agent, and
the inbound_types of the sender's hl7v2 connector (named like the listener) limit what it writes."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from connectors.hl7v2 import MllpServerThread
from hub.inbound.hl7v2 import handle_hl7v2
from hub.settings import Settings
from mappings.hl7v2 import parse, read_ack
from tests.inbound.test_hl7v2_inbound import SOURCE, listener, messages, ref, search, send  # noqa: F401


def _audits(client: TestClient, source: str = SOURCE) -> list[dict]:
    bundle = client.get("/fhir/AuditEvent", params={"_count": "100"}).json()
    return [e["resource"] for e in bundle.get("entry", [])
            if e["resource"]["agent"][0]["who"]["identifier"]["value"] == f"mllp:{source}"]


def test_a_referral_over_mllp_is_audited_with_the_listener_as_agent(
        listener: MllpServerThread, client: TestClient) -> None:  # noqa: F811
    assert send(listener, ref("AUD0001")).code == "AA"
    [sr] = search(client, "ServiceRequest", identifier="REF-7781")
    [audit] = _audits(client)
    assert audit["outcome"] == "0" and audit["subtype"][0]["code"] == "transaction"
    assert audit["entity"][0]["what"]["reference"] == f"ServiceRequest/{sr['id']}"
    assert audit["agent"][0]["who"]["identifier"]["system"] == "https://therapy-hub.example/sid/connector"
    assert "REF-7781" not in json.dumps(audit)


def test_inbound_types_of_the_senders_connector_are_enforced(client: TestClient, settings: Settings) -> None:
    assert client.put("/admin/api/connectors/legacy-emr", json={
        "name": "legacy-emr", "kind": "hl7v2",
        "config": {"host": "127.0.0.1", "port": 9, "inbound_types": ["Patient"]}}).status_code == 200
    ack = read_ack(parse(handle_hl7v2(settings, "default", ref("AUD0002"), "legacy-emr")))
    assert ack.code == "AE"
    assert search(client, "ServiceRequest") == [] and search(client, "Patient") == []
    [message] = [m for m in messages(settings) if m["status"] == "rejected"]
    assert "not accepted from the mllp" in message["error"]
    [audit] = _audits(client, "legacy-emr")
    assert audit["outcome"] == "4"

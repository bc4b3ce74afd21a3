"""A received document is stored as a DocumentReference tied to its message, once per message."""

from __future__ import annotations

import base64
import hashlib

from fastapi.testclient import TestClient

from hub.documents.inbound import accept_document
from hub.security.inbound import InboundPolicy
from hub.services import fhir_service
from hub.settings import Settings
from hub.sync.inbox import Inbox
from hub.unit_of_work import unit_of_work
from mappings.documents import SENDER_URL, InboundDocument

PDF = b"%PDF-1.4\n% a received fax\n%%EOF\n"


def _receive(settings: Settings, external_id: str, message_id: str | None = None) -> str:
    tenant = settings.default_tenant
    with unit_of_work(settings) as session:
        inbox = Inbox(session, tenant=tenant, settings=settings)
        message = inbox.record_inbound(source="fax-vendor", external_id=message_id or external_id,
                                      raw=b"raw webhook body")
        policy = InboundPolicy(tenant=tenant, source="fax-vendor", channel="fax")
        fhir = fhir_service(session, settings, tenant, "/fhir", policy=policy)
        document = InboundDocument(channel="fax", source="fax-vendor", external_id=external_id, content=PDF,
                                   content_type="application/pdf", sender="+15551230000", recipient="+15559870000")
        stored = accept_document(fhir, inbox, message, document, policy=policy)
        return str(stored["id"])


def test_a_received_document_is_stored_with_its_bytes_and_sender_and_tied_to_its_message(
        client: TestClient, settings: Settings) -> None:
    doc_id = _receive(settings, "fax-1001")
    document = client.get(f"/fhir/DocumentReference/{doc_id}").json()
    attachment = document["content"][0]["attachment"]
    assert base64.b64decode(attachment["data"]) == PDF
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(PDF).digest()).decode()
    assert attachment["size"] == len(PDF) and attachment["contentType"] == "application/pdf"
    [sender] = [e for e in document["extension"] if e["url"] == SENDER_URL]
    assert sender["valueContactPoint"] == {"system": "fax", "value": "+15551230000"}
    [message] = client.get("/admin/api/messages", params={"source": "fax-vendor"}).json()["items"]
    assert message["resource"] == f"DocumentReference/{doc_id}" and message["status"] != "rejected"
    audits = [e["resource"] for e in client.get("/fhir/AuditEvent").json().get("entry", [])]
    assert any(a["agent"][0]["who"]["identifier"]["value"] == "fax:fax-vendor"
               and a["entity"][0]["what"]["reference"] == f"DocumentReference/{doc_id}" for a in audits)


def test_the_same_document_received_again_lands_on_the_same_document_reference(
        client: TestClient, settings: Settings) -> None:
    # the message store refuses a second message with the same partner id (the channel answers it as
    # a repeat); a document the partner sends again under a new message keeps its DocumentReference
    first = _receive(settings, "fax-2002")
    again = _receive(settings, "fax-2002", message_id="fax-2002-resent")
    other = _receive(settings, "fax-2003")
    assert first == again != other
    assert client.get("/fhir/DocumentReference").json()["total"] == 2

"""A referral with a plan of care waiting for the referring physician's certification, and documents
received the way a channel stores them."""

from __future__ import annotations

import io

from fastapi.testclient import TestClient
from reportlab.pdfgen import canvas

from hub.documents.inbound import accept_document
from hub.security.inbound import InboundPolicy
from hub.services import fhir_service
from hub.settings import Settings
from hub.sync.inbox import Inbox
from hub.unit_of_work import unit_of_work
from mappings.documents import InboundDocument
from tests.referrals.test_intake_and_task import referral
from tests.referrals.test_plan_document import PLAN


def certification_page(client: TestClient, number: str = "R-1001") -> tuple[dict, str]:
    """(the plan-of-care answer: care_plan, document, return_code, obligations; the certification Task id)."""
    view = client.post("/referrals", json=referral(number)).json()
    task_id = view["task"].split("/")[1]
    assert client.post(f"/referrals/{task_id}/status", json={"status": "accepted"}).status_code == 200
    response = client.post(f"/referrals/{task_id}/plan-of-care", json=PLAN)
    assert response.status_code == 201, response.text
    plan = response.json()
    certification = next(o for o in plan["obligations"] if o["kind"] == "certification")
    return plan, certification["task"].split("/")[1]


def receive(settings: Settings, content: bytes, external_id: str, channel: str = "fax",
            message_id: str | None = None, sender: str = "+15551230000",
            content_type: str = "application/pdf") -> str:
    """What a channel does: the message and its DocumentReference in one unit of work."""
    tenant = settings.default_tenant
    source = "fax-vendor" if channel == "fax" else "direct-listener"
    with unit_of_work(settings) as session:
        inbox = Inbox(session, tenant=tenant, settings=settings)
        message = inbox.record_inbound(source=source, external_id=message_id or external_id, raw=b"raw body")
        policy = InboundPolicy(tenant=tenant, source=source, channel=channel)
        fhir = fhir_service(session, settings, tenant, "/fhir", policy=policy)
        document = InboundDocument(channel=channel, source=source, external_id=external_id, content=content,
                                   content_type=content_type, sender=sender)
        return str(accept_document(fhir, inbox, message, document, policy=policy)["id"])


def text_pdf(*lines: str) -> bytes:
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer)
    for number, line in enumerate(lines):
        page.drawString(72, 700 - 20 * number, line)
    page.save()
    return buffer.getvalue()

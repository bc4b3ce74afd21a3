"""The admin messages list filters by source: the messages one partner sent, or the FHIR API's."""

from __future__ import annotations

from fastapi.testclient import TestClient

from hub.settings import Settings
from hub.sync.inbox import Inbox
from hub.unit_of_work import unit_of_work
from tests.enqueuers import RecordingEnqueuer

MESSAGES = "/admin/api/messages"


def test_messages_filter_by_source(client: TestClient, settings: Settings) -> None:
    with unit_of_work(settings, enqueuer=RecordingEnqueuer()) as session:
        inbox = Inbox(session, tenant=settings.default_tenant, settings=settings)
        fax = inbox.record_inbound(source="fax-vendor", external_id="fax-1", raw=b"raw webhook body").id
        direct = [inbox.record_inbound(source="clinic-direct", external_id=f"mail-{n}", raw=b"raw mail").id
                  for n in range(2)]

    assert client.get(MESSAGES).json()["total"] == 3
    page = client.get(MESSAGES, params={"source": "fax-vendor"}).json()
    assert page["total"] == 1 and [m["id"] for m in page["items"]] == [fax]
    page = client.get(MESSAGES, params={"source": "clinic-direct"}).json()
    assert page["total"] == 2 and sorted(m["id"] for m in page["items"]) == sorted(direct)
    assert client.get(MESSAGES, params={"source": "fax"}).json()["total"] == 0  # exact, not a prefix
    assert client.get(MESSAGES, params={"source": "x" * 101}).status_code == 400  # longer than any source
    described = client.get("/openapi.json").json()["paths"][MESSAGES]["get"]["parameters"]
    assert any(p["name"] == "source" and "Exact match" in p.get("description", "") for p in described)

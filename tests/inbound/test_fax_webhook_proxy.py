"""Behind a proxy, a fax connector without ``callback_url`` has its webhooks checked against the
hub's public URL (``HUB_BASE_URL`` + path), the URL the vendor signed, not the internal one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from hub.app import create_app
from hub.settings import Settings
from sandboxes.fax import SandboxFaxServer
from tests.connectors.fax.support import CLINIC_FAX, REFERRER_FAX

PUBLIC = "https://hub.clinic.example"
PATH = "/inbound/default/fax/vendor"
SECRET = "vendor-webhook-token-0123"
PDF = b"%PDF-1.4\n% a received fax\n"


@pytest.fixture
def proxied(settings: Settings) -> Iterator[TestClient]:
    """The hub as a proxy reaches it: on an internal host, with its public URL configured."""
    public = settings.model_copy(update={"base_url": PUBLIC})
    with TestClient(create_app(public), base_url="http://10.0.0.7:8000") as client:
        yield client


@pytest.fixture
def vendor() -> Iterator[SandboxFaxServer]:
    with SandboxFaxServer(profile="phaxio", api_key="key-1234", api_secret="secret-5678",
                          webhook_secret=SECRET) as server:
        yield server


def _connector(client: TestClient, vendor: SandboxFaxServer) -> None:
    config = {"profile": "phaxio", "base_url": vendor.url, "api_key": "key-1234", "api_secret": "secret-5678",
              "webhook_secret": SECRET, "sender_fax": CLINIC_FAX, "clinic_name": "Riverside Rehab"}
    response = client.put("/admin/api/connectors/vendor", json={"name": "vendor", "kind": "fax", "config": config})
    assert response.status_code == 200, response.text


def _post(client: TestClient, vendor: SandboxFaxServer, signed_for: str) -> int:
    webhook = vendor.receive_webhook(signed_for, PDF, sender=REFERRER_FAX, recipient=CLINIC_FAX, fax_id="777")
    answer = client.post(PATH, content=webhook.body, headers={"Content-Type": webhook.content_type,
                                                              **webhook.headers})
    return answer.status_code


def test_a_webhook_signed_for_the_public_url_is_taken(proxied: TestClient, vendor: SandboxFaxServer) -> None:
    _connector(proxied, vendor)
    assert _post(proxied, vendor, PUBLIC + PATH) == 202
    assert proxied.get("/fhir/DocumentReference").json()["total"] == 1


def test_a_webhook_signed_for_the_internal_url_is_refused(proxied: TestClient, vendor: SandboxFaxServer) -> None:
    _connector(proxied, vendor)
    assert _post(proxied, vendor, "http://10.0.0.7:8000" + PATH) == 401
    assert proxied.get("/admin/api/messages").json()["total"] == 0

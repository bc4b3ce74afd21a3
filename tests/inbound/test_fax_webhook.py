"""Fax vendor webhooks into the hub, end to end against the fax vendor sandbox (both profiles): a
certification Task is faxed with its cover sheet and awaits the vendor's status, whose callbacks
mark it delivered or send it back to retry and dead letter, received faxes become
DocumentReferences, bad signatures store nothing, and a webhook sent twice is applied once.
(Awaiting confirmation in more detail: tests/inbound/test_awaiting_confirmation.py.)"""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from hub.app import create_app
from hub.settings import Settings
from hub.sync.delivery import deliver
from sandboxes.fax import SandboxFaxServer
from tests.connectors.fax.support import CLINIC_FAX, REFERRER_FAX, RETURN_CODE, pdf_text, plan_pdf, resources

WEBHOOK_SECRET = "vendor-webhook-token-0123"
PATH = "/inbound/default/fax/vendor"


@pytest.fixture
def hub_url(settings: Settings) -> Iterator[str]:
    """The hub on a real port: the sandbox calls back over HTTP."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None,
                                           log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="hub-fax-test", daemon=True)
    thread.start()
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the hub did not start")
            time.sleep(0.02)
        yield root
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(params=["phaxio", "documo"])
def vendor(request: pytest.FixtureRequest) -> Iterator[SandboxFaxServer]:
    with SandboxFaxServer(profile=request.param, api_key="key-1234", api_secret="secret-5678",
                          webhook_secret=WEBHOOK_SECRET) as server:
        yield server


def setup(client: TestClient, vendor: SandboxFaxServer, hub_url: str, **options: Any) -> None:
    config = {"profile": vendor.profile_name, "base_url": vendor.url, "api_key": "key-1234",
              "api_secret": "secret-5678", "webhook_secret": WEBHOOK_SECRET, "sender_fax": CLINIC_FAX,
              "clinic_name": "Riverside Rehab", "callback_url": hub_url + PATH}
    body = {"name": "vendor", "kind": "fax", "config": config, "max_attempts": 2, "timeout_seconds": 5.0,
            "backoff_base_seconds": 0.05, "backoff_max_seconds": 0.1, **options}
    response = client.put("/admin/api/connectors/vendor", json=body)
    assert response.status_code == 200, response.text
    response = client.post("/admin/api/routes", json={"name": "certifications", "resource_type": "Task",
                                                      "connector": "vendor"})
    assert response.status_code == 201, response.text


def store_certification(client: TestClient) -> int:
    """Write the plan's resources and then its certification Task; the id of the Task's delivery job."""
    items = resources(plan_pdf())
    for resource in [*items[1:], items[0]]:
        response = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
        assert response.status_code in (200, 201), response.text
    jobs = client.get("/admin/api/jobs").json()["items"]
    assert len(jobs) == 1
    return int(jobs[0]["id"])


def job(client: TestClient, job_id: int) -> dict[str, Any]:
    return client.get(f"/admin/api/jobs/{job_id}").json()


def events(client: TestClient, message_id: str) -> list[dict[str, Any]]:
    return client.get(f"/admin/api/messages/{message_id}").json()["events"]


def test_a_faxed_certification_is_marked_delivered(client: TestClient, settings: Settings, hub_url: str,
                                                   vendor: SandboxFaxServer) -> None:
    setup(client, vendor, hub_url)
    job_id = store_certification(client)
    deliver(settings, job_id)
    assert vendor.wait_for_sends(1)
    pages = pdf_text(vendor.sent[0].files[0])
    assert f"Return code: {RETURN_CODE}" in pages[0] and RETURN_CODE in pages[1]
    assert vendor.sent[0].to == REFERRER_FAX
    assert vendor.wait_for_callbacks(1) and vendor.callbacks[0][1:] == ("delivered", 202)
    done = job(client, job_id)
    assert done["status"] == "succeeded" and "confirm_by" not in done
    trail = [(e["event"], e["detail"] or "") for e in events(client, done["message_id"]) if e["job_id"] == job_id]
    # sent when the vendor queued it; acknowledged once, when the vendor reported it delivered
    assert [name for name, _ in trail][-2:] == ["sent", "acknowledged"]
    assert "awaiting confirmation within 60 minutes" in trail[-2][1]
    assert f"fax {vendor.sent[0].fax_id} delivered" in trail[-1][1] and "pages" in trail[-1][1]
    assert client.get(f"/admin/api/messages/{done['message_id']}").json()["status"] == "delivered"


def test_a_failed_fax_retries_then_dead_letters(client: TestClient, settings: Settings, hub_url: str,
                                                vendor: SandboxFaxServer) -> None:
    setup(client, vendor, hub_url)
    vendor.configure(fail_numbers=[REFERRER_FAX], fail_code="2004")
    job_id = store_certification(client)
    deliver(settings, job_id)
    assert vendor.wait_for_callbacks(1) and vendor.callbacks[0][1:] == ("failed", 202)
    first = job(client, job_id)
    assert first["status"] == "retrying" and "vendor code 2004" in first["last_error"]
    time.sleep(0.15)  # past the backoff
    deliver(settings, job_id)
    assert vendor.wait_for_sends(2) and vendor.wait_for_callbacks(2)
    dead = job(client, job_id)
    assert dead["status"] == "dead" and dead["attempts"] == 2 and "failed" in dead["last_error"]
    assert [e["event"] for e in events(client, dead["message_id"])].count("dead-lettered") == 1


def test_a_bad_signature_is_refused_and_stores_nothing(client: TestClient, hub_url: str,
                                                        vendor: SandboxFaxServer) -> None:
    setup(client, vendor, hub_url)
    forged = SandboxFaxServer(profile=vendor.profile_name, webhook_secret="not-the-vendor-secret")
    webhook = forged.receive_webhook(hub_url + PATH, plan_pdf(), sender=REFERRER_FAX, recipient=CLINIC_FAX)
    headers = {"Content-Type": webhook.content_type, **webhook.headers}
    with httpx.Client(trust_env=False) as http:
        assert http.post(hub_url + PATH, content=webhook.body, headers=headers).status_code == 401
        assert http.post(hub_url + "/inbound/default/fax/nobody", content=webhook.body,
                         headers=headers).status_code == 401
        assert http.post(hub_url + PATH, content=webhook.body,
                         headers={"Content-Type": webhook.content_type}).status_code == 401
    assert client.get("/admin/api/messages").json()["total"] == 0
    assert client.get("/fhir/DocumentReference").json()["total"] == 0


def test_an_inbound_fax_becomes_a_document_once(client: TestClient, hub_url: str, vendor: SandboxFaxServer) -> None:
    setup(client, vendor, hub_url)
    signed = b"%PDF-1.4\n% the signed plan page\n"
    webhook = vendor.receive_webhook(hub_url + PATH, signed, sender=REFERRER_FAX, recipient=CLINIC_FAX,
                                     fax_id="90001")
    headers = {"Content-Type": webhook.content_type, **webhook.headers}
    with httpx.Client(trust_env=False) as http:
        first = http.post(hub_url + PATH, content=webhook.body, headers=headers)
        again = http.post(hub_url + PATH, content=webhook.body, headers=headers)
    assert first.status_code == 202, first.text
    assert again.status_code == 200 and again.json()["duplicate"] is True
    found = client.get("/fhir/DocumentReference").json()
    assert found["total"] == 1
    document = found["entry"][0]["resource"]
    assert document["id"] == first.json()["document"]
    message = client.get(f"/admin/api/messages/{first.json()['message']}").json()
    assert message["resource"] == f"DocumentReference/{document['id']}"
    assert REFERRER_FAX in str(document.get("extension"))
    assert vendor.inject_inbound(hub_url + PATH, signed, sender=REFERRER_FAX, recipient=CLINIC_FAX) == 202
    assert client.get("/fhir/DocumentReference").json()["total"] == 2


def test_a_status_for_an_unknown_fax_is_kept_and_asked_again(client: TestClient, hub_url: str,
                                                             vendor: SandboxFaxServer) -> None:
    setup(client, vendor, hub_url)
    assert vendor.send_status("123456", "delivered", url=hub_url + PATH) == 409
    assert vendor.send_status("123456", "delivered", url=hub_url + PATH) == 409  # not taken as a duplicate
    rejected = client.get("/admin/api/messages", params={"status": "rejected"}).json()
    assert rejected["total"] == 2


def test_the_same_status_webhook_twice_is_applied_once(client: TestClient, settings: Settings, hub_url: str,
                                                       vendor: SandboxFaxServer) -> None:
    setup(client, vendor, hub_url)
    vendor.configure(auto_callback=False)
    job_id = store_certification(client)
    deliver(settings, job_id)
    fax_id = vendor.sent[0].fax_id
    assert vendor.send_status(fax_id, "failed", vendor_code="2004") == 202
    assert vendor.send_status(fax_id, "failed", vendor_code="2004") == 200  # a duplicate
    retrying = job(client, job_id)
    assert retrying["status"] == "retrying" and retrying["attempts"] == 1
    failures = [e for e in events(client, retrying["message_id"]) if e["event"] == "failed"]
    assert len(failures) == 1


def test_a_signed_body_that_is_no_vendor_webhook_is_kept_as_rejected(client: TestClient, hub_url: str) -> None:
    with SandboxFaxServer(profile="documo", webhook_secret=WEBHOOK_SECRET) as vendor:
        setup(client, vendor, hub_url)
    body = b'{"status": "success"}'
    signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    with httpx.Client(trust_env=False) as http:
        answer = http.post(hub_url + PATH, content=body, headers={"Content-Type": "application/json",
                                                                  "X-Documo-Signature": signature})
    assert answer.status_code == 400 and "messageId" in answer.json()["error"]
    assert client.get("/admin/api/messages", params={"status": "rejected"}).json()["total"] == 1

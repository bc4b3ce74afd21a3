"""The fax connector against the fax vendor sandbox, for both profiles: the cover sheet and the plan
go as one PDF, the vendor's fax id comes back, errors land in the connector error tree."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from connectors import registry
from connectors.base import AuthError, ConfigError, Delivery, PermanentError, TransientError
from connectors.fax import FaxConnector
from connectors.fax.model import FaxStatus, ReceivedFax
from connectors.fax.profiles import PROFILES
from connectors.fax.profiles.base import WebhookRefused
from sandboxes.fax import SandboxFaxServer
from tests.connectors.fax.support import (
    CLINIC_FAX,
    REFERRER_FAX,
    RETURN_CODE,
    TASK_ID,
    bundle,
    pdf_text,
    plan_pdf,
    resources,
)

WEBHOOK_SECRET = "vendor-webhook-token-0123"


@pytest.fixture(params=["phaxio", "documo"])
def vendor(request: pytest.FixtureRequest) -> Iterator[SandboxFaxServer]:
    with SandboxFaxServer(profile=request.param, api_key="key-1234", api_secret="secret-5678",
                          webhook_secret=WEBHOOK_SECRET, auto_callback=False) as server:
        yield server


def connector_for(vendor: SandboxFaxServer, **overrides: Any) -> FaxConnector:
    config = {"profile": vendor.profile_name, "base_url": vendor.url, "api_key": "key-1234",
              "api_secret": "secret-5678", "webhook_secret": WEBHOOK_SECRET, "sender_fax": CLINIC_FAX,
              "clinic_name": "Riverside Rehab", "callback_url": "http://127.0.0.1:9/inbound/default/fax/vendor",
              **overrides}
    return FaxConnector(config, today=lambda: date(2025, 1, 7))


def delivery(payload: bytes, key: str = "job-key-1") -> Delivery:
    return Delivery(payload=payload, content_type="application/fhir+json", idempotency_key=key,
                    correlation_id="c-1", resource_type="Task", resource_id=TASK_ID, event="Task.create")


def test_a_certification_task_is_faxed_with_its_cover_sheet(vendor: SandboxFaxServer) -> None:
    plan = plan_pdf()
    with connector_for(vendor) as connector:
        result = connector.send(delivery(bundle(resources(plan))))
    assert vendor.wait_for_sends(1)
    sent = vendor.sent[0]
    assert result.remote_id == sent.fax_id and sent.to == REFERRER_FAX
    assert len(sent.files) == 1 and sent.files[0].startswith(b"%PDF-")
    pages = pdf_text(sent.files[0])
    assert len(pages) == len(pdf_text(plan)) + 1
    cover = pages[0]
    assert f"Return code: {RETURN_CODE}" in cover and "Riverside Rehab" in cover and CLINIC_FAX in cover
    assert f"{len(pages)} (including this cover)" in cover and "CONFIDENTIALITY NOTICE" in cover
    assert RETURN_CODE in pages[1]  # the plan itself follows the cover
    callback_field = "callback_url" if vendor.profile_name == "phaxio" else "callbackUrl"
    assert sent.fields[callback_field].endswith("/inbound/default/fax/vendor")
    assert result.confirm_within_seconds == 3600  # queued, not delivered: the vendor's status is to follow


def test_status_timeout_minutes_says_how_long_the_vendors_status_may_take(vendor: SandboxFaxServer) -> None:
    with connector_for(vendor, status_timeout_minutes=15) as connector:
        assert connector.send(delivery(bundle(resources(plan_pdf())))).confirm_within_seconds == 900
    with connector_for(vendor, status_timeout_minutes=0) as connector:  # no status webhooks: sent is delivered
        assert connector.send(delivery(bundle(resources(plan_pdf())), key="job-key-2")).confirm_within_seconds is None


def test_the_fax_connector_is_registered() -> None:
    assert registry.get("fax") is FaxConnector
    assert FaxConnector.context == frozenset({"references", "documents"})
    with pytest.raises(ConfigError) as caught:
        registry.validate_config("fax", {"profile": "phaxio", "base_url": "http://127.0.0.1:9", "api_key": "key-1234",
                                         "webhook_secret": "short", "sender_fax": "5035550100", "clinic_name": "C"})
    assert set(caught.value.fields) == {"webhook_secret", "sender_fax"} and "5035550100" not in str(caught.value)


def test_wrong_credentials_are_an_auth_error(vendor: SandboxFaxServer) -> None:
    with connector_for(vendor, api_key="wrong-key") as connector, pytest.raises(AuthError) as caught:
        connector.send(delivery(bundle(resources(plan_pdf()))))
    assert caught.value.status == 401 and not vendor.sent


def test_vendor_outage_is_transient_and_a_rejection_permanent(vendor: SandboxFaxServer) -> None:
    payload = bundle(resources(plan_pdf()))
    with connector_for(vendor) as connector:
        vendor.configure(status_override=503)
        with pytest.raises(TransientError):
            connector.send(delivery(payload))
        vendor.configure(status_override=422)
        with pytest.raises(PermanentError):
            connector.send(delivery(payload))
    with connector_for(vendor, base_url="http://127.0.0.1:9") as connector, pytest.raises(TransientError):
        connector.send(delivery(payload))


def test_what_cannot_be_faxed_is_permanent_and_names_no_phi(vendor: SandboxFaxServer) -> None:
    with connector_for(vendor) as connector:
        with pytest.raises(PermanentError) as caught:
            connector.send(delivery(bundle(resources(plan_pdf(), fax=None))))
        assert "fax number" in str(caught.value) and "Okafor" not in str(caught.value)
        without_plan = [r for r in resources(plan_pdf()) if r["resourceType"] != "DocumentReference"]
        with pytest.raises(PermanentError, match="certification PDF"):
            connector.send(delivery(bundle(without_plan)))
    assert not vendor.sent


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profiles_sign_and_parse_their_own_webhooks(name: str) -> None:
    profile = PROFILES[name]
    url = "https://hub.example/inbound/default/fax/vendor"
    status = FaxStatus(fax_id="70001", state="failed", event_id="e-1", pages=3, reason="lineError",
                       vendor_code="2004")
    webhook = profile.status_webhook(WEBHOOK_SECRET, url, status)
    headers = {"content-type": webhook.content_type, **{k.lower(): v for k, v in webhook.headers.items()}}
    assert profile.verify(WEBHOOK_SECRET, url, webhook.body, headers)
    assert not profile.verify("another-secret-000", url, webhook.body, headers)
    parsed = profile.parse_webhook(webhook.body, headers)
    assert isinstance(parsed, FaxStatus) and parsed.state == "failed" and parsed.vendor_code == "2004"
    assert parsed.fax_id == "70001"
    received = profile.receive_webhook(WEBHOOK_SECRET, url, ReceivedFax(
        fax_id="80001", event_id="e-2", content=b"%PDF-1.4 signed", sender="+15035550147", recipient=CLINIC_FAX))
    headers = {"content-type": received.content_type, **{k.lower(): v for k, v in received.headers.items()}}
    assert profile.verify(WEBHOOK_SECRET, url, received.body, headers)
    tampered = received.body.replace(b"80001", b"80002")
    assert not profile.verify(WEBHOOK_SECRET, url, tampered, headers)
    fax = profile.parse_webhook(received.body, headers)
    assert isinstance(fax, ReceivedFax) and fax.content == b"%PDF-1.4 signed" and fax.sender == "+15035550147"
    with pytest.raises(WebhookRefused):
        profile.parse_webhook(b"{}", {"content-type": "application/json"})


def test_phaxio_signature_covers_the_url() -> None:
    profile = PROFILES["phaxio"]
    status = FaxStatus(fax_id="1", state="delivered", event_id="e", pages=1)
    webhook = profile.status_webhook(WEBHOOK_SECRET, "https://hub.example/a", status)
    headers = {"content-type": webhook.content_type, **{k.lower(): v for k, v in webhook.headers.items()}}
    assert not profile.verify(WEBHOOK_SECRET, "https://hub.example/b", webhook.body, headers)

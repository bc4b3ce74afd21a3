"""Which connectors can address a delivery (the Addresser capability of fallback chains): fax when the
Task's owner has an E.164 fax number, Direct when the owner has a Direct address we hold a
certificate for; other connectors cannot tell."""

from __future__ import annotations

from typing import Any

from connectors import registry
from connectors.base import Delivery, can_address
from connectors.direct import DirectConnector
from connectors.fax import FaxConnector
from sandboxes.direct_ca import TestCA
from sandboxes.hisp import CLINIC_ADDRESS, PHYSICIAN_ADDRESS
from tests.connectors.fax.support import CLINIC_FAX, bundle, plan_pdf, resources


def delivery(payload: bytes) -> Delivery:
    return Delivery(payload=payload, content_type="application/fhir+json", idempotency_key="k-1",
                    correlation_id="c-1", resource_type="Task", resource_id="cert-task-1", event="Task.create")


def with_telecom(*telecom: dict[str, str]) -> bytes:
    items = resources(plan_pdf(), fax=None)
    next(r for r in items if r["resourceType"] == "PractitionerRole")["telecom"] = list(telecom)
    return bundle(items)


def fax_config() -> dict[str, Any]:
    return {"profile": "phaxio", "base_url": "http://127.0.0.1:9", "api_key": "key-1234",
            "webhook_secret": "vendor-webhook-token-0123", "sender_fax": CLINIC_FAX, "clinic_name": "Riverside Rehab"}


def test_fax_needs_an_e164_fax_number_of_the_owner() -> None:
    with FaxConnector(fax_config()) as fax:
        assert fax.can_address(delivery(with_telecom({"system": "fax", "value": "+1 503-555-0147"})))
        assert not fax.can_address(delivery(with_telecom({"system": "phone", "value": "+15035550147"})))
        assert not fax.can_address(delivery(with_telecom({"system": "fax", "value": "555-0147"})))
        assert not fax.can_address(delivery(b"not json"))


def test_direct_needs_an_address_with_a_certificate() -> None:
    ca = TestCA()
    clinic, physician = ca.issue(CLINIC_ADDRESS), ca.issue(PHYSICIAN_ADDRESS)
    config = {"smtp_host": "127.0.0.1", "sender_address": CLINIC_ADDRESS, "sender_cert_pem": clinic.cert_pem,
              "sender_key_pem": clinic.key_pem, "recipient_certs": {PHYSICIAN_ADDRESS: physician.cert_pem}}
    with DirectConnector(config) as direct:
        assert direct.can_address(delivery(with_telecom({"system": "email", "value": PHYSICIAN_ADDRESS.upper()})))
        assert not direct.can_address(delivery(with_telecom({"system": "email", "value": "other@direct.test"})))
        assert not direct.can_address(delivery(with_telecom({"system": "fax", "value": "+15035550147"})))
        assert not direct.can_address(delivery(b"{}"))


def test_other_connectors_cannot_tell() -> None:
    webhook = registry.create("webhook", {"url": "https://emr.example.org/hook",
                                          "secret": "a-shared-secret-of-16-chars"})
    try:
        assert can_address(webhook, delivery(with_telecom())) is None
    finally:
        webhook.close()

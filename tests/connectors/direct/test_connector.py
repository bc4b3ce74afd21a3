"""The Direct connector against the sandbox HISP: STARTTLS + AUTH, signed and encrypted, the XDM read
back by the receiving side; and the errors it translates."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from connectors import registry
from connectors.base import AuthError, ConfigError, Delivery, PermanentError, TransientError
from connectors.direct import DirectConnector
from connectors.direct.plan import plan_parts
from sandboxes.hisp import CLINIC_ADDRESS, PHYSICIAN_ADDRESS, SandboxHisp

PDF = b"%PDF-1.4\n% certification page\n%%EOF\n"
CDA = b"<ClinicalDocument xmlns='urn:hl7-org:v3'/>"


def bundle(*, telecom: list[dict[str, Any]] | None = None, cda: bool = False) -> bytes:
    content = [{"attachment": {"contentType": "application/pdf", "data": base64.b64encode(PDF).decode()}}]
    if cda:
        content.append({"attachment": {"contentType": "application/hl7-cda+xml",
                                       "data": base64.b64encode(CDA).decode()}})
    resources = [
        {"resourceType": "Task", "id": "t1", "status": "requested", "intent": "order",
         "for": {"reference": "Patient/p1"}, "owner": {"reference": "PractitionerRole/r1"},
         "focus": {"reference": "CarePlan/c1"}},
        {"resourceType": "PractitionerRole", "id": "r1", "telecom": telecom if telecom is not None else [
            {"system": "phone", "value": "555-0100"}, {"system": "email", "value": PHYSICIAN_ADDRESS}]},
        {"resourceType": "Patient", "id": "p1",
         "identifier": [{"system": "urn:oid:2.25.99", "value": "MRN-7"}]},
        {"resourceType": "DocumentReference", "id": "d1", "status": "current", "content": content},
    ]
    return json.dumps({"resourceType": "Bundle", "type": "collection",
                       "entry": [{"resource": r} for r in resources]}).encode()


def delivery(payload: bytes, key: str = "job-1") -> Delivery:
    return Delivery(payload=payload, content_type="application/fhir+json", idempotency_key=key,
                    correlation_id="c-1", resource_type="Task", resource_id="t1", event="Task.create")


@pytest.fixture
def hisp() -> Iterator[SandboxHisp]:
    with SandboxHisp() as server:
        yield server


def test_registered_with_its_context() -> None:
    assert registry.get("direct") is DirectConnector
    assert DirectConnector.context == frozenset({"references", "documents"})


def test_sends_signed_encrypted_xdm_that_the_hisp_opens(hisp: SandboxHisp) -> None:
    with DirectConnector(hisp.connector_config()) as connector:
        result = connector.send(delivery(bundle(cda=True)))
        assert connector.health().ok
    [received] = hisp.wait_for(1)
    assert received.refusal is None
    assert received.message_id == result.remote_id and result.remote_id.endswith("@direct.clinic.test>")
    assert received.rcpt_tos == (PHYSICIAN_ADDRESS,) and received.from_address == CLINIC_ADDRESS
    assert [(d.content, d.mime_type, d.hash_matches) for d in received.documents] == [
        (PDF, "application/pdf", True), (CDA, "text/xml", True)]


def test_the_same_delivery_keeps_its_message_id(hisp: SandboxHisp) -> None:
    with DirectConnector(hisp.connector_config()) as connector:
        first = connector.send(delivery(bundle()))
        second = connector.send(delivery(bundle()))
    assert first.remote_id == second.remote_id
    # the HISP only accepted it: the recipient's MDN is awaited for mdn_timeout_minutes (60 by default)
    assert first.confirm_within_seconds == 3600


def test_wrong_password_is_an_auth_error(hisp: SandboxHisp) -> None:
    with DirectConnector(hisp.connector_config(password="not-the-password")) as connector:
        with pytest.raises(AuthError):
            connector.send(delivery(bundle()))
        assert not connector.health().ok
    assert hisp.auth_failures >= 1 and hisp.received == []


def test_untrusted_tls_certificate_is_permanent(hisp: SandboxHisp) -> None:
    with DirectConnector(hisp.connector_config(tls_ca_pem=None)) as connector:
        with pytest.raises(PermanentError) as caught:
            connector.send(delivery(bundle()))
    assert "TLS" in str(caught.value)


def test_hisp_temporary_failure_is_transient(hisp: SandboxHisp) -> None:
    hisp.configure(refuse_all=True)
    with DirectConnector(hisp.connector_config()) as connector, pytest.raises(TransientError) as caught:
        connector.send(delivery(bundle()))
    assert caught.value.status == 451


def test_closed_port_is_transient(hisp: SandboxHisp) -> None:
    config = hisp.connector_config()
    hisp.stop()
    with DirectConnector(config) as connector, pytest.raises(TransientError):
        connector.send(delivery(bundle()))


def test_bundle_problems_are_permanent_and_name_no_phi(hisp: SandboxHisp) -> None:
    with DirectConnector(hisp.connector_config()) as connector:
        with pytest.raises(PermanentError) as caught:
            connector.send(delivery(bundle(telecom=[{"system": "phone", "value": "555-0100"}])))
        assert "Direct address" in str(caught.value)
        with pytest.raises(ConfigError) as unknown:
            connector.send(delivery(bundle(telecom=[{"system": "email", "value": "other@direct.x.test"}])))
        assert "other@" not in str(unknown.value)
    assert hisp.received == []


def test_plan_parts_prefers_work_email() -> None:
    parts = plan_parts(bundle(telecom=[{"system": "email", "value": "home@x.test", "use": "home"},
                                       {"system": "email", "value": "work@x.test", "use": "work"}]))
    assert parts.recipient == "work@x.test" and parts.patient_id == "MRN-7^^^&2.25.99&ISO"

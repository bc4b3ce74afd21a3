"""Asking a payer about a patient's benefits: a ``CoverageEligibilityRequest`` stored and a 270 sent
to the clearinghouse (ADR 0013). The 271 comes back as a response file (polled, or imported by
hand) and becomes a ``CoverageEligibilityResponse`` linked to this request by the trace number.

The 270 is an outbound message delivered by the sync engine through the ``x12_billing`` connector
(event ``x12.270``, idempotency key = its message id): sent after the commit, retried like any
delivery, never twice under two names. Its control numbers come from
:func:`hub.store.billing_repository.allocate_control_numbers` in the same transaction.

Who submits (ISA06/GS02 and 1000A) is read from the clearinghouse connector's config: its
``billing.submitter`` (or ``submitter``) section when it has one, else the provider organization's
name with the connector's name as the submitter id. The provider (2100B) is the one named in the
request, else the billing profile's ``billing.organization``, else the first Organization with an NPI.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from hub.billing.eligibility_apply import entry_resource
from hub.errors import BadRequest, NotFound
from hub.fhir.service import FhirService
from hub.kit import utcnow
from hub.services import fhir_service
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.store.billing_repository import allocate_control_numbers
from hub.store.models import ConnectorInstance
from hub.sync.config import SyncConfig
from hub.sync.outbox import Outbox
from mappings.billing.model import NPI_SYSTEM, ControlNumbers, Submitter
from mappings.fhir import jsonio
from mappings.x12.eligibility import DISCIPLINE_SERVICE_TYPES, InquiryError, inquiry_from_fhir
from mappings.x12.eligibility_fhir import SERVICE_TYPE_SYSTEM, TRACE_SYSTEM
from mappings.x12.envelope import X12WriteError
from mappings.x12.write270 import write_270

__all__ = ["EligibilityRequested", "request_eligibility"]

EVENT = "x12.270"  # x12.*: delivered as an X12 interchange (hub.sync.delivery.content_type_of)
_NAMESPACE = uuid.UUID("3c1f6a52-8e0b-5d47-a2c9-270000000001")


@dataclass(frozen=True, slots=True)
class EligibilityRequested:
    request_id: str  # CoverageEligibilityRequest id
    trace: str  # TRN02 of the 270: the 271 names it
    message_id: str  # the 270's outbound message
    connector: str
    service_types: tuple[str, ...]

    def view(self) -> dict[str, Any]:
        return {"request": f"CoverageEligibilityRequest/{self.request_id}", "trace": self.trace,
                "message_id": self.message_id, "connector": self.connector,
                "service_types": list(self.service_types)}


def _read(fhir: FhirService, reference: str, expected: str) -> dict[str, Any]:
    kind, _, rid = reference.partition("/")
    if kind != expected or not rid:
        raise BadRequest(f"expected a reference {expected}/<id>", expression=expected)
    return dict(jsonio.loads(fhir.read(kind, rid).content or "{}"))


def _service_types(disciplines: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for discipline in disciplines or ("PT",):
        code = DISCIPLINE_SERVICE_TYPES.get(discipline.upper(), discipline.upper())
        if not code.isalnum() or len(code) > 2:
            raise BadRequest("a discipline is PT, OT or SLP (or an X12 service type code)", expression="disciplines")
        if code not in out:
            out.append(code)
    return tuple(out)


def _provider(fhir: FhirService, reference: str | None, payer_id: str) -> dict[str, Any]:
    if reference:
        return _read(fhir, reference, "Organization")
    found = fhir.search("Organization", [("_count", "50")], strict=True)
    for entry in found.get("entry", []):
        org = entry_resource(entry)
        if org.get("id") != payer_id and any(i.get("system") == NPI_SYSTEM for i in org.get("identifier") or []):
            return dict(org)
    raise BadRequest("no provider organization with an NPI: name it (provider)", expression="provider")


def submitter_from(config: Mapping[str, Any], provider: Mapping[str, Any], connector: str) -> Submitter:
    """The 270's submitter: the connector's ``billing.submitter`` / ``submitter`` section, else a default."""
    section = (config.get("billing") or {}).get("submitter") if isinstance(config.get("billing"), dict) else None
    section = section or config.get("submitter")
    if isinstance(section, dict):
        return Submitter.model_validate(section)
    name = str(provider.get("name") or "Therapy clinic")
    etin = "".join(ch for ch in connector.upper() if ch.isalnum())[:15] or "THERAPYHUB"
    return Submitter(name=name, etin=etin, contact_name="Billing office", contact_phone="0000000000",
                     receiver_name="Clearinghouse", receiver_id="CLEARINGHOUSE", usage="T")


def _clearinghouse(session: Session, tenant: str, name: str | None) -> ConnectorInstance:
    """The connector ``name``, else the tenant's first enabled ``x12_billing`` connector."""
    if name is not None:
        instance = repo.connector_by_name(session, tenant=tenant, name=name)
        if instance is None or instance.kind != "x12_billing":
            raise NotFound(f"No clearinghouse (x12_billing) connector named {name!r}")
        return instance
    for instance in repo.list_connectors(session, tenant=tenant):
        if instance.kind == "x12_billing" and instance.enabled:
            return instance
    raise NotFound("No clearinghouse (x12_billing) connector is configured")


def request_eligibility(session: Session, settings: Settings, *, tenant: str, coverage: str,
                        disciplines: Sequence[str] = ("PT",), provider: str | None = None,
                        connector: str | None = None, now: datetime | None = None) -> EligibilityRequested:
    """Store the request and queue its 270 to the clearinghouse (in the caller's transaction)."""
    when = now or utcnow()
    fhir = fhir_service(session, settings, tenant, settings.fhir_base or "/fhir", lambda: when)
    cov = _read(fhir, coverage, "Coverage")
    patient_ref = (cov.get("beneficiary") or {}).get("reference") or ""
    patient = _read(fhir, patient_ref, "Patient")
    payor_ref = next((p.get("reference") for p in cov.get("payor") or [] if p.get("reference")), None)
    if not payor_ref:
        raise BadRequest("the Coverage names no payer Organization", expression="Coverage.payor")
    payer = _read(fhir, payor_ref, "Organization")
    subscriber_ref = (cov.get("subscriber") or {}).get("reference")
    subscriber = _read(fhir, subscriber_ref, subscriber_ref.split("/")[0]) if subscriber_ref else None
    instance = _clearinghouse(session, tenant, connector)
    name = instance.name
    config = SyncConfig(session, tenant=tenant, settings=settings).connector_config(instance)
    billing = config.get("billing") if isinstance(config.get("billing"), dict) else {}
    # the billing provider of the connector's billing profile, unless the caller names another
    provider_org = _provider(fhir, provider or billing.get("organization"), str(payer.get("id")))
    submitter = submitter_from(config, provider_org, name)
    numbers = allocate_control_numbers(session, tenant=tenant, sender=f"{submitter.isa_qualifier}:{submitter.etin}",
                                       now=when)
    trace = f"EL{numbers.isa13}"
    types = _service_types(disciplines)
    try:
        inquiry = inquiry_from_fhir(cov, patient, provider_org, payer, service_types=types, on=when.date(),
                                    trace=trace, subscriber=subscriber)
        text = write_270([inquiry], submitter, ControlNumbers(interchange=numbers.interchange, group=numbers.group,
                                                              transaction=numbers.transactions[0]), created=when)
    except (InquiryError, X12WriteError) as exc:
        raise BadRequest(f"no eligibility inquiry can be made: {exc}", expression="coverage") from None
    request_id = str(uuid.uuid5(_NAMESPACE, f"{tenant}|{trace}"))
    fhir.update("CoverageEligibilityRequest", request_id, {
        "resourceType": "CoverageEligibilityRequest", "id": request_id, "status": "active",
        "identifier": [{"system": TRACE_SYSTEM, "value": trace}], "purpose": ["benefits"],
        "patient": {"reference": patient_ref}, "created": when.date().isoformat(),
        "provider": {"reference": f"Organization/{provider_org['id']}"}, "insurer": {"reference": payor_ref},
        "insurance": [{"focal": True, "coverage": {"reference": coverage}}],
        "item": [{"category": {"coding": [{"system": SERVICE_TYPE_SYSTEM, "code": code}]}} for code in types],
    })
    message = Outbox(session, tenant=tenant, settings=settings, clock=lambda: when).send_raw(
        connector=name, raw=text, event=EVENT, kind="x12_billing")
    return EligibilityRequested(request_id, trace, message.id, name, types)

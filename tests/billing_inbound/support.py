"""Claims the hub has sent, made directly: a FHIR ``Claim`` (with its Patient, Coverage and payer)
through the FHIR store, a ``billing_claims`` row ``submitted`` with the control numbers of its 837P
file, and the file itself (``write_837p``), ready to go to the sandbox clearinghouse."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from hub.billing.eligibility_apply import entry_resource
from hub.services import fhir_service
from hub.settings import Settings
from hub.store.models import BillingClaim
from hub.store.repository import ensure_tenant
from hub.sync.inbox import Inbox
from hub.unit_of_work import unit_of_work
from mappings.billing.codes import LINE_CONTROL_EXTENSION
from mappings.billing.model import (
    LINE_CONTROL_SYSTEM,
    PATIENT_CONTROL_SYSTEM,
    ControlNumbers,
    ProfessionalClaim,
    ServiceLine,
)
from mappings.x12.write837 import write_837p
from tests.mappings.x12.claims_support import CLINIC, JONES, MEDICARE, MONDAY, PT, REFERRER, submitter

TENANT = "default"
NOW = datetime(2026, 3, 10, 9, 30)
MEMBER_SYSTEM = "https://therapy-hub.example/sid/member-id"


def claim(pcn: str, *lines: tuple[str, str], day: date = MONDAY) -> ProfessionalClaim:
    """A PT claim of Robert Jones to Medicare, one line per (CPT, charge)."""
    return ProfessionalClaim(
        patient_control_number=pcn, billing_provider=CLINIC, rendering_provider=PT, referring_provider=REFERRER,
        subscriber=JONES, payer=MEDICARE, diagnoses=("M5450",), discipline="PT",
        lines=tuple(ServiceLine(line_number=n, control_number=f"{pcn}-{n}", code=code, modifiers=("GP",),
                                charge=Decimal(charge), units=Decimal("1"), minutes=15, service_date=day,
                                diagnosis_pointers=(1,))
                    for n, (code, charge) in enumerate(lines, start=1)),
    )


def ensure(settings: Settings) -> None:
    with unit_of_work(settings) as session:
        ensure_tenant(session, tenant_id=TENANT, name=TENANT, now=NOW)


def _fhir_claim(pc: ProfessionalClaim, claim_id: str, patient: str, coverage: str) -> dict[str, Any]:
    return {
        "resourceType": "Claim", "id": claim_id, "status": "active",
        "identifier": [{"system": PATIENT_CONTROL_SYSTEM, "value": pc.patient_control_number}],
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "claim", "patient": {"reference": f"Patient/{patient}"}, "created": "2026-03-02",
        "insurer": {"reference": "Organization/payer-00952"}, "provider": {"display": "Riverside Rehab Clinic"},
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority",
                                 "code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": f"Coverage/{coverage}"}}],
        "item": [{"sequence": line.line_number,
                  "extension": [{"url": LINE_CONTROL_EXTENSION,
                                 "valueIdentifier": {"system": LINE_CONTROL_SYSTEM, "value": line.control_number}}],
                  "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": line.code}]},
                  "unitPrice": {"value": line.charge, "currency": "USD"},
                  "net": {"value": line.charge, "currency": "USD"}}
                 for line in pc.lines],
    }


def patient_and_coverage(settings: Settings, *, patient: str = "pat-jones", coverage: str = "cov-jones") -> None:
    ensure(settings)
    with unit_of_work(settings) as session:
        fhir = fhir_service(session, settings, TENANT, "/fhir")
        fhir.update("Organization", "payer-00952", {
            "resourceType": "Organization", "id": "payer-00952", "name": "Medicare Part B",
            "identifier": [{"system": "https://therapy-hub.example/sid/payer-id", "value": "00952"}]})
        fhir.update("Organization", "clinic", {
            "resourceType": "Organization", "id": "clinic", "name": "Riverside Rehab Clinic",
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": CLINIC.npi}]})
        fhir.update("Patient", patient, {
            "resourceType": "Patient", "id": patient, "name": [{"family": "Jones", "given": ["Robert"]}],
            "birthDate": "1950-03-14", "gender": "male",
            "address": [{"use": "home", "line": ["12 Elm Street"], "city": "Springfield", "state": "IL",
                         "postalCode": "62704"}]})
        fhir.update("Coverage", coverage, {
            "resourceType": "Coverage", "id": coverage, "status": "active",
            "identifier": [{"system": MEMBER_SYSTEM, "value": JONES.member_id}],
            "subscriberId": JONES.member_id, "beneficiary": {"reference": f"Patient/{patient}"},
            "relationship": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                                         "code": "self"}]},
            "payor": [{"reference": "Organization/payer-00952"}]})


@dataclass(frozen=True)
class Sent:
    file: bytes
    control: ControlNumbers
    claim_ids: tuple[str, ...]


def sent_file(settings: Settings, claims: Sequence[ProfessionalClaim], number: int, *,
              connector_id: int | None = None, submitted_at: datetime = NOW, group: int | None = None,
              record_file: bool = False) -> Sent:
    """Claims recorded as submitted in one 837P file with control numbers ``number`` (GS06 ``group``);
    the file (kept as the claims' outbound file message with ``record_file``)."""
    patient_and_coverage(settings)
    control = ControlNumbers(interchange=number, group=group or number, transaction=number)
    text = write_837p(list(claims), submitter(), control, created=NOW)
    ids: list[str] = []
    with unit_of_work(settings) as session:
        file_message = (Inbox(session, tenant=TENANT, settings=settings).record_outbound(
            event="x12.837P", raw=text, reply_to=None, at=submitted_at).id if record_file else None)
        fhir = fhir_service(session, settings, TENANT, "/fhir")
        for pc in claims:
            claim_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"claim|{pc.patient_control_number}"))
            fhir.update("Claim", claim_id, _fhir_claim(pc, claim_id, "pat-jones", "cov-jones"))
            first = min(line.service_date for line in pc.lines)
            session.add(BillingClaim(
                tenant_id=TENANT, claim_id=claim_id, patient_control_number=pc.patient_control_number,
                patient_id="pat-jones", discipline="PT", payer_id=pc.payer.payer_id, connector_id=connector_id,
                status="submitted", frequency_code="1", charge_cents=int(pc.total_charge * 100),
                service_from=datetime.combine(first, datetime.min.time()),
                service_to=datetime.combine(first, datetime.min.time()), file_message_id=file_message,
                interchange_control=number, transaction_control=number, created_at=submitted_at,
                updated_at=submitted_at, submitted_at=submitted_at))
            ids.append(claim_id)
    return Sent(text.encode(), control, tuple(ids))


def billing_claim(settings: Settings, pcn: str) -> BillingClaim:
    with unit_of_work(settings, readonly=True) as session:
        row = session.scalars(select(BillingClaim).where(BillingClaim.patient_control_number == pcn)).one()
        session.expunge(row)
        return row


def resource(settings: Settings, resource_type: str, resource_id: str) -> dict[str, Any]:
    from mappings.fhir import jsonio

    with unit_of_work(settings, readonly=True) as session:
        stored = fhir_service(session, settings, TENANT, "/fhir").read(resource_type, resource_id)
        return dict(jsonio.loads(stored.content or "{}"))


def search(settings: Settings, resource_type: str, items: list[tuple[str, str]]) -> list[dict[str, Any]]:
    with unit_of_work(settings, readonly=True) as session:
        bundle = fhir_service(session, settings, TENANT, "/fhir").search(resource_type, items, strict=True)
    return [entry_resource(e) for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"]


def envelope(sets: Sequence[tuple[str, list[str]]], *, functional: str = "HP", version: str = "005010X221A1",
             control: int = 900) -> bytes:
    """An X12 file of transaction sets (ST01, body segments): ST, SE and the envelope counted right."""
    isa = ("ISA*00*          *00*          *ZZ*CLEARHOUSE01   *ZZ*RRB000123      *260310*0930*^*00501*"
           f"{control:09d}*0*T*:")
    segments = [isa, f"GS*{functional}*CLEARHOUSE01*RRB000123*20260310*0930*{control}*X*{version}"]
    for n, (kind, body) in enumerate(sets, start=1):
        st = f"{n:04d}"
        segments += [f"ST*{kind}*{st}*{version}", *body, f"SE*{len(body) + 2}*{st}"]
    segments += [f"GE*{len(sets)}*{control}", f"IEA*1*{control:09d}"]
    return ("~".join(segments) + "~").encode()


def remit_body(*claims: list[str], total: str, trace: str = "EFT0001", plb: list[str] | None = None,
               day: str = "20260320") -> list[str]:
    """An 835 body: BPR/TRN/payer/payee, one LX per claim (its CLP and what follows), then PLB."""
    head = [f"BPR*I*{total}*C*ACH*CCP*01*011000015*DA*0001234567*1999999999**01*021000021*DA*0007654321*{day}",
            f"TRN*1*{trace}*1999999999", "N1*PR*Medicare Part B*XV*00952", "N1*PE*Riverside Rehab Clinic*XX*1234567893"]
    body: list[str] = []
    for n, segments in enumerate(claims, start=1):
        body += [f"LX*{n}", *segments]
    return head + body + (plb or [])

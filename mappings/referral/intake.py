"""A referral as the referring physician's office knows it -> a FHIR R4 transaction Bundle.

The friendly ``POST /referrals`` body (:class:`ReferralIn`) becomes Patient, PractitionerRole (+
Practitioner, with NPI), Condition (ICD-10), Coverage, DocumentReferences for attachments and the
referral ServiceRequest (category PT/OT/SLP). Ids are uuid5 over type + identifier system + value,
and every entry is a PUT to that id: sending the same referral again updates, never duplicates.
Pure: ``now`` is passed in.

Scopes: the caller (``hub.referrals.service``) may ask for ids that also depend on a scope, when the
plain id is taken by a record the sender may not change: ``referral_scope`` (the referral number is
another requester's: ServiceRequest, Condition and DocumentReferences get ids of the sender's own),
``patient_scope`` (the MRN names a patient outside the sender's compartment with other demographics)
and ``coverage_scope`` (the member id is another patient's coverage). Without scopes the ids are
the plain ones, which the HL7 v2 mapping shares.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mappings.fhir.ids import deterministic_id

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
HUB_PATIENT_SYSTEM = "https://therapy-hub.example/sid/patient"

#: SNOMED CT procedures used as ServiceRequest.category for the three disciplines
DISCIPLINES: dict[str, tuple[str, str]] = {
    "PT": ("91251008", "Physical therapy procedure"),
    "OT": ("84478008", "Occupational therapy"),
    "SLP": ("5154007", "Speech therapy"),
}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IdentifierIn(_In):
    system: str = Field(min_length=1, max_length=255)
    value: str = Field(min_length=1, max_length=255)


class PatientIn(_In):
    identifier: IdentifierIn
    family: str = Field(min_length=1, max_length=200)
    given: list[str] = Field(default_factory=list)
    birth_date: date
    gender: Literal["male", "female", "other", "unknown"] = "unknown"
    phone: str | None = None


class ReferrerIn(_In):
    npi: str = Field(pattern=r"^\d{10}$")
    family: str = Field(min_length=1, max_length=200)
    given: list[str] = Field(default_factory=list)
    organization: str | None = Field(default=None, description="Referring practice name")
    direct_address: str | None = Field(default=None, description="Direct Secure Messaging address")
    fax: str | None = None


class ReasonIn(_In):
    icd10: str = Field(pattern=r"^[A-TV-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")
    display: str = Field(min_length=1, max_length=300)


class CoverageIn(_In):
    payer: str = Field(min_length=1, max_length=200)
    member_id: str = Field(min_length=1, max_length=100)
    payer_id: str | None = None


class AttachmentIn(_In):
    title: str = Field(min_length=1, max_length=200)
    content_type: str = Field(default="application/pdf")
    data: str = Field(description="base64", pattern=r"^[A-Za-z0-9+/\s]*={0,2}\s*$")

    @field_validator("data")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode("".join(value.split()), validate=True)
        except ValueError:  # binascii.Error: bad padding or characters
            raise ValueError("data must be base64") from None
        return value


class ReferralIn(_In):
    """What a referring physician's office sends to ``POST /referrals``."""

    identifier: IdentifierIn = Field(description="The referral number in the referrer's system")
    discipline: Literal["PT", "OT", "SLP"]
    patient: PatientIn
    referrer: ReferrerIn
    reason: ReasonIn
    coverage: CoverageIn | None = None
    priority: Literal["routine", "urgent", "asap", "stat"] = "routine"
    note: str | None = Field(default=None, max_length=4000)
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=20)


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": f"urn:uuid:{resource['id']}",
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
    }


def build_referral_bundle(
    referral: ReferralIn,
    *,
    clinic_ref: str,
    now: datetime,
    referral_scope: str | None = None,
    patient_scope: str | None = None,
    coverage_scope: str | None = None,
) -> dict[str, Any]:
    """The transaction Bundle for ``referral``, addressed to the clinic ``clinic_ref`` (Organization/x);
    the scopes (see the module docstring) change the ids of the resources they name, nothing else."""
    ref_key = f"{referral.identifier.system}|{referral.identifier.value}"
    if referral_scope:
        ref_key += f"|{referral_scope}"
    p = referral.patient
    patient_id = deterministic_id("Patient", p.identifier.system, p.identifier.value, patient_scope)
    practitioner_id = deterministic_id("Practitioner", NPI_SYSTEM, referral.referrer.npi)
    role_id = deterministic_id("PractitionerRole", NPI_SYSTEM, referral.referrer.npi)
    sr_id = deterministic_id("ServiceRequest", referral.identifier.system, referral.identifier.value, referral_scope)
    condition_id = deterministic_id("Condition", ref_key, referral.reason.icd10)

    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [{"system": p.identifier.system, "value": p.identifier.value}],
        "name": [{"family": p.family, **({"given": p.given} if p.given else {})}],
        "gender": p.gender,
        "birthDate": p.birth_date.isoformat(),
    }
    if p.phone:
        patient["telecom"] = [{"system": "phone", "value": p.phone}]
    r = referral.referrer
    practitioner = {
        "resourceType": "Practitioner",
        "id": practitioner_id,
        "identifier": [{"system": NPI_SYSTEM, "value": r.npi}],
        "name": [{"family": r.family, **({"given": r.given} if r.given else {}), "prefix": ["Dr."]}],
    }
    telecom = []
    if r.direct_address:
        telecom.append({"system": "email", "value": r.direct_address, "use": "work"})
    if r.fax:
        telecom.append({"system": "fax", "value": r.fax, "use": "work"})
    role: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": role_id,
        "identifier": [{"system": NPI_SYSTEM, "value": r.npi}],
        "active": True,
        "practitioner": {"reference": f"Practitioner/{practitioner_id}"},
        "code": [{"text": "Referring physician"}],
    }
    if telecom:
        role["telecom"] = telecom
    if r.organization:
        role["practitioner"]["display"] = f"{' '.join(r.given)} {r.family}".strip()
        role["code"] = [{"text": f"Referring physician, {r.organization}"}]
    condition = {
        "resourceType": "Condition",
        "id": condition_id,
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "code": {"coding": [{"system": ICD10_SYSTEM, "code": referral.reason.icd10,
                             "display": referral.reason.display}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "recordedDate": now.date().isoformat(),
    }
    entries = [_entry(patient), _entry(practitioner), _entry(role), _entry(condition)]
    insurance = []
    if referral.coverage:
        c = referral.coverage
        coverage_id = deterministic_id("Coverage", c.payer_id or c.payer, c.member_id, coverage_scope)
        entries.append(_entry({
            "resourceType": "Coverage",
            "id": coverage_id,
            "identifier": [{"system": f"urn:payer:{c.payer_id or c.payer}", "value": c.member_id}],
            "status": "active",
            "beneficiary": {"reference": f"Patient/{patient_id}"},
            "payor": [{"display": c.payer, **({"identifier": {"value": c.payer_id}} if c.payer_id else {})}],
            "subscriberId": c.member_id,
        }))
        insurance.append({"reference": f"Coverage/{coverage_id}"})
    supporting = []
    for index, attachment in enumerate(referral.attachments):
        raw = base64.b64decode("".join(attachment.data.split()), validate=True)
        doc_id = deterministic_id("DocumentReference", ref_key, str(index))
        entries.append(_entry({
            "resourceType": "DocumentReference",
            "id": doc_id,
            "status": "current",
            "subject": {"reference": f"Patient/{patient_id}"},
            "date": now.isoformat(timespec="seconds") + "Z",
            "description": attachment.title,
            "content": [{"attachment": {
                "contentType": attachment.content_type, "data": attachment.data, "title": attachment.title,
                "size": len(raw), "hash": base64.b64encode(hashlib.sha1(raw).digest()).decode(),  # noqa: S324 (FHIR hash is SHA-1)
            }}],
        }))
        supporting.append({"reference": f"DocumentReference/{doc_id}"})
    code, display = DISCIPLINES[referral.discipline]
    service_request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": sr_id,
        "identifier": [{"system": referral.identifier.system, "value": referral.identifier.value}],
        "status": "active",
        "intent": "order",
        "priority": referral.priority,
        "category": [{"coding": [{"system": SNOMED, "code": code, "display": display}], "text": referral.discipline}],
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": now.isoformat(timespec="seconds") + "Z",
        "requester": {"reference": f"PractitionerRole/{role_id}"},
        "performer": [{"reference": clinic_ref}],
        "reasonReference": [{"reference": f"Condition/{condition_id}"}],
    }
    if insurance:
        service_request["insurance"] = insurance
    if supporting:
        service_request["supportingInfo"] = supporting
    if referral.note:
        service_request["note"] = [{"text": referral.note}]
    entries.append(_entry(service_request))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def referral_category(service_request: dict[str, Any]) -> str | None:
    """PT, OT or SLP when ``service_request`` is a therapy referral, else None."""
    by_code = {code: name for name, (code, _) in DISCIPLINES.items()}
    for category in service_request.get("category") or []:
        for coding in category.get("coding") or []:
            if coding.get("system") == SNOMED and coding.get("code") in by_code:
                return by_code[coding["code"]]
        if category.get("text") in DISCIPLINES:
            return str(category["text"])
    return None

"""Inbound HL7 v2.5.1 -> FHIR R4 transaction Bundles (pure: ``now`` and the clinic are passed in).

* ``REF^I12`` (referral) and ``OMG^O19`` (360X referral order, one ServiceRequest per ORC/OBR group)
  -> Patient, Practitioner + PractitionerRole (the referring provider, NPI), Condition(s) (ICD-10),
  Coverage, DocumentReference(s) (OBX ED attachments) and the ServiceRequest, built by
  :func:`mappings.referral.intake.build_referral_bundle`: the same resources and the same uuid5 ids as
  a referral posted to ``/referrals``, so a re-sent message (or the same referral by another route)
  updates instead of duplicating. The hub opens the referral Task when the ServiceRequest is created.
* ``ADT^A04`` / ``A08`` / ``A31`` -> one Patient, PUT to the id derived from its first identifier.

Field map (REF^I12; OMG^O19 in brackets):

=====================================  ========================================================
RF1-6 originating referral id (EI)     ServiceRequest.identifier [ORC-2 placer order number]
RF1-3 referral type                    ServiceRequest.category PT/OT/SLP via ``tables.DISCIPLINE_IN``
                                       [OBR-4 universal service id]
RF1-2 priority                         ServiceRequest.priority [TQ1-9]
RF1-7 effective date, else MSH-7       ServiceRequest.authoredOn [ORC-9, else MSH-7]
PRD (role RP, else the first)          Practitioner/PractitionerRole: PRD-2 name, PRD-7 NPI (PLN type
                                       NPI), PRD-5 fax / Direct e-mail, PRD-4.4 organisation
                                       [ORC-12 ordering provider XCN, ORC-14 call-back, ORC-21; else
                                       OBR-16; else a v2.7+ PRT with PRT-4 OP or RP: PRT-5 XCN,
                                       PRT-15 telecom, PRT-8 organisation]
PID-3/5/7/8/11/13/14                   Patient identifier/name/birthDate/gender/address/telecom
DG1-3 (ICD-10-CM)                      Condition(s), ServiceRequest.reasonReference [DG1, OBR-31]
IN1-3/4/36 (IN1-49)                    Coverage payor id/name, subscriberId
OBX (value type ED)                    DocumentReference (OBX-3.2 title, ED type/subtype -> MIME)
NTE (not under OBR/OBX)                ServiceRequest.note [NTE under MSH or in the order group, also
                                       after its DG1, not under OBX]

Segments out of place, repeated or unknown to the v2.5.1 structure are kept and read where they
stand (see :mod:`~mappings.hl7v2.structures`); :attr:`Translation.warnings` lists them.
=====================================  ========================================================

This module checks a message and assembles its Bundle; the referrals are read by
:mod:`~mappings.hl7v2.referral_messages` (field by field in :mod:`~mappings.hl7v2.referral_fields`),
the PID of every message family by :mod:`~mappings.hl7v2.patient`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mappings.fhir.ids import deterministic_id
from mappings.hl7v2.ack import Header, check_supported, read_header
from mappings.hl7v2.errors import UNSUPPORTED_MESSAGE_TYPE, Hl7Error, at
from mappings.hl7v2.patient import default_namespace, patient_resource
from mappings.hl7v2.referral_messages import InboundReferral, referrals_of
from mappings.hl7v2.structures import DEFAULT_STRUCTURE, check_structure
from mappings.hl7v2.syntax import V2Message, parse
from mappings.referral.intake import ICD10_SYSTEM, build_referral_bundle

__all__ = ["Translation", "structure_warnings", "to_fhir", "translate"]


@dataclass(frozen=True, slots=True)
class Translation:
    """What a message became: its header, the transaction Bundle and the main resource written."""

    header: Header
    bundle: dict[str, Any] = field(repr=False)
    kind: str  # "referral" | "patient"
    primary: list[str]  # e.g. ["ServiceRequest/<id>"]
    #: what was kept although out of place (severity W, for the ACK's ERR segments)
    warnings: list[Hl7Error] = field(default_factory=list)


def translate(
    raw: bytes | str | V2Message, *, clinic_ref: str, now: datetime, line_endings: str = "normalise"
) -> Translation:
    """Parse, check (header, version, structure, required fields, tables) and translate one message.

    ``now`` (naive UTC) dates the referral when the message carries no date; ``clinic_ref`` is the
    clinic Organization that receives referrals. Raises :class:`Hl7Error`.
    """
    message = raw if isinstance(raw, V2Message) else parse(raw, line_endings=line_endings)
    header = read_header(message)
    check_supported(header)
    return to_fhir(message, header, clinic_ref=clinic_ref, now=now)


def structure_warnings(message: V2Message, header: Header) -> list[Hl7Error]:
    """The liberal structure check of a message the hub takes (see :mod:`~mappings.hl7v2.structures`):
    its warnings (severity W); raises Hl7Error 100 only when a required segment is absent."""
    structure = DEFAULT_STRUCTURE.get(header.message_type)
    if structure is None:
        raise Hl7Error(UNSUPPORTED_MESSAGE_TYPE, "unsupported message type", at("MSH", 1, 9, 1, 1), ack="AR")
    return check_structure(structure, message.names)


def to_fhir(message: V2Message, header: Header, *, clinic_ref: str, now: datetime) -> Translation:
    warnings = structure_warnings(message, header)
    if header.message_code in ("REF", "OMG"):
        referrals = referrals_of(message, header, now=now)
        bundle = _merge([_referral_bundle(r, clinic_ref=clinic_ref) for r in referrals])
        primary = [f"ServiceRequest/{r.service_request_id}" for r in referrals]
        return Translation(header, bundle, "referral", primary, warnings)
    if header.message_code != "ADT":  # RRI/OSU are status updates: read_status_update, not resources
        raise Hl7Error(
            UNSUPPORTED_MESSAGE_TYPE,
            f"{header.message_type} is a status update (read it with read_status_update)",
            at("MSH", 1, 9, 1, 1),
            ack="AR",
        )
    pid = message.first("PID")
    assert pid is not None  # the structure requires it
    patient = patient_resource(pid, default_namespace(header))
    entry = {
        "fullUrl": f"urn:uuid:{patient['id']}",
        "resource": patient,
        "request": {"method": "PUT", "url": f"Patient/{patient['id']}"},
    }
    return Translation(
        header,
        {"resourceType": "Bundle", "type": "transaction", "entry": [entry]},
        "patient",
        [f"Patient/{patient['id']}"],
        warnings,
    )


# --------------------------------------------------------------------------------------- bundles


def _referral_bundle(referral: InboundReferral, *, clinic_ref: str) -> dict[str, Any]:
    bundle = build_referral_bundle(referral.model, clinic_ref=clinic_ref, now=referral.when)
    entries = bundle["entry"]
    by_type = {e["resource"]["resourceType"]: e["resource"] for e in entries}
    # the PID says more than the intake model holds (every identifier, name, phone, the address)
    patient = dict(referral.patient)
    by_type["Patient"].clear()
    by_type["Patient"].update(patient)
    service_request = by_type["ServiceRequest"]
    ref_key = f"{referral.model.identifier.system}|{referral.model.identifier.value}"
    subject = {"reference": f"Patient/{patient['id']}"}
    template = by_type["Condition"]
    for code, display in referral.extra_reasons:
        condition = {
            **template,
            "id": deterministic_id("Condition", ref_key, code),
            "code": {"coding": [{"system": ICD10_SYSTEM, "code": code, "display": display}]},
            "subject": subject,
        }
        entries.insert(
            -1,
            {
                "fullUrl": f"urn:uuid:{condition['id']}",
                "resource": condition,
                "request": {"method": "PUT", "url": f"Condition/{condition['id']}"},
            },
        )
        service_request["reasonReference"].append({"reference": f"Condition/{condition['id']}"})
    if referral.notes:
        service_request["note"] = [{"text": text} for text in referral.notes]
    if referral.status != "active":
        service_request["status"] = referral.status
    return bundle


def _merge(bundles: list[dict[str, Any]]) -> dict[str, Any]:
    if len(bundles) == 1:
        return bundles[0]
    seen: set[str] = set()
    entries = []
    for bundle in bundles:
        for entry in bundle["entry"]:
            if entry["fullUrl"] not in seen:
                seen.add(entry["fullUrl"])
                entries.append(entry)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

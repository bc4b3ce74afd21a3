"""The patient of an inbound HL7 v2 message: PID -> FHIR Patient, and whose identifiers those are.

Shared by every inbound message family: the ADT^A04/A08/A31 Patient and the patient of a referral
(REF^I12, OMG^O19) are read alike, with the same uuid5 id as the intake mapping gives.
"""

from __future__ import annotations

from typing import Any

from mappings.fhir.ids import deterministic_id
from mappings.hl7v2 import tables
from mappings.hl7v2.ack import Header
from mappings.hl7v2.datatypes import fhir_date, read_cx, read_xad, read_xpn, read_xtn
from mappings.hl7v2.errors import REQUIRED_FIELD_MISSING, TABLE_VALUE_NOT_FOUND, Hl7Error
from mappings.hl7v2.syntax import V2Segment

__all__ = ["default_namespace", "patient_resource"]


def default_namespace(header: Header) -> str:
    """Whose identifiers those are when a CX/EI names no assigning authority: the sending facility."""
    return header.sending_facility or header.sending_application



def patient_resource(pid: V2Segment, namespace: str) -> dict[str, Any]:
    """The Patient of a PID; its id is uuid5 over its first identifier (as in the intake mapping)."""
    identifiers: list[dict[str, str]] = []
    for rep in pid.repetitions(3):
        system, value, type_code = read_cx(pid, 3, rep, namespace)
        if not value or type_code.upper() in tables.DROPPED_IDENTIFIER_TYPES:
            continue
        if not system:
            raise Hl7Error(REQUIRED_FIELD_MISSING, "PID-3 needs an assigning authority", pid.loc(3, rep, 4))
        identifiers.append({"system": system, "value": value})
    if not identifiers:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "PID-3 (patient identifier) is required", pid.loc(3))
    names = []
    for rep in pid.repetitions(5):
        family, given, prefix = read_xpn(pid, 5, rep)
        name: dict[str, Any] = {}
        if family:
            name["family"] = family
        if given:
            name["given"] = given
        if prefix:
            name["prefix"] = prefix
        if name:
            names.append(name)
    if not names or "family" not in names[0]:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "PID-5 (patient family name) is required", pid.loc(5, 1, 1))
    sex = pid.get(8).upper()
    gender = tables.SEX_IN.get(sex) if sex else "unknown"
    if gender is None:
        raise Hl7Error(
            TABLE_VALUE_NOT_FOUND, "PID-8 is not a known administrative sex (table 0001)", pid.loc(8)
        )
    first = identifiers[0]
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": deterministic_id("Patient", first["system"], first["value"]),
        "identifier": identifiers,
        "name": names,
        "gender": gender,
    }
    birth = fhir_date(pid, 7)
    if birth:
        patient["birthDate"] = birth
    telecom = []
    for n in (13, 14):
        for rep in pid.repetitions(n):
            point = read_xtn(pid, n, rep)
            if point is not None:
                if n == 14 and point["system"] != "email" and "use" not in point:
                    point["use"] = "work"
                telecom.append(point)
    if telecom:
        patient["telecom"] = telecom
    addresses = [a for a in (read_xad(pid, 11, rep) for rep in pid.repetitions(11)) if a]
    if addresses:
        patient["address"] = addresses
    return patient

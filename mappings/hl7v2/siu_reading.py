"""HL7 v2.5.1 SIU (S12, S13, S14, S15, S26) -> FHIR R4 Appointment: :func:`read_appointment`, the inverse
of :func:`mappings.hl7v2.scheduling.appointment_to_siu` (the field map and what does not come back are
in that module). Pure.
"""

from __future__ import annotations

import re
from datetime import UTC, timedelta, timezone
from typing import Any

from mappings.hl7v2 import tables
from mappings.hl7v2.ack import read_header
from mappings.hl7v2.datatypes import parse_dtm, read_cx, read_ei
from mappings.hl7v2.errors import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    Hl7Error,
    at,
)
from mappings.hl7v2.scheduling import V3_PARTICIPATION_TYPE
from mappings.hl7v2.segments import FHIR_ID_NAMESPACE
from mappings.hl7v2.structures import check_structure
from mappings.hl7v2.syntax import V2Message, V2Segment, parse
from mappings.referral.intake import NPI_SYSTEM

__all__ = ["read_appointment"]

_OFFSET = re.compile(r"([+-])(\d{2})(\d{2})$")
_FRACTION = re.compile(r"\.(\d{1,4})")


def _read_instant(seg: V2Segment, n: int, rep: int = 1, comp: int = 1) -> str | None:
    """A FHIR instant of a DTM, in the DTM's own offset (``Z`` for +0000; no offset: taken as UTC)."""
    text = seg.get(n, rep, comp)
    if not text:
        return None
    try:
        value, digits, _ = parse_dtm(text)
    except ValueError:
        raise Hl7Error(DATA_TYPE_ERROR, "invalid date/time", seg.loc(n, rep, comp)) from None
    if digits < 8:
        raise Hl7Error(DATA_TYPE_ERROR, "the date/time needs year, month and day", seg.loc(n, rep, comp))
    match = _OFFSET.search(text)
    zone = UTC
    if match:
        sign = -1 if match.group(1) == "-" else 1
        zone = timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))
    local = value.replace(tzinfo=UTC).astimezone(zone)
    out = local.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = _FRACTION.search(text)
    if fraction:
        out += f".{fraction.group(1)}"
    if local.utcoffset() == timedelta(0):
        return out + "Z"
    offset = local.strftime("%z")
    return f"{out}{offset[:3]}:{offset[3:]}"


def _read_concept(seg: V2Segment, n: int) -> dict[str, Any] | None:
    code, display, name = seg.get(n, 1, 1), seg.get(n, 1, 2), seg.get(n, 1, 3)
    if not code:
        return {"text": display} if display else None
    coding: dict[str, str] = {}
    system = tables.CODING_SYSTEM_IN.get(name.upper())
    if system:
        coding["system"] = system
    coding["code"] = code
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def read_appointment(raw: bytes | str | V2Message) -> dict[str, Any]:
    """The FHIR R4 Appointment an SIU (S12, S13, S14, S15, S26) describes (the inverse of
    :func:`appointment_to_siu`). Raises :class:`~mappings.hl7v2.errors.Hl7Error`."""
    message = raw if isinstance(raw, V2Message) else parse(raw)
    header = read_header(message)
    if header.message_code != "SIU" or header.trigger_event not in tables.SIU_EVENTS:
        raise Hl7Error(TABLE_VALUE_NOT_FOUND, "not an SIU^S12/S13/S14/S15/S26", at("MSH", 1, 9))
    check_structure("SIU_S12", message.names, strict=True)
    namespace = header.sending_facility or header.sending_application
    sch = message.first("SCH")
    assert sch is not None  # the structure requires it
    appointment: dict[str, Any] = {"resourceType": "Appointment"}
    if sch.get(2, 1, 2) == FHIR_ID_NAMESPACE and sch.get(2):
        appointment["id"] = sch.get(2)
    system, value = read_ei(sch, 1, namespace)
    if value:
        appointment["identifier"] = [{"system": system, "value": value} if system else {"value": value}]
    if "id" not in appointment and "identifier" not in appointment:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "SCH-1 or SCH-2 (appointment id) is required", sch.loc(1))
    appointment["status"] = _read_status(sch, header.trigger_event)

    for n, key in ((6, "reasonCode"), (8, "serviceType")):
        if n == 6 and sch.get(6, 1, 3) == "HL70003":
            continue  # the trigger event written when the Appointment has no reason
        concept = _read_concept(sch, n)
        if concept is not None:
            appointment[key] = [concept]
    appointment_type = _read_concept(sch, 7)
    if appointment_type is not None:
        appointment["appointmentType"] = appointment_type

    tq1 = message.first("TQ1")
    start = _read_instant(tq1, 7) if tq1 is not None else None
    end = _read_instant(tq1, 8) if tq1 is not None else None
    ais = message.first("AIS")
    if start is None and ais is not None:
        start = _read_instant(ais, 4)
    if start:
        appointment["start"] = start
    if end:
        appointment["end"] = end
    if sch.get(9):
        try:
            appointment["minutesDuration"] = int(sch.get(9))
        except ValueError:
            raise Hl7Error(DATA_TYPE_ERROR, "SCH-9 is not a number of minutes", sch.loc(9)) from None

    by_code = {code: key for key, (code, _, _) in tables.APPOINTMENT_NOTE_TYPES.items()}
    for nte in _sch_notes(message):
        key = by_code.get(nte.get(4).upper(), "comment")
        text = nte.get(3)
        if not text:
            continue
        if key == "cancelationReason":
            appointment[key] = {"text": text}
        elif key in appointment:
            appointment[key] += "\n" + text
        else:
            appointment[key] = text

    order_system, order_value = read_ei(sch, 26, namespace)
    based_on: dict[str, Any] = {}
    if sch.get(27, 1, 2) == FHIR_ID_NAMESPACE and sch.get(27):
        based_on["reference"] = f"ServiceRequest/{sch.get(27)}"
    if order_value:
        based_on["type"] = "ServiceRequest"
        based_on["identifier"] = (
            {"system": order_system, "value": order_value} if order_system else {"value": order_value}
        )
    if based_on:
        appointment["basedOn"] = [based_on]

    participants: list[dict[str, Any]] = []
    pid = message.first("PID")
    if pid is not None:
        actor = _patient_actor(pid, namespace)
        if actor is not None:
            participants.append({"actor": actor, "status": "accepted"})
    for aip in message.all("AIP"):
        participants.append(_practitioner_participant(aip))
    for ail in message.all("AIL"):
        participants.append(_location_participant(ail))
    appointment["participant"] = participants
    return appointment


def _read_status(sch: V2Segment, event: str) -> str:
    if sch.get(25, 1, 6) == tables.APPOINTMENT_STATUS_V2_SYSTEM and sch.get(25, 1, 4):
        return sch.get(25, 1, 4)
    code = sch.get(25)
    if not code:
        return {"S15": "cancelled", "S26": "noshow"}.get(event, "booked")
    status = tables.APPOINTMENT_STATUS_IN.get(code.upper())
    if status is None:
        raise Hl7Error(TABLE_VALUE_NOT_FOUND, "SCH-25 is not a known filler status (table 0278)", sch.loc(25))
    return status


def _sch_notes(message: V2Message) -> list[V2Segment]:
    """The NTE segments right after SCH / TQ1 (not those under AIS, AIL, AIP)."""
    notes = []
    for segment in message.segments[1:]:
        if segment.name in ("SCH", "TQ1") or segment.name.startswith("Z"):
            continue
        if segment.name != "NTE":
            break
        notes.append(segment)
    return notes


def _patient_actor(pid: V2Segment, namespace: str) -> dict[str, Any] | None:
    for rep in pid.repetitions(3):
        if pid.get(3, rep, 4) == FHIR_ID_NAMESPACE and pid.get(3, rep, 1):
            return {"reference": f"Patient/{pid.get(3, rep, 1)}"}
    for rep in pid.repetitions(3):
        system, value, _ = read_cx(pid, 3, rep, namespace)
        if value and system:
            return {"type": "Patient", "identifier": {"system": system, "value": value}}
    return None


def _read_participant_status(seg: V2Segment, n: int) -> str:
    if seg.get(n, 1, 6) == tables.PARTICIPANT_STATUS_V2_SYSTEM and seg.get(n, 1, 4):
        return seg.get(n, 1, 4)
    return "accepted"


def _practitioner_participant(aip: V2Segment) -> dict[str, Any]:
    participant: dict[str, Any] = {}
    if aip.get(4, 1, 3) == tables.PARTICIPATION_TYPE_V2_SYSTEM and aip.get(4):
        coding = {"system": V3_PARTICIPATION_TYPE, "code": aip.get(4)}
        if aip.get(4, 1, 2):
            coding["display"] = aip.get(4, 1, 2)
        participant["type"] = [{"coding": [coding]}]
    actor: dict[str, Any] = {}
    for rep in aip.repetitions(3):
        value = aip.get(3, rep, 1)
        if aip.get(3, rep, 9) == FHIR_ID_NAMESPACE and "/" in value:
            actor["reference"] = value
        elif aip.get(3, rep, 9).upper() == "NPI" and value:
            actor.setdefault("type", "Practitioner")
            actor["identifier"] = {"system": NPI_SYSTEM, "value": value}
    if "reference" in actor:
        actor.pop("type", None)
    if not actor:
        family, given = aip.get(3, 1, 2), aip.get(3, 1, 3)
        actor["display"] = " ".join(x for x in (given, family) if x) or "Unidentified practitioner"
    participant["actor"] = actor
    participant["status"] = _read_participant_status(aip, 12)
    return participant


def _location_participant(ail: V2Segment) -> dict[str, Any]:
    actor: dict[str, Any] = {}
    location_id, name = ail.get(3, 1, 10, 1), ail.get(3)
    if ail.get(3, 1, 10, 2) == FHIR_ID_NAMESPACE and location_id:
        actor["reference"] = f"Location/{location_id}"
    if name and name != location_id:
        actor["display"] = name
    if not actor:
        actor["display"] = "Unidentified location"
    return {"actor": actor, "status": _read_participant_status(ail, 12)}

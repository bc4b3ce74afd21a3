"""FHIR R4 Appointment <-> HL7 v2.5.1 SIU (chapter 10, structure ``SIU_S12``); pure: ``now`` and the
control id are passed in.

:func:`appointment_to_siu` takes an Appointment alone or a Bundle whose first entry is the Appointment,
followed by the resources it references (Patient, Practitioner, PractitionerRole, Location,
ServiceRequest): those give PID names and identifiers, AIP NPIs, AIL location names and the placer
order number. :func:`~mappings.hl7v2.siu_reading.read_appointment` is the inverse: FHIR -> SIU -> FHIR
keeps every mapped field.

Trigger event (``previous`` is the Appointment as last sent, or None when it was never sent):

=================================================  ==============================================
Appointment.status                                 event
=================================================  ==============================================
proposed, pending, waitlist                        none: :class:`UntranslatableResource` (nothing
                                                   is booked yet)
booked, arrived, checked-in, fulfilled             S12 new booking when ``previous`` is None or was
                                                   not booked; S13 rescheduling when start, end or
                                                   minutesDuration changed; else S14 modification
cancelled, entered-in-error                        S15 cancellation
noshow                                             S26 no-show
=================================================  ==============================================

A cancellation or no-show of an Appointment whose ``previous`` version was never booked is refused
too: the partner never heard of it.

Field map (MSH-9 is ``SIU^<event>^SIU_S12`` for every event):

=====================================  ========================================================
SCH-1 placer appointment id (EI)       Appointment.identifier[0]
SCH-2 filler appointment id (EI)       Appointment.id ^ :data:`FHIR_ID_NAMESPACE`
SCH-6 event reason (CE)                reasonCode[0]: coding[0] code^display^system (table 0396
                                       names in ``tables.CODING_SYSTEM_OUT``, else L), or the text
                                       alone; without one the trigger event (table 0003), which
                                       the reader skips
SCH-7 appointment reason (CE)          appointmentType (v2-0276 codes as HL70276: ROUTINE,
                                       FOLLOWUP, CHECKUP, EMERGENCY, WALKIN)
SCH-8 appointment type (CE)            serviceType[0]; without one the discipline (PT/OT/SLP, SNOMED
                                       CT via ``tables.DISCIPLINE_OUT``) of the therapy
                                       ServiceRequest the Appointment is basedOn, when in the payload
SCH-9 / SCH-10 duration, units         minutesDuration ^ ``min``
SCH-11 timing quantity                 empty: TQ1 carries the time
TQ1-1 / TQ1-7 / TQ1-8                  ``1`` / start / end (DTM with the instant's own UTC offset)
SCH-25 filler status (CE)              table 0278 code (``tables.APPOINTMENT_STATUS_OUT``) ^ text ^
                                       HL70278 ^ exact status ^ status ^ HL7FHIRAS
SCH-26 placer order number (EI)        the basedOn ServiceRequest's identifier[0] (in the payload)
SCH-27 filler order number (EI)        the basedOn ServiceRequest's id ^ :data:`FHIR_ID_NAMESPACE`
NTE under SCH (NTE-4 table 0364)       description (DE), patientInstruction (PI), comment (RE),
                                       cancelationReason text (1R)
PID                                    the Patient participant (PID-3 = its logical id with
                                       :data:`FHIR_ID_NAMESPACE` when the Patient is not in the
                                       payload); then ``PV1|1|O`` (outpatient)
RGS-1 / RGS-2                          ``1`` / segment action code A (S12), else U
AIS-3 / 4 / 7 / 8 / 10                 serviceType[0] (or the discipline) / start / minutesDuration
                                       (or end - start) / ``min`` / the 0278 code
AIL (one per Location participant)     AIL-3 PL: point of care = Location.name (else the actor's
                                       display, else the id), PL-10 = id & THFHIR; AIL-6 start;
                                       AIL-12 0278 code ^ code ^ HL70278 ^ exact participant.status
                                       ^ status ^ HL7FHIRPS
AIP (one per Practitioner /            AIP-3 XCN: NPI^family^given^middle^^prefix^^^NPI (when the
PractitionerRole participant)          NPI is known) ~ ``Type/id``^...^THFHIR; AIP-4 participant
                                       .type v3-ParticipationType code (PPRF, SPRF, ATND...) ^
                                       display ^ HL7V3PT, else AT^Attending^HL70443; AIP-6 start;
                                       AIP-12 as AIL-12
=====================================  ========================================================

What does not come back: the Patient participant's status and type (the reader says
``accepted``), participants other than Patient, Practitioner, PractitionerRole and Location, codings
after the first and a text beside a coding (CE carries one), and elements not in the table. A
Patient given in the payload comes back as an identifier reference (PID-3 carries its business
identifiers), an NPI-only practitioner likewise. A partner's DTM without an offset is read as UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mappings.hl7v2 import tables
from mappings.hl7v2.datatypes import ei, naive_utc
from mappings.hl7v2.segments import (
    FHIR_ID_NAMESPACE,
    Context,
    OutboundHeader,
    UntranslatableResource,
    msh,
    npi_of,
    person_name,
    pid,
)
from mappings.hl7v2.syntax import Reps, Writer
from mappings.referral.intake import referral_category

__all__ = ["BOOKED_STATUSES", "V3_PARTICIPATION_TYPE", "appointment_to_siu", "siu_event"]

#: statuses of an Appointment that holds a slot (sent as S12 / S13 / S14)
BOOKED_STATUSES = frozenset({"booked", "arrived", "checked-in", "fulfilled"})
_NOT_BOOKED = frozenset({"proposed", "pending", "waitlist"})
_ENDED = {"cancelled": "S15", "entered-in-error": "S15", "noshow": "S26"}
V3_PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_PRACTITIONER_TYPES = ("Practitioner", "PractitionerRole")


# ------------------------------------------------------------------------------------- helpers


def _parse_instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _dtm(value: Any) -> str:
    """DTM of a FHIR instant/dateTime keeping its own UTC offset (``20240501093000-0400``)."""
    parsed = _parse_instant(value)
    if parsed is None:
        return ""
    if len(str(value)) <= 10:  # a date
        return parsed.strftime("%Y%m%d")
    text = parsed.strftime("%Y%m%d%H%M%S")
    if parsed.microsecond:
        fraction = f"{parsed.microsecond:06d}"[:4].rstrip("0")
        text += f".{fraction}" if fraction else ""
    offset = parsed.utcoffset()
    if offset is not None:
        minutes = int(offset.total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        text += f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return text



def _ce(concept: Any) -> list[str] | str:
    """CE of a CodeableConcept: its first coding (code^display^table 0396 name) or its text."""
    if not isinstance(concept, dict):
        return ""
    coding = next((c for c in concept.get("coding") or [] if isinstance(c, dict) and c.get("code")), None)
    if coding is None:
        return ["", str(concept["text"])] if concept.get("text") else ""
    system = str(coding.get("system") or "")
    name = tables.CODING_SYSTEM_OUT.get(system, "L") if system else ""
    return [str(coding["code"]), str(coding.get("display") or ""), name]



def _concept_text(concept: Any) -> str:
    """The text of a CodeableConcept, else its first coding's display, else that code."""
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and (coding.get("display") or coding.get("code")):
            return str(coding.get("display") or coding["code"])
    return ""


def _first_identifier(resource: dict[str, Any] | None) -> dict[str, Any] | None:
    return next((i for i in (resource or {}).get("identifier") or [] if i.get("value")), None)


def _logical(context: Context, reference: Any, types: tuple[str, ...]) -> tuple[str, str] | None:
    """(resource type, id) of a reference to one of ``types``: the resource in the payload, else the
    ``Type/id`` tail of the reference."""
    resource = context.get(reference)
    if resource is not None:
        if resource.get("resourceType") in types and resource.get("id"):
            return str(resource["resourceType"]), str(resource["id"])
        return None
    text = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(text, str):
        return None
    parts = text.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] in types and parts[-1]:
        return parts[-2], parts[-1]
    return None


def _actor_type(context: Context, participant: dict[str, Any]) -> str | None:
    actor = participant.get("actor")
    resource = context.get(actor)
    if resource is not None:
        return str(resource.get("resourceType") or "") or None
    if isinstance(actor, dict):
        text = actor.get("reference")
        if isinstance(text, str) and "/" in text:
            return text.rstrip("/").split("/")[-2]
        if isinstance(actor.get("type"), str):
            return str(actor["type"])
    return None


def _times_changed(appointment: dict[str, Any], previous: dict[str, Any]) -> bool:
    for key in ("start", "end"):
        now, before = appointment.get(key), previous.get(key)
        now_at, before_at = _parse_instant(now), _parse_instant(before)
        if now_at is not None and before_at is not None and now_at.tzinfo and before_at.tzinfo:
            if now_at != before_at:
                return True
        elif now != before:
            return True
    return appointment.get("minutesDuration") != previous.get("minutesDuration")


def _focus(payload: dict[str, Any]) -> dict[str, Any] | None:
    return Context(payload).focus if payload.get("resourceType") == "Bundle" else payload


def siu_event(appointment: dict[str, Any], previous: dict[str, Any] | None = None) -> str:
    """The SIU trigger event for ``appointment`` given the version last sent (see the module table)."""
    status = appointment.get("status")
    before = previous.get("status") if previous is not None else None
    if status in _NOT_BOOKED:
        raise UntranslatableResource("an Appointment that is not booked is not sent as SIU")
    if status in _ENDED:
        if before in _NOT_BOOKED:
            raise UntranslatableResource("an Appointment that was never booked is not sent as SIU")
        return _ENDED[status]
    if status not in BOOKED_STATUSES:
        raise UntranslatableResource("Appointment.status is missing or unknown")
    if previous is None or before not in BOOKED_STATUSES:
        return "S12"
    return "S13" if _times_changed(appointment, previous) else "S14"


# ---------------------------------------------------------------------------------------- SIU


def appointment_to_siu(
    payload: dict[str, Any],
    *,
    header: OutboundHeader,
    control_id: str,
    now: datetime,
    previous: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """(trigger event, SIU message) of an Appointment (alone or first in a Bundle with what it
    references). ``previous``: the Appointment as last sent (a resource or such a Bundle), or None."""
    context = Context(payload)
    appointment = context.focus
    if appointment is None or appointment.get("resourceType") != "Appointment":
        raise UntranslatableResource("the payload is not an Appointment (or a Bundle that starts with one)")
    event = siu_event(appointment, _focus(previous) if previous is not None else None)
    status = str(appointment["status"])
    if not appointment.get("id") and not _first_identifier(appointment):
        raise UntranslatableResource("Appointment.id or Appointment.identifier is required for SIU")
    start, end = appointment.get("start"), appointment.get("end")
    if not start and event != "S15":
        raise UntranslatableResource("Appointment.start is required for SIU")
    filler_code = tables.APPOINTMENT_STATUS_OUT[status]
    filler_status = [filler_code, filler_code, "HL70278"]
    action = "A" if event == "S12" else "U"
    minutes = appointment.get("minutesDuration")

    service_request = None
    order: tuple[str, str] | None = None
    for reference in appointment.get("basedOn") or []:
        order = _logical(context, reference, ("ServiceRequest",))
        if order is not None:
            service_request = context.get(reference)
            break
    discipline = referral_category(service_request) if service_request else None
    service = _ce((appointment.get("serviceType") or [None])[0])
    if not service and discipline:
        service = list(tables.DISCIPLINE_OUT[discipline])

    writer = Writer(header.separators)
    msh(writer, header, ["SIU", event, "SIU_S12"], control_id, naive_utc(now))
    identifier = _first_identifier(appointment)
    reason = _ce((appointment.get("reasonCode") or [None])[0])
    placer_order = _first_identifier(service_request)
    writer.segment(
        "SCH",
        ei(str(identifier["value"]), identifier.get("system")) if identifier else "",
        [str(appointment["id"]), FHIR_ID_NAMESPACE] if appointment.get("id") else "",
        "",
        "",
        "",
        reason or [event, tables.SIU_EVENTS[event], "HL70003"],
        _ce(appointment.get("appointmentType")),
        service,
        str(minutes) if minutes is not None else "",
        ["min"] if minutes is not None else "",
        *([""] * 14),
        [*filler_status, status, status, tables.APPOINTMENT_STATUS_V2_SYSTEM],
        ei(str(placer_order["value"]), placer_order.get("system")) if placer_order else "",
        [order[1], FHIR_ID_NAMESPACE] if order else "",
    )
    if start or end:
        writer.segment("TQ1", "1", "", "", "", "", "", _dtm(start), _dtm(end))
    notes = [
        (key, appointment.get(key))
        for key in ("description", "patientInstruction", "comment")
        if appointment.get(key)
    ]
    cancel_text = _concept_text(appointment.get("cancelationReason"))
    if cancel_text:
        notes.append(("cancelationReason", cancel_text))
    for index, (key, note) in enumerate(notes, start=1):
        writer.segment(
            "NTE",
            str(index),
            "L",
            Reps([str(note)], formatted=True),
            list(tables.APPOINTMENT_NOTE_TYPES[key]),
        )

    participants = [p for p in appointment.get("participant") or [] if isinstance(p, dict)]
    patient_part = next((p for p in participants if _actor_type(context, p) == "Patient"), None)
    if patient_part is not None:
        pid(writer, context.get(patient_part.get("actor")), patient_part.get("actor"))
        writer.segment("PV1", "1", "O")

    start_dtm = _dtm(start)
    duration = minutes
    begin, finish = _parse_instant(start), _parse_instant(end)
    if duration is None and begin and finish and begin.tzinfo and finish.tzinfo and finish > begin:
        duration = int((finish - begin).total_seconds() // 60)
    writer.segment("RGS", "1", action)
    if service:
        writer.segment(
            "AIS",
            "1",
            action,
            service,
            start_dtm,
            "",
            "",
            str(duration) if duration is not None else "",
            ["min"] if duration is not None else "",
            "",
            filler_status,
        )
    locations = [p for p in participants if _actor_type(context, p) == "Location"]
    for index, participant in enumerate(locations, start=1):
        place = _logical(context, participant.get("actor"), ("Location",))
        resource = context.get(participant.get("actor"))
        actor = participant.get("actor") or {}
        name = (resource or {}).get("name") or actor.get("display") or (place[1] if place else "")
        pl: list[Any] = [str(name)]
        if place:
            pl += [""] * 8 + [[place[1], FHIR_ID_NAMESPACE]]
        writer.segment(
            "AIL",
            str(index),
            action,
            pl,
            "",
            "",
            start_dtm,
            *([""] * 5),
            _participant_status(filler_status, participant),
        )
    people = [p for p in participants if _actor_type(context, p) in _PRACTITIONER_TYPES]
    for index, participant in enumerate(people, start=1):
        writer.segment(
            "AIP",
            str(index),
            action,
            _xcn(context, participant.get("actor")),
            _role(participant),
            "",
            start_dtm,
            *([""] * 5),
            _participant_status(filler_status, participant),
        )
    return event, writer.text()


def _participant_status(filler_status: list[str], participant: dict[str, Any]) -> list[str]:
    status = participant.get("status")
    if not status:
        return filler_status
    return [*filler_status, str(status), str(status), tables.PARTICIPANT_STATUS_V2_SYSTEM]


def _xcn(context: Context, actor: Any) -> Reps | str:
    resource = context.get(actor)
    if resource is not None and resource.get("resourceType") == "PractitionerRole":
        role, practitioner = resource, context.get(resource.get("practitioner"))
    else:
        role, practitioner = None, resource
    npi = npi_of(role, practitioner)
    family, given, prefix = person_name(practitioner)
    name = [family, given[0] if given else "", " ".join(given[1:]), "", prefix, "", ""]
    logical = _logical(context, actor, _PRACTITIONER_TYPES)
    reps: list[Any] = []
    if npi:
        reps.append([npi, *name, ["NPI"]])
    if logical:
        fhir_name = ["", "", "", "", "", "", ""] if npi else name
        reps.append([f"{logical[0]}/{logical[1]}", *fhir_name, [FHIR_ID_NAMESPACE]])
    if not reps and family:
        reps.append(["", *name])
    return Reps(reps) if reps else ""


def _role(participant: dict[str, Any]) -> list[str]:
    for concept in participant.get("type") or []:
        for coding in (concept or {}).get("coding") or []:
            if coding.get("system") == V3_PARTICIPATION_TYPE and coding.get("code"):
                return [
                    str(coding["code"]),
                    str(coding.get("display") or ""),
                    tables.PARTICIPATION_TYPE_V2_SYSTEM,
                ]
    return list(tables.DEFAULT_AIP_ROLE)

"""FHIR R4 -> outbound HL7 v2.5.1 (pure: ``now`` and the control id are passed in).

* :func:`referral_to_ref_i12`: a referral (a Bundle with the ServiceRequest and the resources it
  references, as :func:`mappings.referral.intake.build_referral_bundle` makes or a search with
  ``_include`` returns) -> ``REF^I12``; the inverse of the inbound REF mapping, field for field.
* :func:`task_to_rri_i12` / :func:`task_to_osu_o51`: the referral ``Task`` (alone, or in a Bundle with
  the Patient, ServiceRequest, PractitionerRole/Practitioner and Organization it references) ->
  ``RRI^I12`` (RF1-1 referral status) or the 360X ``OSU^O51`` (ORC-5 order status).
  The exact ``Task.status`` travels as the alternate coding of RF1-1 / in ORC-25, the BSeR business
  status beside it, the status reason in an NTE (RRI) or ORC-16 (OSU); :func:`read_status_update`
  reads them back.

A Task alone names its patient only by reference: PID-3 then carries the FHIR logical id with the
assigning authority :data:`FHIR_ID_NAMESPACE` (type PI). Send a Bundle to give the partner names and
identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mappings.hl7v2 import tables
from mappings.hl7v2.ack import read_header
from mappings.hl7v2.datatypes import (
    ei,
    read_ei,
    v2_dtm,
    xpn,
    xtn,
)
from mappings.hl7v2.errors import (
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE_ERROR,
    TABLE_VALUE_NOT_FOUND,
    Hl7Error,
    at,
)
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
from mappings.hl7v2.structures import check_structure
from mappings.hl7v2.syntax import Reps, V2Message, Writer, parse
from mappings.referral.intake import ICD10_SYSTEM, referral_category

__all__ = [
    "StatusUpdate",
    "read_status_update",
    "referral_to_ref_i12",
    "task_to_osu_o51",
    "task_to_rri_i12",
]

BSER_SYSTEM_V2 = "BSER"
BSER_BUSINESS_STATUS_SYSTEM = "http://hl7.org/fhir/us/bser/CodeSystem/TaskBusinessStatusCS"


# ---------------------------------------------------------------------------------------- REF^I12


def referral_to_ref_i12(
    payload: dict[str, Any], *, header: OutboundHeader, control_id: str, now: datetime
) -> str:
    """REF^I12 of a referral Bundle (ServiceRequest + the resources it references)."""
    context = Context(payload)
    focus = context.focus
    if payload.get("type") == "collection" and focus is not None and focus.get("resourceType") == "ServiceRequest":
        # a delivery about one ServiceRequest: that one, and only when it is a referral order (a
        # plan of care activity, intent "plan", is not a new referral)
        requests = [focus] if referral_category(focus) and focus.get("intent") == "order" else []
    else:
        requests = [r for r in context.of_type("ServiceRequest") if referral_category(r)]
    if not requests:
        raise UntranslatableResource("the payload has no therapy referral ServiceRequest")
    sr = requests[0]
    discipline = referral_category(sr) or ""
    identifiers = sr.get("identifier") or []
    if not identifiers or not identifiers[0].get("value"):
        raise UntranslatableResource("ServiceRequest.identifier is required for REF^I12")
    writer = Writer(header.separators)
    msh(writer, header, ["REF", "I12", "REF_I12"], control_id, now)
    code, text, system = tables.DISCIPLINE_OUT[discipline]
    writer.segment(
        "RF1",
        ["P", "Pending", "HL70283"],
        tables.PRIORITY_OUT.get(sr.get("priority") or "routine", "R"),
        [code, text, system],
        "",
        "O",
        ei(identifiers[0]["value"], identifiers[0].get("system")),
        v2_dtm(sr.get("authoredOn")),
    )
    role = context.get(sr.get("requester"))
    practitioner = context.get((role or {}).get("practitioner"))
    family, given, prefix = person_name(practitioner)
    organization = ""
    for concept in (role or {}).get("code") or []:
        label = str(concept.get("text") or "")
        if label.startswith("Referring physician, "):
            organization = label[len("Referring physician, ") :]
    npi = npi_of(role, practitioner)
    writer.segment(
        "PRD",
        ["RP", "Referring Provider", "HL70286"],
        xpn(family, given, prefix),
        "",
        ["", "", "", [organization]] if organization else "",
        Reps([xtn(t) for t in (role or {}).get("telecom") or []]),
        "",
        [npi, "NPI"] if npi else "",
    )
    pid(writer, context.get(sr.get("subject")), sr.get("subject"))
    for index, reference in enumerate(sr.get("insurance") or [], start=1):
        coverage = context.get(reference)
        if coverage is None:
            continue
        payor = (coverage.get("payor") or [{}])[0]
        payer_id = (payor.get("identifier") or {}).get("value", "")
        writer.segment(
            "IN1",
            str(index),
            "",
            [payer_id],
            [payor.get("display", "")],
            *([""] * 31),
            coverage.get("subscriberId", ""),
        )
    for index, reference in enumerate(sr.get("reasonReference") or [], start=1):
        condition = context.get(reference)
        coding = next(
            (
                c
                for c in ((condition or {}).get("code") or {}).get("coding") or []
                if c.get("system") == ICD10_SYSTEM
            ),
            None,
        )
        if coding is None:
            continue
        writer.segment(
            "DG1",
            str(index),
            "",
            [coding.get("code", ""), coding.get("display", ""), tables.ICD10_OUT],
            "",
            "",
            "W",
        )
    for index, reference in enumerate(sr.get("supportingInfo") or [], start=1):
        document = context.get(reference)
        if document is None or document.get("resourceType") != "DocumentReference":
            continue
        attachment = ((document.get("content") or [{}])[0]).get("attachment") or {}
        mime = str(attachment.get("contentType") or "application/octet-stream")
        kind, subtype = tables.MIME_OUT.get(mime, ("AP", mime))
        title = str(attachment.get("title") or document.get("description") or "Attachment")
        writer.segment(
            "OBX",
            str(index),
            "ED",
            [f"DOC{index}", title, "L"],
            "",
            ["", kind, subtype, "Base64", str(attachment.get("data") or "")],
            "",
            "",
            "",
            "",
            "",
            "F",
        )
    writer.segment("PV1", "1", "O")
    for index, note in enumerate(sr.get("note") or [], start=1):
        writer.segment("NTE", str(index), "L", Reps([note.get("text", "")], formatted=True))
    return writer.text()


# ---------------------------------------------------------------------------- Task -> RRI / OSU


def _task(payload: dict[str, Any]) -> tuple[dict[str, Any], Context]:
    context = Context(payload)
    tasks = context.of_type("Task")
    if not tasks:
        raise UntranslatableResource("the payload is not a Task (or a Bundle with one)")
    task = tasks[0]
    if task.get("status") not in tables.REFERRAL_STATUS_OUT:
        raise UntranslatableResource("Task.status is missing or unknown")
    return task, context


def _business_status(task: dict[str, Any]) -> tuple[str, str]:
    for coding in (task.get("businessStatus") or {}).get("coding") or []:
        if coding.get("system") == BSER_BUSINESS_STATUS_SYSTEM and coding.get("code"):
            return str(coding["code"]), str(coding.get("display") or "")
    return "", ""


def _reason_text(task: dict[str, Any]) -> str:
    reason = task.get("statusReason") or {}
    return str(
        reason.get("text")
        or next((c.get("display") for c in reason.get("coding") or [] if c.get("display")), "")
        or ""
    )


def _task_identifier(task: dict[str, Any]) -> dict[str, Any]:
    identifiers = task.get("identifier") or []
    if not identifiers or not identifiers[0].get("value"):
        raise UntranslatableResource("Task.identifier (the referral number) is required")
    return dict(identifiers[0])


def task_to_rri_i12(
    payload: dict[str, Any], *, header: OutboundHeader, control_id: str, now: datetime
) -> str:
    """RRI^I12 (referral response) telling the referrer the referral's status."""
    task, context = _task(payload)
    identifier = _task_identifier(task)
    status = task["status"]
    bs_code, bs_display = _business_status(task)
    service_request = context.get(task.get("focus"))
    discipline = referral_category(service_request) if service_request else None
    writer = Writer(header.separators)
    msh(writer, header, ["RRI", "I12", "RRI_I12"], control_id, now)
    rf1_code = tables.REFERRAL_STATUS_OUT[status]
    writer.segment(
        "RF1",
        [rf1_code, _RF1_TEXT[rf1_code], "HL70283", status, status, tables.TASK_STATUS_V2_SYSTEM],
        tables.PRIORITY_OUT.get(task.get("priority") or "", ""),
        list(tables.DISCIPLINE_OUT[discipline]) if discipline else "",
        [bs_code, bs_display, BSER_SYSTEM_V2] if bs_code else "",
        "",
        ei(identifier["value"], identifier.get("system")),
        v2_dtm(task.get("lastModified") or task.get("authoredOn")),
        "",
        "",
        "",
        [str(task.get("id") or ""), FHIR_ID_NAMESPACE],
    )
    role = context.get(task.get("requester"))
    practitioner = context.get((role or {}).get("practitioner"))
    family, given, prefix = person_name(practitioner)
    npi = npi_of(role, practitioner)
    writer.segment(
        "PRD",
        ["RP", "Referring Provider", "HL70286"],
        xpn(family, given, prefix),
        "",
        "",
        "",
        "",
        [npi, "NPI"] if npi else "",
    )
    clinic = context.get(task.get("owner"))
    writer.segment(
        "PRD",
        ["RT", "Referred to Provider", "HL70286"],
        [str((clinic or {}).get("name") or "")],
        "",
        ["", "", "", [header.sending_facility]] if header.sending_facility else "",
    )
    pid(writer, context.get(task.get("for")), task.get("for"))
    reason = _reason_text(task)
    if reason:
        writer.segment("NTE", "1", "L", Reps([reason], formatted=True), ["RE", "Remark", "HL70364"])
    return writer.text()


_RF1_TEXT = {"A": "Accepted", "P": "Pending", "R": "Rejected", "E": "Expired"}


def task_to_osu_o51(
    payload: dict[str, Any], *, header: OutboundHeader, control_id: str, now: datetime
) -> str:
    """360X OSU^O51 (order status update) for the referral Task."""
    task, context = _task(payload)
    identifier = _task_identifier(task)
    status = task["status"]
    bs_code, bs_display = _business_status(task)
    writer = Writer(header.separators)
    msh(writer, header, ["OSU", "O51", "OSU_O51"], control_id, now)
    pid(writer, context.get(task.get("for")), task.get("for"))
    role = context.get(task.get("requester"))
    practitioner = context.get((role or {}).get("practitioner"))
    family, given, prefix = person_name(practitioner)
    npi = npi_of(role, practitioner)
    reason = task.get("statusReason") or {}
    reason_coding: dict[str, Any] = next(iter(reason.get("coding") or []), {})
    reason_text = _reason_text(task)
    writer.segment(
        "ORC",
        "SC",
        ei(identifier["value"], identifier.get("system")),
        [str(task.get("id") or ""), FHIR_ID_NAMESPACE],
        "",
        tables.ORDER_STATUS_OUT[status],
        "",
        "",
        "",
        v2_dtm(task.get("lastModified") or task.get("authoredOn")),
        "",
        "",
        [npi, family, given[0] if given else "", " ".join(given[1:]), "", prefix, "", "", ["NPI"]]
        if npi
        else "",
        "",
        "",
        "",
        [str(reason_coding.get("code") or ""), reason_text, str(reason_coding.get("system") or "")]
        if reason_text or reason_coding
        else "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        [
            status,
            status,
            tables.TASK_STATUS_V2_SYSTEM,
            bs_code,
            bs_display,
            BSER_SYSTEM_V2 if bs_code else "",
        ],
    )
    return writer.text()


# -------------------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A referral status read from RRI^I12 or OSU^O51 (Task fields)."""

    identifier_system: str | None
    identifier_value: str
    status: str
    business_status: str | None
    reason: str | None
    task_id: str | None
    when: str | None


def read_status_update(raw: bytes | str | V2Message) -> StatusUpdate:
    """The referral status an RRI^I12 or OSU^O51 carries (the inverse of the two builders)."""
    message = raw if isinstance(raw, V2Message) else parse(raw)
    header = read_header(message)
    namespace = header.sending_facility or header.sending_application
    if header.message_type == "RRI^I12":
        check_structure("RRI_I12", message.names)
        rf1 = message.first("RF1")
        if rf1 is None:
            raise Hl7Error(SEGMENT_SEQUENCE_ERROR, "required segment RF1 is missing", at("RF1"))
        status = rf1.get(1, 1, 4) if rf1.get(1, 1, 6) == tables.TASK_STATUS_V2_SYSTEM else ""
        status = status or tables.REFERRAL_STATUS_IN.get(rf1.get(1).upper(), "")
        if not status:
            raise Hl7Error(TABLE_VALUE_NOT_FOUND, "RF1-1 is not a known referral status", rf1.loc(1))
        system, value = read_ei(rf1, 6, namespace)
        nte = message.first("NTE")
        reason = nte.get(3) if nte is not None else ""
        business = rf1.get(4, 1, 1) if rf1.get(4, 1, 3) == BSER_SYSTEM_V2 else ""
        task_id = rf1.get(11, 1, 1) if rf1.get(11, 1, 2) == FHIR_ID_NAMESPACE else ""
        when = rf1.get(7)
    elif header.message_type == "OSU^O51":
        check_structure("OSU_O51", message.names)
        orc = message.first("ORC")
        assert orc is not None
        status = orc.get(25, 1, 1) if orc.get(25, 1, 3) == tables.TASK_STATUS_V2_SYSTEM else ""
        status = status or tables.ORDER_STATUS_IN.get(orc.get(5).upper(), "")
        if not status:
            raise Hl7Error(TABLE_VALUE_NOT_FOUND, "ORC-5 is not a known order status", orc.loc(5))
        system, value = read_ei(orc, 2, namespace)
        reason = orc.get(16, 1, 2) or orc.get(16, 1, 1)
        business = orc.get(25, 1, 4) if orc.get(25, 1, 6) == BSER_SYSTEM_V2 else ""
        task_id = orc.get(3, 1, 1) if orc.get(3, 1, 2) == FHIR_ID_NAMESPACE else ""
        when = orc.get(9)
    else:
        raise Hl7Error(TABLE_VALUE_NOT_FOUND, "not an RRI^I12 or OSU^O51", at("MSH", 1, 9))
    if not value:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "the referral identifier is missing", at("RF1", 1, 6))
    return StatusUpdate(
        system, value, status, business or None, reason or None, task_id or None, when or None
    )

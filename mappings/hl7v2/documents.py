"""A plan of care (FHIR R4 CarePlan and/or its certification PDF DocumentReference) -> HL7 v2.5.1 MDM
(chapter 9, structure ``MDM_T02``); pure: ``now`` and the control id are passed in.

:func:`plan_to_mdm` takes a CarePlan or a plan of care DocumentReference (LOINC 18776-5, as
:func:`mappings.plan_of_care.pdf.plan_document_reference` makes it), alone or first in a Bundle with
the resources it references: Goals, ServiceRequests and the Condition of the plan (as
:func:`mappings.plan_of_care.fhir.build_plan_of_care` makes them), the author's PractitionerRole and
Practitioner, the Patient, the referral ServiceRequest, and the plan's DocumentReference (whose
``context.related`` points at the CarePlan). :func:`read_plan_summary` reads the message back.

Trigger event: ``T02`` (original document notification and content) for the plan's first revision
(the ``plan-revision`` extension of the CarePlan) at its first version (``meta.versionId`` absent or
``1``); ``T08`` (document edit notification and content, same TXA-12) for a later version of the same
revision; ``T10`` (document replacement notification and content) for a new revision: the revision
the physician signed is replaced, not edited, so it gets its own number (TXA-12 ``<plan id>-R<n>``)
and names the one it replaces in TXA-13.

Field map:

=====================================  ========================================================
EVN-1 / EVN-2                          the event (T02 / T08 / T10) / ``now``
PID                                    CarePlan.subject (else DocumentReference.subject): names and
                                       identifiers when the Patient is in the payload, else its
                                       logical id with :data:`FHIR_ID_NAMESPACE`; ``PV1|1|O``
TXA-2 document type                    ``POC`` (plan of care; table 0270 is user-defined)
TXA-3 content presentation             ``AP`` when the PDF is sent, else ``TX`` (table 0191)
TXA-4 activity date/time               CarePlan.created (else DocumentReference.date)
TXA-5 primary activity provider        CarePlan.author (else DocumentReference.author[0]):
                                       NPI^family^given^middle^^prefix^^^NPI from its
                                       PractitionerRole / Practitioner in the payload
TXA-6 origination date/time            DocumentReference.date (the PDF), else CarePlan.created
TXA-12 unique document number (EI)     CarePlan.identifier[0] (else DocumentReference
                                       .masterIdentifier, else .identifier[0])
TXA-13 parent document number (EI)     T10: the number of the revision it replaces
TXA-14 placer order number (EI)        the referral (CarePlan.supportingInfo ServiceRequest in the
                                       payload): its identifier[0]
TXA-17 completion status (table 0271)  CarePlan draft (or DocumentReference.docStatus preliminary):
                                       IP in progress; otherwise AU authenticated (by the therapist:
                                       the physician's certification is a later, separate signature)
TXA-19 availability (table 0273)       CarePlan revoked or DocumentReference superseded: OB
                                       obsolete; either entered-in-error: CA deleted; else AV
TXA-21 change reason                   T10: ``Plan of care revision <n> replaces revision <n-1>``;
                                       T08: ``Plan of care updated``
OBX (value type TX, sub-id 1)          one per summary line: title and revision, period, frequency
                                       (CarePlan.description), diagnosis, each Goal (short-/long-
                                       term, description, due date), each activity (detail
                                       description, or the ServiceRequest's CPT code and display)
OBX (value type ED, sub-id 2)          the PDF: ^AP^PDF^Base64^<data> (``tables.MIME_OUT``)
=====================================  ========================================================

Every OBX has OBX-3 ``18776-5^Plan of care note^LN`` and OBX-11 ``F`` (``P`` while the plan is a
draft). With a DocumentReference and no CarePlan in the payload only the PDF is sent; with a CarePlan
and no PDF only the lines. Line text is one line each (white space runs become one space).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mappings.hl7v2 import tables
from mappings.hl7v2.ack import read_header
from mappings.hl7v2.datatypes import ei, fhir_date, fhir_datetime, naive_utc, parse_dtm, read_cx, read_ei, v2_dtm
from mappings.hl7v2.errors import DATA_TYPE_ERROR, REQUIRED_FIELD_MISSING, TABLE_VALUE_NOT_FOUND, Hl7Error, at
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
from mappings.hl7v2.syntax import V2Message, Writer, parse
from mappings.plan_of_care.codes import CPT, GOAL_TERM_SYSTEM, ICD10CM, REVISION_EXTENSION
from mappings.plan_of_care.pdf import LOINC, PLAN_OF_CARE_NOTE

__all__ = ["PlanSummaryMessage", "plan_to_mdm", "read_plan_summary"]

_TERM_LABELS = {"short-term": "Short-term goal", "long-term": "Long-term goal"}


def _line(text: str) -> str:
    return " ".join(text.split())


def _is_plan_document(document: dict[str, Any]) -> bool:
    return any(
        c.get("system") == LOINC and c.get("code") == PLAN_OF_CARE_NOTE[0]
        for c in (document.get("type") or {}).get("coding") or []
        if isinstance(c, dict)
    )


def _attachment(document: dict[str, Any] | None) -> dict[str, Any] | None:
    for content in (document or {}).get("content") or []:
        attachment = (content or {}).get("attachment") or {}
        if attachment.get("data"):
            return dict(attachment)
    return None


def _related_plan(context: Context, document: dict[str, Any]) -> dict[str, Any] | None:
    for reference in (document.get("context") or {}).get("related") or []:
        resource = context.get(reference)
        if resource is not None and resource.get("resourceType") == "CarePlan":
            return resource
    return None


def _plan_and_document(context: Context) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    focus = context.focus or {}
    if focus.get("resourceType") == "CarePlan":
        documents = [
            d
            for d in context.of_type("DocumentReference")
            if _is_plan_document(d) and _related_plan(context, d) is focus and _attachment(d)
        ]
        return focus, documents[0] if documents else None
    if focus.get("resourceType") == "DocumentReference":
        if not _is_plan_document(focus):
            raise UntranslatableResource("the DocumentReference is not a plan of care note (LOINC 18776-5)")
        plan = _related_plan(context, focus)
        if plan is None and not _attachment(focus):
            raise UntranslatableResource(
                "the DocumentReference has no attached data and its CarePlan is not in the payload"
            )
        return plan, focus
    raise UntranslatableResource("the payload is not a plan of care (a CarePlan or its DocumentReference)")


def _revision(plan: dict[str, Any] | None) -> int | None:
    for extension in (plan or {}).get("extension") or []:
        if extension.get("url") == REVISION_EXTENSION and isinstance(extension.get("valueInteger"), int):
            return int(extension["valueInteger"])
    return None


def _event(focus: dict[str, Any], plan: dict[str, Any] | None) -> str:
    """T10 for a new revision of the plan (the physician signed revision n-1: it is replaced, not
    edited), T08 for a later version of the same revision, else T02."""
    if (_revision(plan) or 1) > 1:
        return "T10"
    return "T08" if str((focus.get("meta") or {}).get("versionId") or "1") != "1" else "T02"


def _revision_number(number: dict[str, Any], revision: int) -> dict[str, Any]:
    """The unique document number of one revision: the plan's identifier, ``-R<n>`` from revision 2."""
    return number if revision <= 1 else {**number, "value": f"{number['value']}-R{revision}"}


def _coding(concept: Any, system: str) -> dict[str, Any] | None:
    for coding in (concept or {}).get("coding") or []:
        if isinstance(coding, dict) and coding.get("system") == system:
            return coding
    return None


# ---------------------------------------------------------------------------------- the summary


def _summary_lines(plan: dict[str, Any], context: Context) -> list[str]:
    lines: list[str] = []
    head = str(plan.get("title") or "Plan of care")
    revision = _revision(plan)
    details = [f"revision {revision}" if revision is not None else "", str(plan.get("status") or "")]
    if any(details):
        head += f" ({', '.join(d for d in details if d)})"
    lines.append(head)
    period = plan.get("period") or {}
    if period.get("start") or period.get("end"):
        lines.append(f"Period: {period.get('start') or '?'} to {period.get('end') or '?'}")
    if _line(str(plan.get("description") or "")):
        lines.append(f"Frequency: {plan['description']}")
    visit_codes = [
        coding
        for activity in plan.get("activity") or []
        for concept in ((activity or {}).get("detail") or {}).get("reasonCode") or []
        if (coding := _coding(concept, ICD10CM)) is not None
    ]
    addresses = plan.get("addresses") or []
    for reference in addresses:
        if not isinstance(reference, dict):
            continue
        condition = context.get(reference)
        coding = _coding((condition or {}).get("code"), ICD10CM)
        if coding is None and len(addresses) == 1 and visit_codes:
            coding = visit_codes[0]
        display = reference.get("display") or (coding or {}).get("display") or ""
        code = (coding or {}).get("code") or ""
        text = f"{code} {display}".strip() if code and display != code else (code or display)
        if text:
            lines.append(f"Diagnosis: {text}")
    for reference in plan.get("goal") or []:
        goal = context.get(reference)
        description = _line(str(((goal or {}).get("description") or {}).get("text") or ""))
        if goal is None or not description:
            continue
        label = "Goal"
        for category in goal.get("category") or []:
            term = _coding(category, GOAL_TERM_SYSTEM)
            if term is not None:
                label = _TERM_LABELS.get(str(term.get("code")), label)
        text = f"{label}: {description}"
        due = next((t.get("dueDate") for t in goal.get("target") or [] if t.get("dueDate")), None)
        if due:
            text += f" (due {due})"
        lines.append(text)
    for activity in plan.get("activity") or []:
        detail = (activity or {}).get("detail")
        if isinstance(detail, dict):
            text = _line(str(detail.get("description") or (detail.get("code") or {}).get("text") or ""))
            if text:
                lines.append(f"Activity: {text}")
            continue
        request = context.get((activity or {}).get("reference"))
        if request is None:
            continue
        cpt = _coding(request.get("code"), CPT)
        if cpt is not None:
            lines.append(f"Activity: {cpt.get('code')} {cpt.get('display') or ''}".rstrip())
        elif (request.get("code") or {}).get("text"):
            lines.append(f"Activity: {request['code']['text']}")
    return [_line(line) for line in lines if _line(line)]


def _author_xcn(context: Context, reference: Any) -> list[Any] | str:
    resource = context.get(reference)
    if resource is not None and resource.get("resourceType") == "PractitionerRole":
        role, practitioner = resource, context.get(resource.get("practitioner"))
    else:
        role, practitioner = None, resource
    npi = npi_of(role, practitioner)
    family, given, prefix = person_name(practitioner)
    name = [family, given[0] if given else "", " ".join(given[1:]), "", prefix]
    if npi:
        return [npi, *name, "", "", ["NPI"]]
    return ["", *name] if family else ""


def _document_number(plan: dict[str, Any] | None, document: dict[str, Any] | None) -> dict[str, Any]:
    candidates = [
        *((plan or {}).get("identifier") or [])[:1],
        (document or {}).get("masterIdentifier"),
        *((document or {}).get("identifier") or [])[:1],
    ]
    for identifier in candidates:
        if isinstance(identifier, dict) and identifier.get("value"):
            return identifier
    raise UntranslatableResource(
        "TXA-12 needs CarePlan.identifier or DocumentReference.masterIdentifier / identifier"
    )


def _referral_number(plan: dict[str, Any] | None, context: Context) -> dict[str, Any] | None:
    for reference in (plan or {}).get("supportingInfo") or []:
        request = context.get(reference)
        if request is None or request.get("resourceType") != "ServiceRequest":
            continue
        for identifier in request.get("identifier") or []:
            if identifier.get("value"):
                return dict(identifier)
    return None


def plan_to_mdm(
    payload: dict[str, Any], *, header: OutboundHeader, control_id: str, now: datetime
) -> tuple[str, str]:
    """(trigger event ``T02`` / ``T08`` / ``T10``, MDM message) of a plan of care (see the module table)."""
    context = Context(payload)
    plan, document = _plan_and_document(context)
    focus = context.focus or {}
    event = _event(focus, plan)
    subject = (plan or {}).get("subject") or (document or {}).get("subject")
    if not subject:
        raise UntranslatableResource("the plan's subject (the patient) is required")
    number = _document_number(plan, document)
    revision_no = _revision(plan) or 1
    this = _revision_number(number, revision_no)
    number_ei = ei(str(this["value"]), this.get("system"))
    parent = _revision_number(number, revision_no - 1) if event == "T10" else None
    parent_ei = ei(str(parent["value"]), parent.get("system")) if parent else ""
    attachment = _attachment(document)
    plan_status = str((plan or {}).get("status") or "")
    doc_status = str((document or {}).get("status") or "")
    in_progress = plan_status == "draft" or (document or {}).get("docStatus") == "preliminary"
    completion = tables.PLAN_COMPLETION_OUT.get(plan_status, "AU") if plan else "AU"
    completion = "IP" if in_progress else completion
    availability = "AV"
    for status in (plan_status, doc_status):
        found = tables.PLAN_AVAILABILITY_OUT.get(status)
        if found == "CA" or (found and availability == "AV"):
            availability = found
    author = (plan or {}).get("author") or next(iter((document or {}).get("author") or []), None)
    created = (plan or {}).get("created") or (document or {}).get("date")
    originated = (document or {}).get("date") or (plan or {}).get("created")
    order = _referral_number(plan, context)
    revision = _revision(plan)

    writer = Writer(header.separators)
    when = naive_utc(now)
    msh(writer, header, ["MDM", event, "MDM_T02"], control_id, when)
    writer.segment("EVN", event, v2_dtm(when))
    pid(writer, context.get(subject), subject)
    writer.segment("PV1", "1", "O")
    writer.segment(
        "TXA",
        "1",
        tables.PLAN_DOCUMENT_TYPE,
        "AP" if attachment else "TX",
        v2_dtm(created),
        _author_xcn(context, author),
        v2_dtm(originated),
        "",
        "",
        "",
        "",
        "",
        number_ei,
        parent_ei,
        ei(str(order["value"]), order.get("system")) if order else "",
        "",
        "",
        completion,
        "",
        availability,
        "",
        {"T10": f"Plan of care revision {revision} replaces revision {revision_no - 1}",
         "T08": "Plan of care updated"}.get(event, ""),
    )
    observation = list(tables.PLAN_OBSERVATION)
    result_status = "P" if in_progress else "F"
    set_id = 0
    for line in _summary_lines(plan, context) if plan else []:
        set_id += 1
        writer.segment("OBX", str(set_id), "TX", observation, "1", line, *([""] * 5), result_status)
    if attachment:
        mime = str(attachment.get("contentType") or "application/octet-stream")
        kind, subtype = tables.MIME_OUT.get(mime, ("AP", mime))
        set_id += 1
        writer.segment(
            "OBX",
            str(set_id),
            "ED",
            observation,
            "2",
            ["", kind, subtype, "Base64", str(attachment["data"])],
            *([""] * 5),
            result_status,
        )
    if set_id == 0:
        raise UntranslatableResource("the plan of care has nothing to send (no summary lines, no PDF)")
    return event, writer.text()


# -------------------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class PlanSummaryMessage:
    """What an MDM^T02 / T08 of a plan of care says (the inverse of :func:`plan_to_mdm`)."""

    event: str
    document_number: tuple[str | None, str]  # (system, value) of TXA-12
    parent_document_number: tuple[str | None, str] | None
    order_number: tuple[str | None, str] | None  # TXA-14: the referral
    document_type: str
    status: str  # TXA-17 document completion status (table 0271)
    availability: str  # TXA-19 (table 0273)
    activity_time: str | None  # TXA-4 as a FHIR date or dateTime (UTC)
    author_npi: str | None
    lines: list[str] = field(default_factory=list)
    pdf: bytes | None = field(default=None, repr=False)
    content_type: str | None = None
    patient_ref: str | None = None  # Patient/<id> when PID-3 carries the FHIR id
    patient_identifier: tuple[str | None, str] | None = None  # the first other PID-3 identifier


def read_plan_summary(raw: bytes | str | V2Message) -> PlanSummaryMessage:
    """Read an MDM^T02 / T08 (any sender's, the hub's in particular). Raises Hl7Error."""
    message = raw if isinstance(raw, V2Message) else parse(raw)
    header = read_header(message)
    if header.message_code != "MDM" or header.trigger_event not in ("T02", "T08", "T10"):
        raise Hl7Error(TABLE_VALUE_NOT_FOUND, "not an MDM^T02, T08 or T10", at("MSH", 1, 9))
    check_structure("MDM_T02", message.names, strict=True)
    namespace = header.sending_facility or header.sending_application
    txa = message.first("TXA")
    assert txa is not None  # the structure requires it
    system, value = read_ei(txa, 12, namespace)
    if not value:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "TXA-12 (unique document number) is required", txa.loc(12))
    parent_system, parent_value = read_ei(txa, 13, namespace)
    order_system, order_value = read_ei(txa, 14, namespace)
    activity = txa.get(4)
    activity_time = None
    if activity:
        try:
            moment, digits, _ = parse_dtm(activity)
        except ValueError:
            raise Hl7Error(DATA_TYPE_ERROR, "invalid date/time", txa.loc(4)) from None
        activity_time = fhir_date(txa, 4) if digits <= 8 else fhir_datetime(moment)
    npi = txa.get(5) if "NPI" in (txa.get(5, 1, 9).upper(), txa.get(5, 1, 13).upper()) else ""

    lines: list[str] = []
    pdf: bytes | None = None
    content_type: str | None = None
    for obx in message.all("OBX"):
        kind = obx.get(2).upper()
        if kind in ("TX", "ST", "FT"):
            lines.append(obx.get(5))
        elif kind == "ED" and pdf is None:
            if obx.get(5, 1, 4).upper() != "BASE64":
                raise Hl7Error(DATA_TYPE_ERROR, "OBX-5 data must be Base64 encoded", obx.loc(5, 1, 4))
            try:
                pdf = base64.b64decode(obx.get(5, 1, 5), validate=True)
            except (binascii.Error, ValueError):
                raise Hl7Error(DATA_TYPE_ERROR, "OBX-5 is not valid Base64", obx.loc(5, 1, 5)) from None
            content_type = tables.MIME_IN.get((obx.get(5, 1, 2).upper(), obx.get(5, 1, 3).upper()))

    pid = message.first("PID")
    assert pid is not None  # the structure requires it
    patient_ref = None
    patient_identifier = None
    for rep in pid.repetitions(3):
        if pid.get(3, rep, 4) == FHIR_ID_NAMESPACE and pid.get(3, rep, 1):
            patient_ref = patient_ref or f"Patient/{pid.get(3, rep, 1)}"
        elif patient_identifier is None:
            id_system, id_value, _ = read_cx(pid, 3, rep, namespace)
            if id_value:
                patient_identifier = (id_system, id_value)
    return PlanSummaryMessage(
        event=header.trigger_event,
        document_number=(system, value),
        parent_document_number=(parent_system, parent_value) if parent_value else None,
        order_number=(order_system, order_value) if order_value else None,
        document_type=txa.get(2),
        status=txa.get(17),
        availability=txa.get(19),
        activity_time=activity_time,
        author_npi=npi or None,
        lines=lines,
        pdf=pdf,
        content_type=content_type,
        patient_ref=patient_ref,
        patient_identifier=patient_identifier,
    )

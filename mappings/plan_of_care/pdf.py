"""The plan of care as the page the referring physician signs, and that PDF as a DocumentReference.

:func:`render_plan_pdf` lays out a one- or two-page US Letter "Plan of Care -- Certification"
(Medicare Benefit Policy Manual ch. 15 section 220.1.3: the physician certifies the plan by signing
and dating it): patient, diagnosis, discipline, frequency/duration, plan period, the CPT services,
short- and long-term goals with due dates, and a signature block with the physician's NPI. The
return code is printed as text in every page footer (with the patient's name and date of birth)
and as a Code128 barcode beside the signature, so a signed page that comes back by fax can be
matched to its plan.

The bytes are stable: reportlab's invariant mode (fixed document id, no comments) with the PDF
creation date set to ``generated_at``. (reportlab honours ``SOURCE_DATE_EPOCH`` in invariant mode:
with that variable set the document id, though not the dates, follows it instead.) Only the
standard Helvetica fonts are used: text outside Windows-1252 does not render.

:func:`plan_document_reference` wraps the PDF in a FHIR R4 DocumentReference: type LOINC
``18776-5`` "Plan of care note", category US Core ``clinical-note``, the return code as
identifier, ``context.related`` the CarePlan.

The PDF is PHI: nothing here logs it, and error messages never quote the inputs.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
from datetime import UTC, date, datetime
from typing import Any
from xml.sax.saxutils import escape

from mappings.plan_of_care.fhir import DISCIPLINES, deterministic_id, frequency_text
from mappings.plan_of_care.model import Goal, PlanSummary

#: identifier system of return codes (one per PDF sent for signature)
RETURN_CODE_SYSTEM = "https://therapy-hub.example/sid/plan-return-code"
LOINC = "http://loinc.org"
PLAN_OF_CARE_NOTE = ("18776-5", "Plan of care note")
US_CORE_DOC_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"
IHE_FORMAT_CODES = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode"
TITLE = "Plan of Care \u2014 Certification"
CERTIFICATION_STATEMENT = (
    "I certify the need for these services furnished under this plan of treatment while under my care."
)
_RETURN_CODE = re.compile(r"^[A-Z0-9][A-Z0-9\-]{3,39}$")
_ACHIEVEMENT_TEXT = {
    "in-progress": "in progress",
    "no-change": "no change",
    "not-achieved": "not achieved",
    "no-progress": "no progress",
    "not-attainable": "not attainable",
}


def _check_return_code(return_code: str) -> None:
    if not isinstance(return_code, str) or not _RETURN_CODE.match(return_code):
        raise ValueError("return_code must be 4-40 characters: capital letters, digits and '-'")


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value


def _us(day: date | None) -> str:
    return day.strftime("%m/%d/%Y") if day is not None else ""


def _number(value: Any) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def goal_target_text(goal: Goal) -> str:
    """``Pain NRS: 2 {score}``, ``Ability to walk: community distances``, or the measure alone."""
    if goal.measure is None:
        return ""
    name = goal.measure.display or goal.measure.code
    if goal.detail_quantity is not None:
        return f"{name}: {_number(goal.detail_quantity.value)} {goal.detail_quantity.unit}"
    if goal.detail_string is not None:
        return f"{name}: {goal.detail_string}"
    return name


def render_plan_pdf(
    summary: PlanSummary,
    *,
    patient_name: str,
    patient_birth_date: date,
    referring_physician: str,
    clinic_name: str,
    return_code: str,
    generated_at: datetime,
    referring_npi: str | None = None,
    therapist_name: str | None = None,
) -> bytes:
    """The certification PDF of ``summary``; the same inputs always give the same bytes.

    ``referring_npi`` is printed in the signature block when known (else a line to fill in);
    ``therapist_name`` is printed as the author of the plan when given."""
    # reportlab is imported here: importing the package must stay cheap for the bundle mappings
    from reportlab.graphics.barcode.code128 import Code128
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import LETTER
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import inch, mm
    from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    _check_return_code(return_code)
    generated_at = _aware(generated_at, "generated_at")
    if referring_npi is not None and not re.fullmatch(r"\d{10}", referring_npi):
        raise ValueError("referring_npi must be 10 digits")
    plan = summary.plan
    name = DISCIPLINES[plan.discipline][2]
    frequency = frequency_text(plan.frequency_per_week, plan.frequency_max_per_week, plan.duration_weeks)
    generated_text = generated_at.isoformat(timespec="minutes")

    styles = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=styles["BodyText"], fontSize=9.5, leading=12, spaceAfter=2)
    small = ParagraphStyle("small", parent=body, fontSize=8, leading=10, textColor=colors.HexColor("#444444"))
    label = ParagraphStyle("label", parent=body, fontName="Helvetica-Bold")
    heading = ParagraphStyle("heading", parent=styles["Heading3"], fontSize=11, spaceBefore=8, spaceAfter=3)
    title = ParagraphStyle("title", parent=styles["Title"], fontSize=16, spaceAfter=2)

    def p(text: str, style: ParagraphStyle = body) -> Paragraph:
        return Paragraph(escape(text), style)

    grid = TableStyle(
        [
            ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 4),
            ("RIGHTPADDING", (0, 0), (-1, -1), 4),
        ]
    )
    story: list[Any] = [
        p(TITLE, title),
        p(
            f"{name} ({plan.discipline}) \u00b7 {clinic_name}",
            ParagraphStyle("sub", parent=body, alignment=1),
        ),
        Spacer(1, 4),
    ]
    if plan.status == "draft":
        story.append(
            p("DRAFT \u2014 not for signature", ParagraphStyle("draft", parent=label, textColor=colors.red))
        )
    rows = [
        [p("Patient", label), p(patient_name), p("Date of birth", label), p(_us(patient_birth_date))],
        [p("Referring physician", label), p(referring_physician), p("Clinic", label), p(clinic_name)],
        [
            p("Discipline", label),
            p(name),
            p("Plan", label),
            p(f"{plan.identifier.value}, revision {plan.revision}"),
        ],
        [
            p("Diagnosis", label),
            p(f"{plan.diagnosis.code} \u2013 {plan.diagnosis.display} (ICD-10-CM)"),
            "",
            "",
        ],
        [p("Frequency / duration", label), p(frequency), p("Established", label), p(_us(plan.created))],
        [
            p("Certification period", label),
            p(f"{_us(plan.period_start)} to {_us(plan.period_end)}"),
            p("Therapist", label),
            p(therapist_name or ""),
        ],
    ]
    info = Table(rows, colWidths=[1.5 * inch, 2.4 * inch, 1.1 * inch, 2.0 * inch])
    info.setStyle(grid)
    info.setStyle(TableStyle([("SPAN", (1, 3), (3, 3))]))
    story += [info, p("Treatment plan (CPT)", heading)]

    services = [[p("CPT", label), p("Service", label), p("Frequency", label)]]
    for activity in plan.activities:
        own, own_max = plan.activity_frequency(activity)
        if activity.count is not None:
            how = f"{activity.count} session{'s' if activity.count != 1 else ''}"
            how += f", {frequency_text(own, None)}" if own is not None else ""
        else:
            how = frequency_text(own, own_max) + ("" if activity.frequency_per_week else " (per plan)")
        services.append([p(activity.code), p(activity.display), p(how)])
    table = Table(services, colWidths=[0.8 * inch, 4.2 * inch, 2.0 * inch], repeatRows=1)
    table.setStyle(grid)
    story.append(table)

    for term_title, goals in (
        ("Short-term goals", summary.short_term_goals),
        ("Long-term goals", summary.long_term_goals),
    ):
        story.append(p(term_title, heading))
        if not goals:
            story.append(p("None recorded."))
        for goal in goals:
            details = [
                f"Target: {goal_target_text(goal)}" if goal.measure else "",
                f"Due {_us(goal.due_date)}" if goal.due_date else "",
                f"Status: {_ACHIEVEMENT_TEXT.get(goal.achievement_status or '', goal.achievement_status)}"
                if goal.achievement_status
                else "",
            ]
            story.append(Paragraph(f"<b>{escape(goal.key or '')}</b> {escape(goal.description)}", body))
            detail = " \u00b7 ".join(d for d in details if d)
            if detail:
                story.append(Paragraph(escape(detail), ParagraphStyle("goal", parent=small, leftIndent=14)))

    barcode = Code128(return_code, barHeight=11 * mm, barWidth=0.4 * mm, humanReadable=False)
    signature = Table(
        [
            [p("Physician signature:", label), "", p("Date:", label), ""],
            [p("Printed name:", label), p(referring_physician), p("NPI:", label), p(referring_npi or "")],
        ],
        colWidths=[1.6 * inch, 2.9 * inch, 0.6 * inch, 1.9 * inch],
        rowHeights=[0.45 * inch, None],
    )
    signature.setStyle(
        TableStyle(
            [
                ("LINEBELOW", (1, 0), (1, 0), 0.8, colors.black),
                ("LINEBELOW", (3, 0), (3, 0), 0.8, colors.black),
                ("LINEBELOW", (3, 1), (3, 1), 0.8, colors.black),
                ("VALIGN", (0, 0), (-1, -1), "BOTTOM"),
            ]
        )
    )
    returned = Table([[barcode, p(f"Return code: {return_code}", label)]], colWidths=[3.6 * inch, 3.4 * inch])
    returned.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE")]))
    story.append(
        KeepTogether(
            [
                p("Physician certification", heading),
                p(CERTIFICATION_STATEMENT, label),
                signature,
                Spacer(1, 8),
                returned,
                p(
                    f"Please sign, date and fax this page back to {clinic_name}. Generated {generated_text}.",
                    small,
                ),
            ]
        )
    )

    footer = (
        f"{TITLE} \u00b7 plan {plan.identifier.value} rev {plan.revision} \u00b7 Return code {return_code}"
    )
    patient_line = f"Patient: {patient_name} \u00b7 DOB {_us(patient_birth_date)}"  # on every page
    stamp = generated_at.astimezone(UTC)

    def on_page(canvas: Any, doc: Any) -> None:
        # the PDF creation/modification dates: generated_at, never the clock
        canvas.setDateFormatter(lambda *_: stamp.strftime("D:%Y%m%d%H%M%S+00'00'"))
        canvas.saveState()
        canvas.setFont("Helvetica", 7.5)
        canvas.drawString(0.75 * inch, 0.62 * inch, patient_line)
        canvas.drawString(0.75 * inch, 0.5 * inch, footer)
        canvas.drawRightString(LETTER[0] - 0.75 * inch, 0.5 * inch, f"Page {doc.page}")
        canvas.restoreState()

    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=LETTER,
        leftMargin=0.75 * inch,
        rightMargin=0.75 * inch,
        topMargin=0.6 * inch,
        bottomMargin=0.8 * inch,
        title=TITLE,  # document metadata: nothing that identifies the patient
        author=clinic_name,
        creator="Therapy Interop Hub",
        invariant=1,
    )
    document.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return buffer.getvalue()


def plan_document_reference(
    pdf_bytes: bytes, *, plan_ref: str, patient_ref: str, now: datetime, return_code: str
) -> dict[str, Any]:
    """The FHIR R4 DocumentReference of a certification PDF (``status`` current, ``docStatus`` final).

    Its id is uuid5 over the return code, which is also its identifier: sending the same PDF again
    updates the same resource. The signed page that comes back is a new DocumentReference that
    ``relatesTo`` this one with code ``signs``."""
    _check_return_code(return_code)
    now = _aware(now, "now")
    if not isinstance(pdf_bytes, bytes | bytearray) or not pdf_bytes.startswith(b"%PDF-"):
        raise ValueError("pdf_bytes must be a PDF document")
    for name, value, kind in (("plan_ref", plan_ref, "CarePlan"), ("patient_ref", patient_ref, "Patient")):
        if not re.fullmatch(rf"(?:\S*/)?{kind}/[A-Za-z0-9\-.]{{1,64}}|urn:uuid:[0-9a-fA-F\-]{{36}}", value):
            raise ValueError(f"{name} must be a reference to a {kind}")
    data = bytes(pdf_bytes)
    document_id = deterministic_id("DocumentReference", RETURN_CODE_SYSTEM, return_code)
    return {
        "resourceType": "DocumentReference",
        "id": document_id,
        "identifier": [{"system": RETURN_CODE_SYSTEM, "value": return_code}],
        "status": "current",
        "docStatus": "final",
        "type": {
            "coding": [{"system": LOINC, "code": PLAN_OF_CARE_NOTE[0], "display": PLAN_OF_CARE_NOTE[1]}],
            "text": "Plan of care for physician certification",
        },
        "category": [
            {
                "coding": [
                    {"system": US_CORE_DOC_CATEGORY, "code": "clinical-note", "display": "Clinical Note"}
                ]
            }
        ],
        "subject": {"reference": patient_ref},
        "date": now.isoformat(),
        "description": "Plan of care sent to the referring physician for certification",
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "data": base64.b64encode(data).decode("ascii"),
                    "size": len(data),
                    # FHIR Attachment.hash is the base64 of the SHA-1 of the data
                    "hash": base64.b64encode(hashlib.sha1(data).digest()).decode("ascii"),  # noqa: S324
                    "title": f"{TITLE} ({return_code})",
                },
                "format": {
                    "system": IHE_FORMAT_CODES,
                    "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient",
                    "display": "mimeType Sufficient",
                },
            }
        ],
        "context": {"related": [{"reference": plan_ref}]},
    }

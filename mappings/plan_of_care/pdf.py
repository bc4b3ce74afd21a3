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
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from xml.sax.saxutils import escape

from mappings.fhir.ids import deterministic_id
from mappings.plan_of_care.codes import DISCIPLINES, frequency_text
from mappings.plan_of_care.model import PlanIdentifier, PlanSummary
from mappings.plan_of_care.wording import goal_baseline_text, goal_target_text, us_date

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


_UUDISH = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


@dataclass(frozen=True, slots=True)
class ClinicBlock:
    """Who furnishes the services and where the signed page goes: the clinic's Organization."""

    name: str
    address: tuple[str, ...] = ()
    phone: str | None = None
    fax: str | None = None
    direct: str | None = None  # Direct Secure Messaging address


@dataclass(frozen=True, slots=True)
class Attestation:
    """The physician's electronic signature printed on the signed version of the page."""

    signer_name: str
    signed_at: datetime
    signer_npi: str | None = None
    statement: str = field(default="Electronically signed through the Therapy Interop Hub")


def plan_code(identifier: PlanIdentifier) -> str:
    """A short code for the plan that a page can print whole: the clinic's own plan number when it is
    short, else ``PC-`` and 8 characters derived from the identifier (stable across revisions)."""
    value = identifier.value
    if len(value) <= 20 and not _UUDISH.search(value):
        return value
    return "PC-" + hashlib.sha256(f"{identifier.system}|{value}".encode()).hexdigest()[:8].upper()


def _check_return_code(return_code: str) -> None:
    if not isinstance(return_code, str) or not _RETURN_CODE.match(return_code):
        raise ValueError("return_code must be 4-40 characters: capital letters, digits and '-'")


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value


def _return_instruction(clinic: ClinicBlock) -> str:
    ways = []
    if clinic.fax:
        ways.append(f"fax it to {clinic.fax}")
    if clinic.direct:
        ways.append(f"send it by Direct message to {clinic.direct}")
    if not ways and clinic.address:
        ways.append(f"mail it to {', '.join(clinic.address)}")
    how = " or ".join(ways) if ways else "return it"
    return f"Please sign and date this page, then {how} ({clinic.name})."


def render_plan_pdf(
    summary: PlanSummary,
    *,
    patient_name: str,
    patient_birth_date: date | None,
    referring_physician: str,
    return_code: str,
    generated_at: datetime,
    clinic_name: str | None = None,
    clinic: ClinicBlock | None = None,
    referring_npi: str | None = None,
    therapist_name: str | None = None,
    therapist_npi: str | None = None,
    patient_mrn: str | None = None,
    payer: str | None = None,
    attestation: Attestation | None = None,
) -> bytes:
    """The certification PDF of ``summary``; the same inputs always give the same bytes.

    ``clinic`` (name, address, phone, fax, Direct address; or only ``clinic_name``) heads the page and
    says where the signed page goes. ``referring_npi`` is printed in the signature block when known
    (else a line to fill in); ``therapist_name`` / ``therapist_npi`` as the author of the plan;
    ``patient_mrn`` and ``payer`` (name and member id) beside the patient. With ``attestation`` the
    page is the *signed* version: the signature block carries the signer's electronic signature,
    NPI and the time of signing instead of lines to fill in."""
    # reportlab is imported here: importing the package must stay cheap for the bundle mappings
    from reportlab.graphics.barcode.code128 import Code128
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import LETTER
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import inch, mm
    from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    _check_return_code(return_code)
    generated_at = _aware(generated_at, "generated_at")
    for npi_name, npi in (("referring_npi", referring_npi), ("therapist_npi", therapist_npi)):
        if npi is not None and not re.fullmatch(r"\d{10}", npi):
            raise ValueError(f"{npi_name} must be 10 digits")
    if clinic is None:
        if not clinic_name:
            raise ValueError("clinic or clinic_name is required")
        clinic = ClinicBlock(clinic_name)
    clinic_name = clinic.name
    if attestation is not None:
        _aware(attestation.signed_at, "attestation.signed_at")
        if attestation.signer_npi is not None and not re.fullmatch(r"\d{10}", attestation.signer_npi):
            raise ValueError("attestation.signer_npi must be 10 digits")
    code = plan_code(summary.plan.identifier)
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
    centred = ParagraphStyle("sub", parent=body, alignment=1)
    contact = " \u00b7 ".join(
        f"{label_} {value}"
        for label_, value in (("Phone", clinic.phone), ("Fax", clinic.fax), ("Direct", clinic.direct))
        if value
    )
    story: list[Any] = [
        p(TITLE, title),
        p(f"{name} ({plan.discipline}) \u00b7 {clinic_name}", centred),
    ]
    if clinic.address:
        story.append(p(", ".join(clinic.address), centred))
    if contact:
        story.append(p(contact, centred))
    story.append(Spacer(1, 4))
    if attestation is not None:
        story.append(
            p(
                f"SIGNED \u2014 electronically signed by {attestation.signer_name} on "
                f"{attestation.signed_at.isoformat(timespec='minutes')}",
                ParagraphStyle("signed", parent=label, textColor=colors.darkgreen),
            )
        )
    if plan.status == "draft":
        story.append(
            p("DRAFT \u2014 not for signature", ParagraphStyle("draft", parent=label, textColor=colors.red))
        )
    rows = [
        [p("Patient", label), p(patient_name), p("Date of birth", label), p(us_date(patient_birth_date))],
        [p("MRN", label), p(patient_mrn or "not recorded"), p("Payer", label), p(payer or "not recorded")],
        [p("Referring physician", label), p(referring_physician), p("Clinic", label), p(clinic_name)],
        [
            p("Discipline", label),
            p(name),
            p("Plan", label),
            p(f"{code}, revision {plan.revision}"),
        ],
        [
            p("Diagnosis", label),
            p(f"{plan.diagnosis.code} \u2013 {plan.diagnosis.display} (ICD-10-CM)"),
            "",
            "",
        ],
        [p("Frequency / duration", label), p(frequency), p("Established", label), p(us_date(plan.created))],
        [
            p("Certification period", label),
            p(f"{us_date(plan.period_start)} to {us_date(plan.period_end)}"),
            p("Therapist", label),
            p(", ".join(x for x in (therapist_name, f"NPI {therapist_npi}" if therapist_npi else None) if x)),
        ],
        [
            p("Precautions", label),
            p("; ".join(plan.precautions) if plan.precautions else "None recorded."),
            "",
            "",
        ],
    ]
    info = Table(rows, colWidths=[1.5 * inch, 2.4 * inch, 1.1 * inch, 2.0 * inch])
    info.setStyle(grid)
    info.setStyle(TableStyle([("SPAN", (1, 4), (3, 4)), ("SPAN", (1, 7), (3, 7))]))
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
                f"Baseline: {goal_baseline_text(goal)}" if goal.has_baseline else "",
                f"Target: {goal_target_text(goal)}" if goal.measure else "",
                f"Due {us_date(goal.due_date)}" if goal.due_date else "",
                f"Status: {_ACHIEVEMENT_TEXT.get(goal.achievement_status, goal.achievement_status)}"
                if goal.achievement_status
                else "",
            ]
            story.append(Paragraph(f"<b>{escape(goal.key or '')}</b> {escape(goal.description)}", body))
            detail = " \u00b7 ".join(d for d in details if d)
            if detail:
                story.append(Paragraph(escape(detail), ParagraphStyle("goal", parent=small, leftIndent=14)))

    barcode = Code128(return_code, barHeight=11 * mm, barWidth=0.4 * mm, humanReadable=False)
    signed_by, signed_on = "", ""
    signer, signer_npi = referring_physician, referring_npi
    if attestation is not None:
        signer, signer_npi = attestation.signer_name, attestation.signer_npi or referring_npi
        signed_by = f"/s/ {attestation.signer_name} ({attestation.statement})"
        signed_on = attestation.signed_at.isoformat(timespec="minutes")
    signature = Table(
        [
            [p("Physician signature:", label), p(signed_by, small), p("Date:", label), p(signed_on, small)],
            [p("Printed name:", label), p(signer), p("NPI:", label), p(signer_npi or "")],
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
                    (
                        "Signed version of the plan of care; keep it with the patient's record."
                        if attestation is not None
                        else _return_instruction(clinic)
                    )
                    + f" Generated {generated_text}.",
                    small,
                ),
            ]
        )
    )

    footer = (
        f"{TITLE} \u00b7 plan {code} rev {plan.revision} \u00b7 Return code {return_code}"
    )
    patient_line = f"Patient: {patient_name} \u00b7 DOB {us_date(patient_birth_date)}"  # on every page
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


#: identifier system of signed versions of a certification PDF (value: the return code signed)
SIGNED_CODE_SYSTEM = "https://therapy-hub.example/sid/plan-signed-return-code"


def signed_document_reference(
    pdf_bytes: bytes, *, unsigned: dict[str, Any], signer_ref: str, signed_at: datetime
) -> dict[str, Any]:
    """The signed version of a certification PDF (``render_plan_pdf(..., attestation=...)``) as a new
    DocumentReference: ``relatesTo`` the unsigned one with code ``signs``, ``authenticator`` the
    signer, ``content`` the signed PDF with its size and hash. Its id is uuid5 over the return code
    signed, so recording the same signature again updates it."""
    signed_at = _aware(signed_at, "signed_at")
    if not isinstance(pdf_bytes, bytes | bytearray) or not pdf_bytes.startswith(b"%PDF-"):
        raise ValueError("pdf_bytes must be a PDF document")
    if not re.fullmatch(r"(?:\S*/)?PractitionerRole/[A-Za-z0-9\-.]{1,64}", signer_ref):
        raise ValueError("signer_ref must be a reference to a PractitionerRole")
    return_code = next(
        (i["value"] for i in unsigned.get("identifier") or [] if i.get("system") == RETURN_CODE_SYSTEM), None
    )
    if not return_code or not unsigned.get("id"):
        raise ValueError("unsigned must be a plan DocumentReference with its return code")
    data = bytes(pdf_bytes)
    content = unsigned["content"][0]
    return {
        "resourceType": "DocumentReference",
        "id": deterministic_id("DocumentReference", SIGNED_CODE_SYSTEM, return_code),
        "identifier": [{"system": SIGNED_CODE_SYSTEM, "value": return_code}],
        "status": "current",
        "docStatus": "final",
        "type": unsigned["type"],
        "category": unsigned.get("category", []),
        "subject": unsigned["subject"],
        "date": signed_at.isoformat(),
        "authenticator": {"reference": signer_ref},
        "description": "Plan of care certified (signed) by the referring physician",
        "relatesTo": [{"code": "signs", "target": {"reference": f"DocumentReference/{unsigned['id']}"}}],
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "data": base64.b64encode(data).decode("ascii"),
                    "size": len(data),
                    "hash": base64.b64encode(hashlib.sha1(data).digest()).decode("ascii"),  # noqa: S324
                    "title": f"{TITLE} ({return_code}, signed)",
                },
                **({"format": content["format"]} if "format" in content else {}),
            }
        ],
        "context": unsigned.get("context", {}),
    }

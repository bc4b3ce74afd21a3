"""The resources of a certification Task sent by fax: a plan of care PDF with its return code, the
referrer's PractitionerRole with a fax number, the Task."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium

from mappings.fhir import jsonio
from mappings.plan_of_care import PlanOfCare, build_plan_of_care, plan_document_reference, plan_summary, render_plan_pdf
from mappings.referral.certification import OBLIGATION_CODE_SYSTEM

NOW = datetime(2025, 1, 6, 16, 30, tzinfo=UTC)
RETURN_CODE = "POC-7F3K-9Q2M"
REFERRER_FAX = "+15035550147"
CLINIC_FAX = "+15035550100"
TASK_ID = "cert-task-1"
PLAN_ID = "plan-1"
DATA = Path(__file__).parents[2] / "mappings" / "data" / "plan_of_care"


def plan_pdf(return_code: str = RETURN_CODE) -> bytes:
    raw = jsonio.loads((DATA / "pt_low_back" / "input.json").read_bytes())
    summary = plan_summary(build_plan_of_care(PlanOfCare.model_validate(raw["plan"]), now=NOW))
    return render_plan_pdf(summary, patient_name="Ada Okafor", patient_birth_date=date(1961, 7, 14),
                           referring_physician="Dr. Alan Smith", clinic_name="Riverside Rehab",
                           return_code=return_code, generated_at=NOW, referring_npi="1234567893")


def resources(pdf: bytes, *, fax: str | None = REFERRER_FAX, task_id: str = TASK_ID) -> list[dict[str, Any]]:
    """Task first, then what a delivery of it carries (references and the plan's documents)."""
    role: dict[str, Any] = {"resourceType": "PractitionerRole", "id": "ref-role-1",
                            "practitioner": {"reference": "Practitioner/ref-1"}}
    if fax:
        role["telecom"] = [{"system": "phone", "value": "+15035550111"}, {"system": "fax", "value": fax}]
    return [
        {"resourceType": "Task", "id": task_id, "status": "requested", "intent": "order",
         "code": {"coding": [{"system": OBLIGATION_CODE_SYSTEM, "code": "certification"}]},
         "focus": {"reference": f"CarePlan/{PLAN_ID}"}, "for": {"reference": "Patient/pat-1"},
         "owner": {"reference": "PractitionerRole/ref-role-1"}},
        {"resourceType": "CarePlan", "id": PLAN_ID, "status": "active", "intent": "plan",
         "subject": {"reference": "Patient/pat-1"}},
        role,
        {"resourceType": "Patient", "id": "pat-1", "name": [{"family": "Okafor", "given": ["Ada"]}]},
        {"resourceType": "Practitioner", "id": "ref-1", "name": [{"family": "Smith", "given": ["Alan"],
                                                                     "prefix": ["Dr."]}]},
        plan_document_reference(pdf, plan_ref=f"CarePlan/{PLAN_ID}", patient_ref="Patient/pat-1", now=NOW,
                                return_code=RETURN_CODE),
    ]


def bundle(items: list[dict[str, Any]]) -> bytes:
    return jsonio.dumps({"resourceType": "Bundle", "type": "collection",
                         "entry": [{"fullUrl": f"/fhir/{r['resourceType']}/{r['id']}", "resource": r}
                                   for r in items]}).encode()


def pdf_text(pdf: bytes) -> list[str]:
    """The text of every page (pypdfium2)."""
    document = pdfium.PdfDocument(io.BytesIO(pdf))
    try:
        return [page.get_textpage().get_text_range() for page in document]
    finally:
        document.close()

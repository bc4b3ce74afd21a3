"""Plan of care: the certification PDF, the DocumentReference, and the Bundle stored by the hub."""

from __future__ import annotations

import base64
import hashlib
import io
import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pypdf
import pytest

from mappings.fhir import jsonio, model_class
from mappings.fhir.validation import validate_resource
from mappings.plan_of_care import (
    PlanOfCare,
    build_plan_of_care,
    plan_document_reference,
    plan_summary,
    render_plan_pdf,
)
from tests.mappings.plan_of_care.conftest import GENERATED_AT, RETURN_CODE, _raw, as_json, load_case

# ----------------------------------------------------------------------------- PDF and DocumentReference


def render(plan: PlanOfCare, **overrides: Any) -> bytes:
    summary = plan_summary(build_plan_of_care(plan, now=GENERATED_AT))
    arguments: dict[str, Any] = {
        "patient_name": "Ada Okafor",
        "patient_birth_date": date(1961, 7, 14),
        "referring_physician": "Dr. Alan Smith",
        "clinic_name": "Riverside Rehab",
        "return_code": RETURN_CODE,
        "generated_at": GENERATED_AT,
        "referring_npi": "1234567893",
    }
    return render_plan_pdf(summary, **{**arguments, **overrides})


@pytest.fixture(scope="module")
def pt_pdf(pt_plan: PlanOfCare) -> bytes:
    return render(pt_plan)


def pdf_text(data: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return " ".join(" ".join(page.extract_text().split()) for page in reader.pages)


def test_pdf_holds_the_plan_and_the_signature_block(pt_plan: PlanOfCare, pt_pdf: bytes) -> None:
    text = pdf_text(pt_pdf)
    assert "Plan of Care \u2014 Certification" in text
    for expected in (
        "Ada Okafor",
        "07/14/1961",
        "Dr. Alan Smith",
        "Riverside Rehab",
        "Physical therapy",
        "M54.50",
        "Low back pain, unspecified",
        "2x/week for 6 weeks",
        "01/06/2025 to 04/05/2025",
        "Short-term goals",
        "Long-term goals",
        "Due 01/27/2025",
        "Due 02/17/2025",
        "I certify the need for these services furnished under this plan of treatment while under my care.",
        "Physician signature:",
        "Date:",
        "NPI: 1234567893",
        f"Return code: {RETURN_CODE}",
    ):
        assert expected in text, expected
    for activity in pt_plan.activities:
        assert activity.code in text and activity.display in text
    for goal in pt_plan.goals:
        assert goal.description in text and goal.key in text
    assert "Pain severity - 0-10 verbal numeric rating [Score] - Reported: 3 score" in text
    assert "1 session" in text  # the re-evaluation
    reader = pypdf.PdfReader(io.BytesIO(pt_pdf))
    assert 1 <= len(reader.pages) <= 2
    assert all(RETURN_CODE in page.extract_text() for page in reader.pages)  # the footer of every page
    assert "Ada" not in str(reader.metadata)  # no PHI in the document metadata


def _code128_widths(value: str) -> tuple[list[int], list[int]]:
    """(bar widths, space widths) in modules of the Code128 symbol of ``value`` (reportlab's encoder)."""
    from reportlab.graphics.barcode.code128 import Code128

    symbol = Code128(value)
    symbol.validate()
    symbol.encode()
    symbol.decompose()
    bars = [ord(c) - ord("A") + 1 for c in symbol.decomposed if c.isupper()]
    spaces = [ord(c) - ord("a") + 1 for c in symbol.decomposed if c.islower()]
    return bars, spaces


def test_pdf_has_the_return_code_as_a_code128_barcode(pt_pdf: bytes) -> None:
    content = pypdf.PdfReader(io.BytesIO(pt_pdf)).pages[-1].get_contents().get_data()
    rects = [
        (float(x), float(w)) for x, w in re.findall(rb"\bn ([\d.]+) [\d.]+ ([\d.]+) [\d.]+ re f\*", content)
    ]
    module = 0.4 * 72 / 25.4  # the bar width, 0.4 mm, in points
    bars = [round(w / module) for _, w in rects]
    spaces = [round((x2 - x1 - w1) / module) for (x1, w1), (x2, _) in zip(rects, rects[1:], strict=False)]
    assert (bars, spaces) == _code128_widths(RETURN_CODE)
    assert (bars, spaces) != _code128_widths("POC-7F3K-9Q2N")


def test_pdf_bytes_are_stable(pt_plan: PlanOfCare, pt_pdf: bytes) -> None:
    assert render(pt_plan) == pt_pdf
    reader = pypdf.PdfReader(io.BytesIO(pt_pdf))
    assert reader.metadata["/CreationDate"] == "D:20250106160000+00'00'"
    other_zone = GENERATED_AT.astimezone(timezone(timedelta(hours=-5)))
    later = render(pt_plan, generated_at=other_zone)  # the same instant, printed in another zone
    assert pypdf.PdfReader(io.BytesIO(later)).metadata["/CreationDate"] == "D:20250106160000+00'00'"
    assert render(pt_plan, return_code="POC-0000-0001") != pt_pdf


def test_pdf_of_other_disciplines_and_drafts() -> None:
    ot, _ = load_case("ot_hand_draft_revision")
    text = pdf_text(render(ot, referring_npi=None, therapist_name="Kim Lee, OTR/L"))
    assert "DRAFT" in text and "Occupational therapy" in text and "2-3x/week for 8 weeks" in text
    assert "Kim Lee, OTR/L" in text and "revision 2" in text and "40.5 lb" in text
    assert "1x/week" in text and "NPI:" in text
    slp, _ = load_case("slp_no_goals")
    text = pdf_text(render(slp))
    assert "Speech-language pathology" in text and "None recorded." in text and "92526" in text


def test_a_long_plan_takes_two_pages_and_keeps_the_signature_block_together(pt_plan: PlanOfCare) -> None:
    goals = [
        {
            "term": "short" if n % 2 else "long",
            "description": f"Goal number {n}: " + "functional task " * 12,
            "due_date": "2025-02-17",
        }
        for n in range(1, 15)
    ]
    long_plan = PlanOfCare.model_validate({**_raw(), "goals": goals})
    reader = pypdf.PdfReader(io.BytesIO(render(long_plan, patient_name="Se\u00e1n O'Brien & <Sons>")))
    assert len(reader.pages) == 2
    first, last = (" ".join(page.extract_text().split()) for page in reader.pages)
    assert "Se\u00e1n O'Brien & <Sons>" in first
    assert (
        "I certify the need" in last
        and "Physician signature:" in last
        and f"Return code: {RETURN_CODE}" in last
    )
    assert "I certify" not in first and RETURN_CODE in first  # the footer
    assert all("Patient: Se\u00e1n O'Brien & <Sons> \u00b7 DOB 07/14/1961" in page for page in (first, last))
    assert "Goal number 14" in last


def test_pdf_refuses_bad_arguments(pt_plan: PlanOfCare) -> None:
    with pytest.raises(ValueError, match="return_code"):
        render(pt_plan, return_code="bad code")
    with pytest.raises(ValueError, match="timezone-aware"):
        render(pt_plan, generated_at=datetime(2025, 1, 6))
    with pytest.raises(ValueError, match="NPI|npi"):
        render(pt_plan, referring_npi="123")


def test_document_reference(pt_bundle: dict[str, Any], pt_pdf: bytes) -> None:
    care_plan_ref = f"CarePlan/{pt_bundle['entry'][0]['resource']['id']}"
    now = datetime(2025, 1, 6, 16, 5, tzinfo=UTC)
    doc = plan_document_reference(
        pt_pdf, plan_ref=care_plan_ref, patient_ref="Patient/pat-1", now=now, return_code=RETURN_CODE
    )
    assert validate_resource(as_json(doc)) == []
    model_class("DocumentReference").model_validate(doc)
    assert doc["status"] == "current"
    assert doc["type"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "18776-5",
        "display": "Plan of care note",
    }
    assert doc["subject"] == {"reference": "Patient/pat-1"}
    assert doc["context"] == {"related": [{"reference": care_plan_ref}]}
    assert doc["date"] == "2025-01-06T16:05:00+00:00"
    assert doc["identifier"] == [
        {"system": "https://therapy-hub.example/sid/plan-return-code", "value": RETURN_CODE}
    ]
    attachment = doc["content"][0]["attachment"]
    data = base64.b64decode(attachment["data"], validate=True)
    assert data == pt_pdf
    assert attachment["contentType"] == "application/pdf"
    assert attachment["size"] == len(pt_pdf)
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(pt_pdf).digest()).decode()
    assert len(base64.b64decode(attachment["hash"])) == 20
    again = plan_document_reference(
        pt_pdf, plan_ref=care_plan_ref, patient_ref="Patient/pat-1", now=now, return_code=RETURN_CODE
    )
    assert again == doc and re.fullmatch(r"[0-9a-f\-]{36}", doc["id"])
    with pytest.raises(ValueError, match="PDF"):
        plan_document_reference(
            b"not a pdf",
            plan_ref=care_plan_ref,
            patient_ref="Patient/pat-1",
            now=now,
            return_code=RETURN_CODE,
        )
    with pytest.raises(ValueError, match="plan_ref"):
        plan_document_reference(
            pt_pdf, plan_ref="Goal/1", patient_ref="Patient/pat-1", now=now, return_code=RETURN_CODE
        )


# ----------------------------------------------------------------------------- against the hub


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_hub_stores_the_bundle_and_a_replay_updates_it(client: Any) -> None:
    plan, now = load_case("pt_low_back")
    bundle = build_plan_of_care(plan, now=now)
    headers = {"Content-Type": "application/fhir+json"}
    first = client.post("/fhir", content=jsonio.dumps(bundle), headers=headers)
    assert first.status_code == 200, first.text
    assert [e["response"]["status"] for e in first.json()["entry"]] == ["201 Created"] * len(bundle["entry"])
    replay = client.post("/fhir", content=jsonio.dumps(bundle), headers=headers)
    assert replay.status_code == 200, replay.text
    for response, entry in zip(replay.json()["entry"], bundle["entry"], strict=True):
        # the same resources, version 2: nothing was duplicated
        assert response["response"]["status"] == "200 OK" and response["response"]["etag"] == 'W/"2"'
        assert response["response"]["location"].endswith(f"{entry['request']['url']}/_history/2")
    stored = [jsonio.loads(client.get(f"/fhir/{e['request']['url']}").content) for e in bundle["entry"]]
    care_plan = stored[0]
    assert care_plan["goal"][0]["reference"].startswith("Goal/")  # urn:uuid rewritten by the transaction
    search = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in stored]}
    assert plan_summary(search).plan == plan

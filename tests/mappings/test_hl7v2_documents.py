"""Plan of care -> MDM^T02 / MDM^T08 and back: event choice, segment order, TXA fields, the summary
lines (goals, activities), the PDF as an ED attachment, escaping, refusals."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings.fhir import jsonio
from mappings.hl7v2 import (
    Hl7Error,
    OutboundHeader,
    PlanSummaryMessage,
    UntranslatableResource,
    parse,
    plan_to_mdm,
    read_plan_summary,
)
from mappings.hl7v2.structures import check_structure
from mappings.plan_of_care import (
    PlanOfCare,
    build_plan_of_care,
    plan_document_reference,
    plan_summary,
    render_plan_pdf,
)

DATA = Path(__file__).parent / "data" / "plan_of_care"
HEADER = OutboundHeader(
    sending_application="HUB",
    sending_facility="REHAB",
    receiving_application="EMR",
    receiving_facility="ORTHO",
)
NOW = datetime(2025, 1, 6, 16, 30, tzinfo=UTC)
RETURN_CODE = "POC-7F3K-9Q2M"
PLAN_SYSTEM = "https://riverside-rehab.example/sid/plan-of-care"
MRN = "urn:oid:2.16.840.1.113883.3.72"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def load_plan(case: str) -> PlanOfCare:
    raw = jsonio.loads((DATA / case / "input.json").read_bytes())
    return PlanOfCare.model_validate(raw["plan"])


def plan_resources(case: str = "pt_low_back") -> list[dict[str, Any]]:
    bundle = build_plan_of_care(load_plan(case), now=NOW)
    return [entry["resource"] for entry in jsonio.loads(jsonio.dumps(bundle))["entry"]]


CONTEXT: list[dict[str, Any]] = [
    {
        "resourceType": "Patient",
        "id": "pat-1",
        "identifier": [{"system": MRN, "value": "MRN-77"}],
        "name": [{"family": "Okafor", "given": ["Ada"]}],
        "birthDate": "1961-07-14",
        "gender": "female",
    },
    {
        "resourceType": "PractitionerRole",
        "id": "pt-role-1",
        "practitioner": {"reference": "Practitioner/pt-1"},
    },
    {
        "resourceType": "Practitioner",
        "id": "pt-1",
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1932102084"}],
        "name": [{"family": "Lee", "given": ["Kim", "J"], "prefix": ["Dr."]}],
    },
    {
        "resourceType": "ServiceRequest",
        "id": "ref-1",
        "identifier": [{"system": "https://ortho.example/referrals", "value": "REF-7781"}],
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/pat-1"},
    },
]


@pytest.fixture(scope="module")
def pdf() -> bytes:
    summary = plan_summary(build_plan_of_care(load_plan("pt_low_back"), now=NOW))
    return render_plan_pdf(
        summary,
        patient_name="Ada Okafor",
        patient_birth_date=date(1961, 7, 14),
        referring_physician="Dr. Alan Smith",
        clinic_name="Riverside Rehab",
        return_code=RETURN_CODE,
        generated_at=NOW,
        referring_npi="1234567893",
    )


def document_for(care_plan: dict[str, Any], pdf: bytes) -> dict[str, Any]:
    return plan_document_reference(
        pdf,
        plan_ref=f"CarePlan/{care_plan['id']}",
        patient_ref="Patient/pat-1",
        now=NOW,
        return_code=RETURN_CODE,
    )


def collection(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }


def mdm(payload: dict[str, Any], now: datetime = NOW) -> tuple[str, Any, str]:
    event, text = plan_to_mdm(payload, header=HEADER, control_id="CTL-9", now=now)
    assert "\n" not in text
    message = parse(text)
    check_structure("MDM_T02", message.names)
    return event, message, text


# ------------------------------------------------------------------------------------ T02


def test_t02_with_the_summary_and_the_pdf(pdf: bytes) -> None:
    resources = plan_resources()
    care_plan = resources[0]
    payload = collection(*resources, document_for(care_plan, pdf), *CONTEXT)
    event, message, text = mdm(payload)
    assert event == "T02"
    assert message.names == ["MSH", "EVN", "PID", "PV1", "TXA"] + ["OBX"] * 14
    msh, evn, pid, pv1, txa = (message.first(n) for n in ("MSH", "EVN", "PID", "PV1", "TXA"))
    assert msh is not None and evn is not None and pid is not None and pv1 is not None and txa is not None
    assert msh.components(9) == ["MDM", "T02", "MDM_T02"]
    assert (msh.get(7), msh.get(10)) == ("20250106163000+0000", "CTL-9")
    assert (evn.get(1), evn.get(2)) == ("T02", "20250106163000+0000")
    assert (pid.get(3), pid.get(5), pid.get(7)) == ("MRN-77", "Okafor", "19610714")
    assert (pv1.get(1), pv1.get(2)) == ("1", "O")
    assert (txa.get(1), txa.get(2), txa.get(3), txa.get(4), txa.get(6)) == (
        "1",
        "POC",
        "AP",
        "20250106",
        "20250106163000+0000",
    )
    assert txa.components(5)[:6] == ["1932102084", "Lee", "Kim", "J", "", "Dr."]
    assert txa.get(5, 1, 9) == "NPI"
    assert (txa.get(12), txa.get(12, 1, 3), txa.get(12, 1, 4)) == ("POC-1001", PLAN_SYSTEM, "URI")
    assert (txa.get(13), txa.get(21)) == ("", "")
    assert (txa.get(14), txa.get(14, 1, 3)) == ("REF-7781", "https://ortho.example/referrals")
    assert (txa.get(17), txa.get(19)) == ("AU", "AV")

    obxs = message.all("OBX")
    assert [o.get(1) for o in obxs] == [str(n) for n in range(1, 15)]
    assert {(o.components(3)[0], o.get(3, 1, 2), o.get(3, 1, 3), o.get(11)) for o in obxs} == {
        ("18776-5", "Plan of care note", "LN", "F")
    }
    assert [o.get(2) for o in obxs] == ["TX"] * 13 + ["ED"]
    assert [o.get(4) for o in obxs] == ["1"] * 13 + ["2"]
    lines = [o.get(5) for o in obxs[:-1]]
    assert lines[:4] == [
        "Physical therapy plan of care (revision 1, active)",
        "Period: 2025-01-06 to 2025-04-05",
        "Frequency: 2x/week for 6 weeks",
        "Diagnosis: M54.50 Low back pain, unspecified",
    ]
    assert "Short-term goal: Independent with home exercise program (due 2025-01-27)" in lines
    assert "Long-term goal: Return to full work duties as a warehouse clerk (due 2025-02-17)" in lines
    goals = [r for r in resources if r["resourceType"] == "Goal"]
    assert len(goals) == 4
    for goal in goals:
        assert any(goal["description"]["text"] in line for line in lines)
    assert "Activity: Physical therapy visits 2x/week for 6 weeks" in lines
    for code, display in (("97110", "Therapeutic exercise"), ("97164", "Physical therapy re-evaluation")):
        assert f"Activity: {code} {display}" in lines
    ed = obxs[-1]
    assert ed.components(5)[:4] == ["", "AP", "PDF", "Base64"]
    assert base64.b64decode(ed.get(5, 1, 5)) == pdf

    summary = read_plan_summary(text)
    assert summary == PlanSummaryMessage(
        event="T02",
        document_number=(PLAN_SYSTEM, "POC-1001"),
        parent_document_number=None,
        order_number=("https://ortho.example/referrals", "REF-7781"),
        document_type="POC",
        status="AU",
        availability="AV",
        activity_time="2025-01-06",
        author_npi="1932102084",
        lines=lines,
        pdf=pdf,
        content_type="application/pdf",
        patient_ref=None,
        patient_identifier=(MRN, "MRN-77"),
    )


def test_the_document_reference_as_focus_with_its_care_plan(pdf: bytes) -> None:
    resources = plan_resources()
    document = document_for(resources[0], pdf)
    event, message, text = mdm(collection(document, *resources))
    assert event == "T02"
    summary = read_plan_summary(text)
    assert summary.document_number == (PLAN_SYSTEM, "POC-1001")  # the plan's number, not the PDF's
    assert summary.pdf == pdf and len(summary.lines) == 13
    assert summary.patient_ref == "Patient/pat-1" and summary.author_npi is None  # nothing in context
    assert summary.activity_time == "2025-01-06"


def test_the_pdf_alone(pdf: bytes) -> None:
    document = document_for(plan_resources()[0], pdf)
    event, message, text = mdm(document)
    assert event == "T02"
    assert message.names == ["MSH", "EVN", "PID", "PV1", "TXA", "OBX"]
    txa, pid = message.first("TXA"), message.first("PID")
    assert txa is not None and pid is not None
    assert (txa.get(3), txa.get(4), txa.get(12), txa.get(17), txa.get(19)) == (
        "AP",
        "20250106163000+0000",
        RETURN_CODE,
        "AU",
        "AV",
    )
    assert (pid.get(3), pid.get(3, 1, 4), pid.get(3, 1, 5)) == ("pat-1", "THFHIR", "PI")
    summary = read_plan_summary(text)
    assert summary.lines == [] and summary.pdf == pdf
    assert summary.document_number == ("https://therapy-hub.example/sid/plan-return-code", RETURN_CODE)
    assert summary.activity_time == "2025-01-06T16:30:00Z"


def test_the_care_plan_alone_sends_the_lines_it_can() -> None:
    care_plan = plan_resources()[0]
    event, message, text = mdm(care_plan)
    txa = message.first("TXA")
    assert txa is not None and txa.get(3) == "TX"
    summary = read_plan_summary(text)
    assert summary.pdf is None and summary.content_type is None
    assert summary.lines == [
        "Physical therapy plan of care (revision 1, active)",
        "Period: 2025-01-06 to 2025-04-05",
        "Frequency: 2x/week for 6 weeks",
        "Diagnosis: M54.50 Low back pain, unspecified",  # the code from the visits' reasonCode
        "Activity: Physical therapy visits 2x/week for 6 weeks",  # goals and ServiceRequests: not here
    ]


# ------------------------------------------------------------------------------------ T08 / statuses


def test_t08_for_a_later_version(pdf: bytes) -> None:
    resources = plan_resources()
    resources[0]["meta"] = {"versionId": "2"}
    event, message, text = mdm(collection(*resources))
    assert event == "T08"
    msh, evn, txa = message.msh, message.first("EVN"), message.first("TXA")
    assert evn is not None and txa is not None
    assert msh.components(9) == ["MDM", "T08", "MDM_T02"] and evn.get(1) == "T08"
    assert txa.components(12) == ["POC-1001", "", PLAN_SYSTEM, "URI"] and txa.get(13) == ""
    assert txa.get(21) == "Plan of care updated"  # the same document (same number), edited
    summary = read_plan_summary(text)
    assert summary.event == "T08" and summary.parent_document_number is None
    # a PDF at a later version is an edit too
    document = document_for(plan_resources()[0], pdf)
    document["meta"] = {"versionId": "3"}
    assert plan_to_mdm(document, header=HEADER, control_id="C", now=NOW)[0] == "T08"
    document["meta"] = {"versionId": "1"}
    assert plan_to_mdm(document, header=HEADER, control_id="C", now=NOW)[0] == "T02"


def test_a_new_revision_replaces_the_signed_one() -> None:
    """Revision 2 is a new document (T10) that replaces revision 1: its own number, the parent named."""
    resources = plan_resources("ot_hand_draft_revision")
    event, message, text = mdm(collection(*resources))
    assert event == "T10"  # revision 2, though the CarePlan resource is new to the receiver
    txa = message.first("TXA")
    assert txa is not None and (txa.get(17), txa.get(19), txa.get(21)) == (
        "IP",
        "AV",
        "Plan of care revision 2 replaces revision 1",
    )
    assert txa.get(12).endswith("-R2") and txa.get(13) == txa.get(12)[: -len("-R2")]
    summary = read_plan_summary(text)
    assert summary.event == "T10" and summary.parent_document_number is not None
    assert summary.parent_document_number[1] + "-R2" == summary.document_number[1]
    assert {o.get(11) for o in message.all("OBX")} == {"P"}
    assert read_plan_summary(text).lines[0] == "Occupational therapy plan of care (revision 2, draft)"


@pytest.mark.parametrize(
    ("plan_status", "doc_changes", "completion", "availability"),
    [
        ("active", {}, "AU", "AV"),
        ("completed", {}, "AU", "AV"),
        ("revoked", {}, "AU", "OB"),
        ("entered-in-error", {}, "AU", "CA"),
        ("active", {"status": "superseded"}, "AU", "OB"),
        ("revoked", {"status": "entered-in-error"}, "AU", "CA"),
        ("active", {"docStatus": "preliminary"}, "IP", "AV"),
        ("draft", {}, "IP", "AV"),
    ],
)
def test_completion_and_availability(
    pdf: bytes, plan_status: str, doc_changes: dict[str, str], completion: str, availability: str
) -> None:
    resources = plan_resources()
    resources[0]["status"] = plan_status
    document = {**document_for(resources[0], pdf), **doc_changes}
    _, _, text = mdm(collection(document, *resources))
    summary = read_plan_summary(text)
    assert (summary.status, summary.availability) == (completion, availability)


# ------------------------------------------------------------------------------------ text and data


def test_delimiters_and_line_breaks_in_goal_text(pdf: bytes) -> None:
    resources = plan_resources()
    goal = next(r for r in resources if r["resourceType"] == "Goal")
    goal["description"]["text"] = "Lift 10 lb | floor ^ waist ~ twice \\ daily & safely\nwithout pain"
    _, _, text = mdm(collection(*resources))
    assert "Lift 10 lb \\F\\ floor \\S\\ waist \\R\\ twice \\E\\ daily \\T\\ safely without pain" in text
    lines = read_plan_summary(text).lines
    assert (
        "Short-term goal: Lift 10 lb | floor ^ waist ~ twice \\ daily & safely without pain (due 2025-01-27)"
        in lines
    )


_chars = st.characters(blacklist_categories=("Cs",))


@FAST
@given(descriptions=st.lists(st.text(_chars, min_size=1, max_size=40), min_size=4, max_size=4))
def test_goal_lines_round_trip(descriptions: list[str]) -> None:
    resources = plan_resources()
    goals = [r for r in resources if r["resourceType"] == "Goal"]
    for goal, description in zip(goals, descriptions, strict=True):
        goal["description"]["text"] = description
    _, text = plan_to_mdm(collection(*resources), header=HEADER, control_id="C", now=NOW)
    assert "\n" not in text
    lines = read_plan_summary(text).lines
    expected = [
        f"{term}-term goal: {' '.join(d.split())} (due {due})"
        for d, term, due in zip(
            descriptions,
            ["Short", "Short", "Long", "Long"],
            ["2025-01-27", "2025-01-27", "2025-02-17", "2025-02-17"],
            strict=True,
        )
        if d.split()
    ]
    assert [line for line in lines if "-term goal: " in line] == expected


@FAST
@given(data=st.binary(max_size=512))
def test_pdf_bytes_round_trip(data: bytes) -> None:
    document = {
        "resourceType": "DocumentReference",
        "id": "doc-1",
        "identifier": [{"system": "https://rehab.example/docs", "value": "D-1"}],
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "18776-5"}]},
        "subject": {"reference": "Patient/pat-1"},
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "data": base64.b64encode(b"%PDF-" + data).decode(),
                }
            }
        ],
    }
    kept = copy.deepcopy(document)
    _, text = plan_to_mdm(document, header=HEADER, control_id="C", now=NOW)
    assert document == kept
    summary = read_plan_summary(text)
    assert summary.pdf == b"%PDF-" + data and summary.content_type == "application/pdf"
    assert summary.document_number == ("https://rehab.example/docs", "D-1")


def test_aware_now_in_another_zone_is_written_in_utc() -> None:
    now = datetime(2025, 1, 6, 11, 30, tzinfo=timezone(timedelta(hours=-5)))
    _, message, _ = mdm(plan_resources()[0], now=now)
    evn = message.first("EVN")
    assert evn is not None and evn.get(2) == message.msh.get(7) == "20250106163000+0000"


# ------------------------------------------------------------------------------------ refusals


def test_refusals(pdf: bytes) -> None:
    care_plan = plan_resources()[0]
    document = document_for(care_plan, pdf)
    cases: list[tuple[dict[str, Any], str]] = [
        (CONTEXT[0], "not a plan of care"),
        (collection(plan_resources()[1], care_plan), "not a plan of care"),  # a Goal first
        ({**document, "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]}}, "18776-5"),
        ({**document, "content": [{"attachment": {"contentType": "application/pdf"}}]}, "no attached data"),
        ({k: v for k, v in care_plan.items() if k != "subject"}, "subject"),
        ({k: v for k, v in care_plan.items() if k != "identifier"}, "TXA-12"),
        ({"resourceType": "Bundle", "type": "collection", "entry": []}, "not a plan of care"),
    ]
    for payload, message in cases:
        with pytest.raises(UntranslatableResource, match=message) as info:
            plan_to_mdm(payload, header=HEADER, control_id="C", now=NOW)
        assert "Okafor" not in str(info.value) and "POC-1001" not in str(info.value)


def test_read_errors(pdf: bytes) -> None:
    _, text = plan_to_mdm(document_for(plan_resources()[0], pdf), header=HEADER, control_id="C", now=NOW)
    lines = text.rstrip("\r").split("\r")
    obx = lines[-1]
    bad_base64 = "\r".join([*lines[:-1], obx.replace("^Base64^JVBER", "^Base64^%%%")]) + "\r"
    with pytest.raises(Hl7Error) as info:
        read_plan_summary(bad_base64)
    assert (info.value.code, str(info.value.location)) == (102, "OBX^1^5^1^5")
    with pytest.raises(Hl7Error) as info:
        read_plan_summary(text.replace("^Base64^", "^Hex^"))
    assert (info.value.code, str(info.value.location)) == (102, "OBX^1^5^1^4")
    with pytest.raises(Hl7Error) as info:
        read_plan_summary(text.replace("MDM^T02^MDM_T02", "MDM^T01^MDM_T01"))
    assert info.value.code == 103
    with pytest.raises(Hl7Error) as info:
        read_plan_summary(text.replace(f"|{RETURN_CODE}^", "|^"))
    assert info.value.code == 101
    without_txa = "\r".join(line for line in lines if not line.startswith("TXA")) + "\r"
    with pytest.raises(Hl7Error) as info:
        read_plan_summary(without_txa)
    assert info.value.code == 100

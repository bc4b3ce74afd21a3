"""Plan of care: input -> FHIR transaction Bundle -> summary -> certification PDF -> DocumentReference.

Golden cases live in ``data/plan_of_care/<case>/`` (``input.json``: ``now`` and ``plan``;
``expected.json``: the Bundle), compared as parsed JSON. After a deliberate change of the mapping,
rewrite them with ``REGENERATE_GOLDEN=1 pytest tests/mappings`` and review the diff.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import os
import re
import typing
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pypdf
import pytest
from pydantic import ValidationError

from mappings.fhir import jsonio, model_class
from mappings.fhir.validation import validate_resource
from mappings.plan_of_care import (
    PlanBundleError,
    PlanOfCare,
    build_plan_of_care,
    deterministic_id,
    plan_document_reference,
    plan_summary,
    render_plan_pdf,
)
from mappings.plan_of_care.codes import CPT, GOAL_ACHIEVEMENT_SYSTEM, GOAL_TERM_SYSTEM, UCUM

DATA = Path(__file__).parent / "data" / "plan_of_care"
CASES = sorted(p.name for p in DATA.iterdir() if (p / "input.json").exists())
RETURN_CODE = "POC-7F3K-9Q2M"
GENERATED_AT = datetime(2025, 1, 6, 16, 0, tzinfo=UTC)


def load_case(case: str) -> tuple[PlanOfCare, datetime]:
    raw = jsonio.loads((DATA / case / "input.json").read_bytes())
    return PlanOfCare.model_validate(raw["plan"]), datetime.fromisoformat(raw["now"])


def as_json(value: Any) -> Any:
    """What goes over the wire, parsed back (decimals stay Decimal)."""
    return jsonio.loads(jsonio.dumps(value))


def resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry["resource"] for entry in bundle["entry"]]


def of_type(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [r for r in resources(bundle) if r["resourceType"] == resource_type]


def external_refs(plan: PlanOfCare) -> set[str]:
    refs = {plan.patient, plan.referral, plan.author, plan.organization}
    if plan.diagnosis.reference:
        refs.add(plan.diagnosis.reference)
    return refs


@pytest.fixture(scope="module")
def pt_plan() -> PlanOfCare:
    return load_case("pt_low_back")[0]


@pytest.fixture(scope="module")
def pt_bundle(pt_plan: PlanOfCare) -> dict[str, Any]:
    return build_plan_of_care(pt_plan, now=datetime(2025, 1, 6, 15, 30, tzinfo=UTC))


# ----------------------------------------------------------------------------- the Bundle


@pytest.mark.parametrize("case", CASES)
def test_golden_bundle(case: str) -> None:
    plan, now = load_case(case)
    bundle = as_json(build_plan_of_care(plan, now=now))
    expected_file = DATA / case / "expected.json"
    if os.environ.get("REGENERATE_GOLDEN"):
        expected_file.write_text(jsonio.dumps(bundle) + "\n")
    assert bundle == jsonio.loads(expected_file.read_bytes())


@pytest.mark.parametrize("case", CASES)
def test_every_resource_validates(case: str) -> None:
    plan, now = load_case(case)
    bundle = as_json(build_plan_of_care(plan, now=now))
    model_class("Bundle").model_validate(bundle)
    assert bundle["type"] == "transaction"
    for resource in resources(bundle):
        model_class(resource["resourceType"]).model_validate(resource)
        assert validate_resource(resource) == [], resource["resourceType"]


def _reference_fields(model: Any, node: Any, path: str) -> typing.Iterator[tuple[str, str, list[str]]]:
    """(path, reference, allowed target types) of every Reference below ``node``."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _reference_fields(model, item, f"{path}[{index}]")
        return
    if not isinstance(node, dict):
        return
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    for key, value in node.items():
        info = fields.get(key)
        if info is None:
            continue
        allowed = (info.json_schema_extra or {}).get("enum_reference_types")
        items = value if isinstance(value, list) else [value]
        if allowed:
            for index, item in enumerate(items):
                yield f"{path}.{key}[{index}]", item["reference"], list(allowed)
            continue
        element = _element_model(info.annotation)
        if element is not None and isinstance(value, dict | list):
            yield from _reference_fields(element, value, f"{path}.{key}")


def _element_model(annotation: Any) -> Any:
    """The element model inside ``Optional[List[X]]`` and the like, or None for primitives."""
    while True:
        get_model = getattr(annotation, "get_model_klass", None)
        if get_model is not None:
            return get_model()
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if not args:
            return None
        annotation = args[0]


@pytest.mark.parametrize("case", CASES)
def test_every_reference_resolves_to_an_entry_or_a_given_reference(case: str) -> None:
    plan, now = load_case(case)
    bundle = build_plan_of_care(plan, now=now)
    by_url = {entry["fullUrl"]: entry["resource"]["resourceType"] for entry in bundle["entry"]}
    allowed_external = external_refs(plan)
    seen = 0
    for resource in resources(bundle):
        for path, reference, allowed in _reference_fields(
            model_class(resource["resourceType"]), resource, resource["resourceType"]
        ):
            seen += 1
            if reference in by_url:
                target = by_url[reference]
            else:
                assert reference in allowed_external, path
                target = reference.rstrip("/").split("/")[-2]
            # R4 target types, which fhir.resources does not check (CarePlan.basedOn is CarePlan only)
            assert target in allowed or "Resource" in allowed, (path, target, allowed)
    assert seen > 10
    # and every external reference is used
    text = jsonio.dumps(bundle)
    assert all(f'"{ref}"' in text for ref in allowed_external)


def test_entries_are_puts_to_deterministic_ids(pt_plan: PlanOfCare, pt_bundle: dict[str, Any]) -> None:
    system, value = pt_plan.identifier.system, pt_plan.identifier.value
    for entry in pt_bundle["entry"]:
        resource = entry["resource"]
        identifier = resource["identifier"][0]
        assert resource["id"] == deterministic_id(
            resource["resourceType"], identifier["system"], identifier["value"]
        )
        assert entry["fullUrl"] == f"urn:uuid:{resource['id']}"
        assert entry["request"] == {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
        assert identifier["system"] == system
    values = {r["identifier"][0]["value"] for r in resources(pt_bundle)}
    assert {value, f"{value}/condition/M54.50", f"{value}/goal/STG1", f"{value}/goal/LTG-work"} <= values
    assert f"{value}/activity/97110" in values
    assert len({entry["fullUrl"] for entry in pt_bundle["entry"]}) == len(pt_bundle["entry"])


def test_same_plan_gives_the_same_bundle(pt_plan: PlanOfCare, pt_bundle: dict[str, Any]) -> None:
    now = datetime(2025, 1, 6, 15, 30, tzinfo=UTC)
    again = PlanOfCare.model_validate_json(pt_plan.model_dump_json())
    assert jsonio.dumps(build_plan_of_care(again, now=now)) == jsonio.dumps(pt_bundle)
    later = build_plan_of_care(pt_plan, now=now + timedelta(days=3))
    assert later["timestamp"] != pt_bundle["timestamp"]
    assert later["entry"] == pt_bundle["entry"]  # now is only the Bundle's timestamp


def test_a_revision_updates_the_same_resources(pt_plan: PlanOfCare, pt_bundle: dict[str, Any]) -> None:
    revised = pt_plan.model_copy(update={"revision": 2, "period_end": date(2025, 4, 30), "duration_weeks": 8})
    bundle = build_plan_of_care(revised, now=datetime(2025, 2, 17, tzinfo=UTC))
    assert [e["fullUrl"] for e in bundle["entry"]] == [e["fullUrl"] for e in pt_bundle["entry"]]
    care_plan = of_type(bundle, "CarePlan")[0]
    assert care_plan["extension"] == [
        {"url": "https://therapy-hub.example/StructureDefinition/plan-revision", "valueInteger": 2}
    ]
    other = pt_plan.model_copy(
        update={"identifier": pt_plan.identifier.model_copy(update={"value": "POC-1002"})}
    )
    other_urls = {e["fullUrl"] for e in build_plan_of_care(other, now=GENERATED_AT)["entry"]}
    assert not other_urls & {e["fullUrl"] for e in pt_bundle["entry"]}


def test_care_plan(pt_plan: PlanOfCare, pt_bundle: dict[str, Any]) -> None:
    care_plan = of_type(pt_bundle, "CarePlan")[0]
    assert (care_plan["status"], care_plan["intent"]) == ("active", "plan")
    assert care_plan["category"][0]["coding"][0]["code"] == "91251008"
    assert care_plan["subject"] == {"reference": "Patient/pat-1"}
    assert care_plan["period"] == {"start": "2025-01-06", "end": "2025-04-05"}
    assert care_plan["author"] == {"reference": "PractitionerRole/pt-role-1"}
    assert care_plan["supportingInfo"] == [{"reference": "ServiceRequest/ref-1"}]
    condition = of_type(pt_bundle, "Condition")[0]
    assert care_plan["addresses"][0]["reference"] == f"urn:uuid:{condition['id']}"
    assert condition["code"]["coding"][0] == {
        "system": "http://hl7.org/fhir/sid/icd-10-cm",
        "code": "M54.50",
        "display": "Low back pain, unspecified",
    }
    assert [g["reference"] for g in care_plan["goal"]] == [
        f"urn:uuid:{g['id']}" for g in of_type(pt_bundle, "Goal")
    ]
    requests = of_type(pt_bundle, "ServiceRequest")
    assert [a["reference"]["reference"] for a in care_plan["activity"][1:]] == [
        f"urn:uuid:{r['id']}" for r in requests
    ]
    visits = care_plan["activity"][0]["detail"]
    assert visits["kind"] == "Appointment" and visits["status"] == "scheduled"
    assert visits["scheduledTiming"]["repeat"]["frequency"] == 2


def test_service_requests_are_2x_a_week_for_6_weeks(pt_plan: PlanOfCare, pt_bundle: dict[str, Any]) -> None:
    care_plan_url = pt_bundle["entry"][0]["fullUrl"]
    by_code = {r["code"]["coding"][0]["code"]: r for r in of_type(pt_bundle, "ServiceRequest")}
    assert list(by_code) == ["97110", "97140", "97530", "97164"]
    exercise = by_code["97110"]
    assert (exercise["status"], exercise["intent"]) == ("active", "plan")
    assert exercise["code"]["coding"][0] == {
        "system": CPT,
        "code": "97110",
        "display": "Therapeutic exercise",
    }
    assert exercise["occurrenceTiming"] == {
        "repeat": {
            "boundsDuration": {"value": 6, "unit": "wk", "system": UCUM, "code": "wk"},
            "frequency": 2,
            "period": 1,
            "periodUnit": "wk",
        }
    }
    assert exercise["basedOn"] == [{"reference": "ServiceRequest/ref-1"}, {"reference": care_plan_url}]
    assert exercise["requester"] == {"reference": "PractitionerRole/pt-role-1"}
    assert exercise["performer"] == [{"reference": "Organization/riverside"}]
    assert exercise["reasonCode"][0]["coding"][0]["code"] == "M54.50"
    reevaluation = by_code["97164"]["occurrenceTiming"]["repeat"]
    assert reevaluation == {
        "boundsDuration": {"value": 6, "unit": "wk", "system": UCUM, "code": "wk"},
        "count": 1,
    }


def test_own_and_range_frequencies() -> None:
    plan, now = load_case("ot_hand_draft_revision")
    bundle = build_plan_of_care(plan, now=now)
    timing = {
        r["code"]["coding"][0]["code"]: r["occurrenceTiming"]["repeat"]
        for r in of_type(bundle, "ServiceRequest")
    }
    assert (timing["97530"]["frequency"], timing["97530"]["frequencyMax"]) == (2, 3)
    assert timing["97140"]["frequency"] == 1 and "frequencyMax" not in timing["97140"]
    assert timing["97110"]["frequency"] == 2 and "frequencyMax" not in timing["97110"]
    assert all(r["status"] == "draft" for r in of_type(bundle, "ServiceRequest"))
    care_plan = of_type(bundle, "CarePlan")[0]
    assert care_plan["status"] == "draft" and care_plan["description"] == "2-3x/week for 8 weeks"
    assert care_plan["activity"][0]["detail"]["status"] == "not-started"
    # the diagnosis has a Condition of its own: no Condition in the Bundle
    assert of_type(bundle, "Condition") == []
    assert care_plan["addresses"] == [{"reference": "Condition/dx-77", "display": "Pain in right hand"}]


def test_goals_short_and_long(pt_bundle: dict[str, Any]) -> None:
    goals = of_type(pt_bundle, "Goal")
    terms = [g["category"][0]["coding"][0] for g in goals]
    assert [t["system"] for t in terms] == [GOAL_TERM_SYSTEM] * 4
    assert [t["code"] for t in terms] == ["short-term", "short-term", "long-term", "long-term"]
    pain, hep, walk, work = goals
    assert pain["lifecycleStatus"] == "active"
    assert pain["achievementStatus"]["coding"] == [
        {"system": GOAL_ACHIEVEMENT_SYSTEM, "code": "in-progress", "display": "In Progress"}
    ]
    assert pain["description"] == {
        "text": "Decrease low back pain to 3/10 or less when sitting for 30 minutes"
    }
    assert pain["target"] == [
        {
            "measure": {
                "coding": [
                    {
                        "system": "http://loinc.org",
                        "code": "72514-3",
                        "display": "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
                    }
                ]
            },
            "detailQuantity": {"value": Decimal(3), "unit": "score", "system": UCUM, "code": "{score}"},
            "dueDate": "2025-01-27",
        }
    ]
    assert hep["target"] == [{"dueDate": "2025-01-27"}]
    assert walk["target"][0]["detailString"] == "community distances without assistive device"
    assert work["lifecycleStatus"] == "accepted" and "achievementStatus" not in work
    condition_url = f"urn:uuid:{of_type(pt_bundle, 'Condition')[0]['id']}"
    assert all(g["addresses"] == [{"reference": condition_url}] for g in goals)
    assert [g["identifier"][0]["value"].rsplit("/", 1)[1] for g in goals] == [
        "STG1",
        "STG2",
        "LTG1",
        "LTG-work",
    ]


def test_now_must_be_timezone_aware(pt_plan: PlanOfCare) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_plan_of_care(pt_plan, now=datetime(2025, 1, 6, 15, 30))


# ----------------------------------------------------------------------------- the input model


def _raw(case: str = "pt_low_back") -> dict[str, Any]:
    return jsonio.loads((DATA / case / "input.json").read_bytes())["plan"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"patient": "Practitioner/1"}, "reference to a Patient"),
        ({"referral": "ServiceRequest/has space"}, "reference to a ServiceRequest"),
        ({"period_end": "2025-01-01"}, "period_end is before period_start"),
        ({"frequency_max_per_week": 2}, "must exceed"),
        ({"discipline": "RT"}, "discipline"),
        ({"activities": []}, "at least 1"),
        ({"activities": [{"code": "97110", "display": "a"}, {"code": "97110", "display": "b"}]}, "once"),
        ({"activities": [{"code": "9711", "display": "a"}]}, "pattern"),
        ({"diagnosis": {"code": "U07.1x", "display": "x"}}, "pattern"),
        ({"goals": [{"term": "short", "description": "d", "detail_string": "x"}]}, "measure"),
        ({"goals": [{"term": "mid", "description": "d"}]}, "term"),
        (
            {
                "goals": [
                    {"key": "G", "term": "short", "description": "a"},
                    {"key": "G", "term": "long", "description": "b"},
                ]
            },
            "unique",
        ),
        ({"unknown": 1}, "Extra inputs"),
    ],
)
def test_model_refuses_bad_input(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PlanOfCare.model_validate({**_raw(), **change})


def test_model_normalisations() -> None:
    plan = PlanOfCare.model_validate(
        {
            **_raw(),
            "activities": [
                {"code": "97110", "display": "Therapeutic exercise", "frequency_per_week": 2},
                {"code": "97140", "display": "Manual therapy", "frequency_per_week": 2, "count": 4},
            ],
            "goals": [
                {"term": "long", "description": "a"},
                {"term": "short", "description": "b"},
                {"term": "long", "description": "c"},
            ],
        }
    )
    assert plan.activities[0].frequency_per_week is None  # the plan's own frequency
    assert plan.activities[1].frequency_per_week == 2  # with a count it says something
    assert [g.key for g in plan.goals] == ["LTG1", "STG1", "LTG2"]


# ----------------------------------------------------------------------------- reading back


def _variants() -> list[PlanOfCare]:
    plans = [load_case(case)[0] for case in CASES]
    base = plans[0]
    plans.append(base.model_copy(update={"goals": [], "created": None, "status": "draft"}))
    plans.append(
        PlanOfCare.model_validate(
            {
                **_raw(),
                "patient": "urn:uuid:0d6e37c4-3b1c-4f49-9d5c-3d35cc1a7e22",
                "frequency_per_week": 5,
                "frequency_max_per_week": 7,
                "duration_weeks": 1,
                "activities": [
                    {
                        "code": "97750",
                        "display": "Physical performance test",
                        "count": 2,
                        "frequency_per_week": 1,
                    }
                ],
                "goals": [
                    {
                        "term": "long",
                        "description": "x",
                        "measure": {"system": "http://loinc.org", "code": "72514-3"},
                        "detail_quantity": {"value": "0.125", "unit": "score"},
                        "achievement_status": "not-attainable",
                        "lifecycle_status": "on-hold",
                    }
                ],
            }
        )
    )
    return plans


@pytest.mark.parametrize("plan", _variants(), ids=lambda p: f"{p.identifier.value}-{p.status}-{len(p.goals)}")
def test_round_trip_keeps_every_field(plan: PlanOfCare) -> None:
    bundle = build_plan_of_care(plan, now=GENERATED_AT)
    summary = plan_summary(as_json(bundle))
    assert summary.plan == plan
    assert summary.plan.model_dump() == plan.model_dump()
    assert summary.care_plan_ref == f"CarePlan/{bundle['entry'][0]['resource']['id']}"
    # and the summary builds the very same Bundle again
    assert build_plan_of_care(summary.plan, now=GENERATED_AT) == bundle


def _as_stored(bundle: dict[str, Any]) -> dict[str, Any]:
    """The Bundle as a server returns it after the transaction: references rewritten to Type/id."""
    mapping = {e["fullUrl"]: e["request"]["url"] for e in bundle["entry"]}
    text = jsonio.dumps(bundle)
    for urn, url in mapping.items():
        text = text.replace(f'"{urn}"', f'"{url}"')
    stored = jsonio.loads(text)
    entries = [
        {
            "fullUrl": f"https://hub.example/fhir/{e['request']['url']}",
            "resource": e["resource"],
            "search": {"mode": "match" if e["resource"]["resourceType"] == "CarePlan" else "include"},
        }
        for e in stored["entry"]
    ]
    return {"resourceType": "Bundle", "type": "searchset", "entry": list(reversed(entries))}


@pytest.mark.parametrize("case", CASES)
def test_summary_of_a_search_result(case: str) -> None:
    plan, now = load_case(case)
    summary = plan_summary(_as_stored(build_plan_of_care(plan, now=now)))
    assert summary.plan == plan


def test_summary_refuses_an_incomplete_bundle(pt_bundle: dict[str, Any]) -> None:
    without_goals = copy.deepcopy(pt_bundle)
    without_goals["entry"] = [e for e in without_goals["entry"] if e["resource"]["resourceType"] != "Goal"]
    with pytest.raises(PlanBundleError, match=r"CarePlan.goal\[0\] does not resolve to a Goal"):
        plan_summary(without_goals)
    with pytest.raises(PlanBundleError, match="exactly one CarePlan"):
        plan_summary({"resourceType": "Bundle", "type": "collection", "entry": []})
    with pytest.raises(PlanBundleError, match="not a Bundle"):
        plan_summary({"resourceType": "CarePlan"})


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

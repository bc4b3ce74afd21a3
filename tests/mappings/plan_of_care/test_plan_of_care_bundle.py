"""Plan of care: the FHIR transaction Bundle (golden cases, validation, references, ids, resources)."""

from __future__ import annotations

import os
import typing
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from mappings.fhir import jsonio, model_class
from mappings.fhir.validation import validate_resource
from mappings.plan_of_care import (
    PlanOfCare,
    build_plan_of_care,
    deterministic_id,
)
from mappings.plan_of_care.codes import CPT, GOAL_ACHIEVEMENT_SYSTEM, GOAL_TERM_SYSTEM, UCUM
from tests.mappings.plan_of_care.conftest import (
    CASES,
    DATA,
    GENERATED_AT,
    as_json,
    external_refs,
    load_case,
    of_type,
    resources,
)

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

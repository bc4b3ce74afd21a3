"""CarePlan + Patient -> the HEP vendor's patient and program bodies."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from mappings.hep.program import (
    ProgramError,
    activity_external_id,
    exercise_external_ids,
    patient_body,
    program_push,
    read_resources,
)
from tests.connectors.hep.support import PATIENT, SR_EXERCISE, SR_SERVICE, bridge, bundle, care_plan, squat

TODAY = date(2026, 3, 10)


def test_hub_care_plan_becomes_a_program_with_every_field() -> None:
    push = program_push(bundle(care_plan()), today=TODAY)
    assert push.patient == {"external_id": "pat-7", "first_name": "Ana", "last_name": "Rivera",
                            "email": "ana@example.org", "phone": "+15559870000", "birth_date": "1961-04-02"}
    program = push.program
    assert program is not None and push.program_external_id == "cp-1" and push.skipped is None
    assert {k: v for k, v in program.items() if k != "exercises"} == {
        "title": "Physical therapy plan of care", "starts_on": "2026-03-02", "ends_on": "2026-04-13",
        "frequency": {"per_week": 7}, "notes": "Precaution: no lifting over 10 lb"}
    bridge_id = activity_external_id("cp-1", "https://therapy-hub.example/CodeSystem/hep-exercise|BR-01")
    # the visits (Appointment) and the billable 97110 service are not home exercises
    assert program["exercises"] == [
        {"external_id": bridge_id, "code": "BR-01", "name": "Bridging", "sets": 3, "reps": 10, "hold_seconds": 5,
         "per_day": 2, "days_per_week": 5, "instructions": "Lie on your back, knees bent; lift the hips.",
         "media": [{"kind": "video", "url": "https://media.example/bridge.mp4"}]},
        {"external_id": activity_external_id("cp-1", f"{'https://therapy-hub.example/CodeSystem/hep-exercise'}|SQ-02"),
         "code": "SQ-02", "name": "Mini squat", "sets": 2, "load": {"value": 5, "unit": "lb"}, "reps": 12,
         "days_per_week": 3},
        {"external_id": "sr-hamstring", "code": "HS-03", "name": "Hamstring stretch", "per_day": 1,
         "days_per_week": 7, "instructions": "3 x 2, hold 30 seconds each side", "sets": 3, "reps": 2,
         "hold_seconds": 30, "media": [{"kind": "image", "url": "https://media.example/hamstring.png"}]},
    ]
    assert push.removed == ()


def test_exercise_ids_are_stable_across_versions_and_order() -> None:
    first = exercise_external_ids(read_resources(bundle(care_plan(bridge(), squat()))))
    again = exercise_external_ids(read_resources(bundle(care_plan(squat(), bridge(sets=4)))))
    assert sorted(first) == sorted(again) and len(set(first)) == 2


def test_removed_exercise_is_listed_against_the_previous_version() -> None:
    before = bundle(care_plan())
    after = bundle(care_plan(bridge(), {"reference": {"reference": "ServiceRequest/sr-hamstring"}}))
    push = program_push(after, before, today=TODAY)
    squat_id = activity_external_id("cp-1", "https://therapy-hub.example/CodeSystem/hep-exercise|SQ-02")
    assert push.removed == (squat_id,)
    # a cancelled activity counts as removed too; a request missing from the delivery does not
    cancelled = squat()
    cancelled["detail"]["status"] = "cancelled"
    missing = bundle(care_plan(bridge(), cancelled, {"reference": {"reference": "ServiceRequest/sr-hamstring"}}),
                     PATIENT)
    assert program_push(missing, before, today=TODAY).removed == (squat_id,)


def test_another_systems_care_plan_is_read_liberally() -> None:
    plan: dict[str, Any] = {
        "resourceType": "CarePlan", "id": "ext-9", "status": "active", "intent": "plan",
        "subject": {"reference": "https://emr.example/fhir/Patient/pat-7/_history/3"},
        "created": "2026-02-20T10:00:00-05:00",
        "contained": [{"resourceType": "ServiceRequest", "id": "c1", "status": "active", "intent": "order",
                       "subject": {"reference": "Patient/pat-7"},
                       "code": {"text": "Wall push-ups"}, "category": [{"text": "Home exercise"}],
                       "note": [{"text": "2 sets of 15 reps"}]}],
        "activity": [
            {"id": "a-heel", "detail": {"status": "not-started", "code": {"text": "Heel raises"},
                                        "category": [{"text": "HEP"}],
                                        "description": "3 sets of 12 reps, hold 2 s at the top",
                                        "scheduledTiming": {"repeat": {"frequency": 3, "period": 1,
                                                                       "periodUnit": "wk"}}}},
            {"detail": {"status": "scheduled", "code": {"text": "Ice pack"}}},  # not an exercise
            {"reference": {"reference": "#c1"}},
        ]}
    push = program_push(bundle(plan, PATIENT), today=TODAY)
    assert push.program is not None
    assert push.program["starts_on"] == "2026-02-20" and "ends_on" not in push.program
    assert push.program["title"] == "Home exercise program"
    assert push.program["exercises"] == [
        {"external_id": activity_external_id("ext-9", "a-heel"), "code": "", "name": "Heel raises",
         "days_per_week": 3, "instructions": "3 sets of 12 reps, hold 2 s at the top", "sets": 3, "reps": 12,
         "hold_seconds": 2},
        {"external_id": activity_external_id("ext-9", "#c1"), "code": "", "name": "Wall push-ups",
         "instructions": "2 sets of 15 reps", "sets": 2, "reps": 15},
    ]


def test_a_draft_or_a_plan_without_exercises_is_not_sent() -> None:
    assert program_push(bundle(care_plan(status="draft")), today=TODAY).skipped == "the CarePlan is a draft"
    only_visits = program_push(bundle(care_plan(squat())).replace(b'"229065009"', b'"1"').replace(
        b"hep-exercise-sets", b"x").replace(b"hep-exercise-load", b"y").replace(
        b"CodeSystem/hep-exercise", b"CodeSystem/other"), today=TODAY)
    assert only_visits.program is None and only_visits.skipped == "the CarePlan has no home exercise activities"


def test_an_ended_plan_ends_the_program() -> None:
    push = program_push(bundle(care_plan(status="revoked")), today=TODAY)
    assert push.program is not None and push.program["ends_on"] == "2026-03-10"


@pytest.mark.parametrize(("mutate", "path", "rule"), [
    (lambda b: b["entry"][0]["resource"]["activity"][2]["detail"]["extension"][0].update(valueInteger=0),
     "CarePlan.activity[2].detail.extension[0].valueInteger", "whole number"),
    (lambda b: b["entry"][0]["resource"]["activity"][3]["detail"]["extension"][1]["valueQuantity"].update(
        code="stone", unit="stone"), "CarePlan.activity[3].detail.extension[1].valueQuantity", "kg or lb"),
    (lambda b: b["entry"][0]["resource"]["activity"][2]["detail"]["code"].clear(),
     "CarePlan.activity[2].detail.code", "name is required"),
    (lambda b: b["entry"][3]["resource"]["extension"][0].update(valueUrl="ftp://x/y"),
     "ServiceRequest/sr-hamstring.extension[0]", "http(s) url"),
    (lambda b: b["entry"][0]["resource"]["period"].update(start="03/02/2026"), "CarePlan.period.start", "FHIR date"),
    (lambda b: b["entry"][0]["resource"].update(subject={"reference": "Patient/other"}), "CarePlan.subject",
     "Patient is not in the delivery"),
    (lambda b: b["entry"][1]["resource"]["name"][0].pop("family"), "Patient.name", "family and a given name"),
    (lambda b: b["entry"][1]["resource"].update(birthDate="1961-13-40"), "Patient.birthDate", "calendar date"),
])
def test_errors_name_the_fhir_path_and_rule_not_the_value(mutate: Any, path: str, rule: str) -> None:
    document = json.loads(bundle(care_plan(), PATIENT, SR_SERVICE, SR_EXERCISE))  # entries in this order
    mutate(document)
    with pytest.raises(ProgramError) as caught:
        program_push(json.dumps(document).encode(), today=TODAY)
    assert caught.value.path == path and rule in caught.value.rule
    assert "Rivera" not in str(caught.value) and "stone" not in str(caught.value)


def test_no_care_plan_or_not_json_is_refused() -> None:
    with pytest.raises(ProgramError, match="payload: not JSON"):
        program_push(b"{", today=TODAY)
    with pytest.raises(ProgramError, match="no CarePlan"):
        program_push(json.dumps(PATIENT).encode(), today=TODAY)
    with pytest.raises(ProgramError, match=r"Patient: not a Patient"):
        patient_body({"resourceType": "Practitioner"})


def test_the_hubs_own_plan_of_care_bundle_sends_only_its_home_exercises() -> None:
    from datetime import UTC, datetime
    from pathlib import Path

    from mappings.fhir import jsonio
    from mappings.plan_of_care import PlanOfCare, build_plan_of_care

    data = Path(__file__).parents[2] / "mappings" / "data" / "plan_of_care" / "pt_low_back" / "input.json"
    plan = PlanOfCare.model_validate(jsonio.loads(data.read_bytes())["plan"])
    built = build_plan_of_care(plan, now=datetime(2026, 3, 1, tzinfo=UTC))
    care_plan_resource = built["entry"][0]["resource"]
    patient_id = plan.patient.split("/")[-1]
    built["entry"].append({"fullUrl": f"Patient/{patient_id}", "resource": dict(PATIENT, id=patient_id)})
    payload = jsonio.dumps(built).encode()
    assert program_push(payload, today=TODAY).skipped == "the CarePlan has no home exercise activities"
    care_plan_resource["activity"].append(bridge())  # the visits and the CPT services stay out
    push = program_push(jsonio.dumps(built).encode(), today=TODAY)
    assert push.program is not None and [e["name"] for e in push.program["exercises"]] == ["Bridging"]
    assert push.patient["external_id"] == patient_id and push.program_external_id == care_plan_resource["id"]

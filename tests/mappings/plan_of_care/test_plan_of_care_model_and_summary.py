"""Plan of care: the input model, and reading a plan back from its Bundle (round trip, summary)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from mappings.fhir import jsonio
from mappings.plan_of_care import (
    PlanBundleError,
    PlanOfCare,
    build_plan_of_care,
    plan_summary,
)
from tests.mappings.plan_of_care.conftest import CASES, GENERATED_AT, _raw, as_json, load_case

# ----------------------------------------------------------------------------- the input model




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

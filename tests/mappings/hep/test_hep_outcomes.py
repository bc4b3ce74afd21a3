"""Outcome scores -> Goal.achievementStatus, against the Goal's target as the plan of care writes it."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mappings.fhir import jsonio
from mappings.hep.events import parse_event
from mappings.hep.observations import event_observations
from mappings.hep.outcomes import LATEST_VALUE_EXTENSION, Target, goal_status, update_goal
from mappings.plan_of_care import PlanOfCare, build_plan_of_care

from .conftest import assert_valid, events_of, observations_of
from .scenario import NOW, body

PLAN = Path(__file__).parents[1] / "data" / "plan_of_care" / "pt_low_back" / "input.json"
D = Decimal


@pytest.mark.parametrize(
    ("baseline", "previous", "latest", "target", "measure", "expected"),
    [
        (None, None, None, Target(D(60)), "LEFS", "in-progress"),
        (D(40), None, D(40), Target(D(60)), "LEFS", "no-change"),
        (D(40), D(40), D(50), Target(D(60)), "LEFS", "improving"),  # +10 >= 9
        (D(40), D(50), D(42), Target(D(60)), "LEFS", "no-change"),  # -8 step, +2 overall
        (D(40), D(50), D(30), Target(D(60)), "LEFS", "worsening"),
        (D(40), D(46), D(50), Target(D(60)), "LEFS", "improving"),  # small steps that add up
        (D(40), D(55), D(61), Target(D(60)), "LEFS", "achieved"),
        (D(40), D(28), D(18), Target(high=D(20)), "ODI", "achieved"),  # lower is better
        (D(40), None, D(31), Target(high=D(20)), "ODI", "no-change"),  # -9 < 10
        (D(30), None, D(42), Target(high=D(15)), "QuickDASH", "worsening"),
        (D(20), None, D(27), Target(high=D(10)), "NDI", "no-change"),  # 7 < 7.5
        (D(20), None, D("27.5"), Target(high=D(10)), "NDI", "worsening"),
        (D(3), None, D(6), Target(D(8)), "PSFS", "improving"),
        (D(6), None, D(4), Target(high=D(2)), "NPRS", "improving"),
        (D(40), None, D(45), Target(D(40), D(50)), "LEFS", "achieved"),  # a range target holds it
    ],
)
def test_goal_status(
    baseline: Decimal | None,
    previous: Decimal | None,
    latest: Decimal | None,
    target: Target,
    measure: str,
    expected: str,
) -> None:
    assert goal_status(baseline, previous, latest, target, measure) == expected


def test_goal_status_mcid_is_configurable_and_the_due_date_ends_it() -> None:
    assert goal_status(D(40), None, D(46), Target(D(60)), "LEFS") == "no-change"
    assert goal_status(D(40), None, D(46), Target(D(60)), "LEFS", {"LEFS": 5}) == "improving"
    assert goal_status(D(40), None, D(46), Target(D(60)), "LEFS", 5) == "improving"
    late = {"due": date(2026, 6, 10), "today": date(2026, 6, 11)}
    assert goal_status(D(40), None, D(50), Target(D(60)), "LEFS", **late) == "not-achieved"
    assert goal_status(D(40), None, D(61), Target(D(60)), "LEFS", **late) == "achieved"
    on_time = {"due": date(2026, 6, 10), "today": date(2026, 6, 10)}
    assert goal_status(D(40), None, D(50), Target(D(60)), "LEFS", **on_time) == "improving"


def _plan_goal() -> dict[str, Any]:
    raw = jsonio.loads(PLAN.read_bytes())
    bundle = build_plan_of_care(PlanOfCare.model_validate(raw["plan"]), now=datetime.fromisoformat(raw["now"]))
    goals = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Goal"]
    goal: dict[str, Any] = jsonio.loads(jsonio.dumps(goals[0]))  # the pain goal: NPRS <= 3 by 2025-01-27
    return goal


def _nprs(n: int, score: int, day: str, patient: str = "pat-1") -> dict[str, Any]:
    raw = body(
        f"evt_n{n}", "outcome.recorded", "x", {"measure": "NPRS", "score": score, "date": day}, f"{day}T10:00:00Z"
    )
    raw["patient"]["external_id"] = patient
    return event_observations(parse_event(json.dumps(raw)))[0]


def test_update_goal_reads_the_plan_of_care_goal_and_records_the_latest_value() -> None:
    goal = _plan_goal()
    scores = [_nprs(1, 6, "2025-01-08"), _nprs(2, 4, "2025-01-15")]
    other_patient = _nprs(9, 0, "2025-01-16", patient="pat-2")
    updated = update_goal(goal, [scores[1], other_patient, scores[0]], now=datetime(2025, 1, 20, tzinfo=UTC))
    assert updated["achievementStatus"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/goal-achievement",
        "code": "improving",
        "display": "Improving",
    }
    assert updated["statusDate"] == "2025-01-15"
    assert updated["statusReason"] == "NPRS 4 on 2025-01-15 (baseline 6, target <= 3)"
    assert updated["outcomeReference"] == [{"reference": f"Observation/{scores[1]['id']}"}]
    (latest,) = [e for e in updated["extension"] if e["url"] == LATEST_VALUE_EXTENSION]
    assert latest["valueQuantity"]["value"] == 4
    assert goal["achievementStatus"]["coding"][0]["code"] == "in-progress"  # the input is left alone
    assert_valid(updated)

    reached = update_goal(updated, [*scores, _nprs(3, 3, "2025-01-22")], now=datetime(2025, 1, 23, tzinfo=UTC))
    assert reached["achievementStatus"]["coding"][0]["code"] == "achieved"
    assert len([e for e in reached["extension"] if e["url"] == LATEST_VALUE_EXTENSION]) == 1
    missed = update_goal(goal, scores, now=datetime(2025, 2, 1, tzinfo=UTC))  # due 2025-01-27 has passed
    assert missed["achievementStatus"]["coding"][0]["code"] == "not-achieved"
    assert_valid(missed)


def test_a_goal_without_an_outcome_measure_is_left_as_it_is() -> None:
    goal = _plan_goal()
    goal["target"][0]["measure"] = {"coding": [{"system": "http://snomed.info/sct", "code": "282097004"}]}
    assert update_goal(goal, [_nprs(1, 6, "2025-01-08")], now=NOW) == goal


def scripted_goals() -> dict[str, dict[str, Any]]:
    """One Goal per scripted patient, written liberally (a coding, a name as text, a range)."""

    def goal(patient: str, measure: dict[str, Any], detail: dict[str, Any], due: str) -> dict[str, Any]:
        return {
            "resourceType": "Goal",
            "id": f"goal-{patient}",
            "lifecycleStatus": "active",
            "description": {"text": f"{patient} goal"},
            "subject": {"reference": f"Patient/p-{patient}"},
            "target": [{"measure": measure, **detail, "dueDate": due}],
        }

    loinc_nprs = {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]}
    return {
        "adherent": goal("adherent", loinc_nprs, {"detailQuantity": {"value": 2, "unit": "{score}"}}, "2026-07-15"),
        "lapsing": goal("lapsing", {"text": "LEFS"}, {"detailInteger": 60}, "2026-06-10"),
        "improving": goal(
            "improving",
            {"coding": [{"display": "Oswestry Disability Index"}]},
            {"detailRange": {"high": {"value": 20, "unit": "%"}}},
            "2026-07-15",
        ),
        "worsening": goal("worsening", {"text": "QuickDASH"}, {"detailQuantity": {"value": 15}}, "2026-07-15"),
    }


@pytest.mark.parametrize(
    ("patient", "expected"),
    [("adherent", "no-change"), ("lapsing", "not-achieved"), ("improving", "achieved"), ("worsening", "worsening")],
)
def test_scripted_goal_statuses(patient: str, expected: str) -> None:
    observations = list(observations_of(events_of(patient)).values())
    updated = update_goal(scripted_goals()[patient], observations, now=NOW)
    assert updated["achievementStatus"]["coding"][0]["code"] == expected
    assert_valid(updated)


def test_a_target_comparator_sets_the_side_of_the_bound() -> None:
    goal = scripted_goals()["improving"]
    goal["target"][0].pop("detailRange")
    goal["target"][0]["detailQuantity"] = {"value": 20, "comparator": "<=", "unit": "%"}
    observations = list(observations_of(events_of("improving")).values())
    assert update_goal(goal, observations, now=NOW)["achievementStatus"]["coding"][0]["code"] == "achieved"
    goal["target"][0]["detailQuantity"] = {"value": 50, "comparator": ">="}  # an odd target, read as written
    assert update_goal(goal, observations, now=NOW)["achievementStatus"]["coding"][0]["code"] == "improving"

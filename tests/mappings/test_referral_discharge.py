"""Unit tests of the end of an episode of care (pure): an obligation Task closed
(``mappings.referral.certification.close_obligation``) and a plan of care ended
(``mappings.plan_of_care.ending.end_care_plan``, ``end_goal``, ``end_plan_request``)."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from mappings.fhir import jsonio
from mappings.fhir.validation import validate_resource
from mappings.plan_of_care import PlanOfCare, build_plan_of_care, end_care_plan, end_goal, end_plan_request
from mappings.plan_of_care.ending import GOAL_STATUS_AT_END, _ended_narrative
from mappings.plan_of_care.model import GoalLifecycle
from mappings.referral.certification import (
    MEDICARE,
    OBLIGATION_STATUS_SYSTEM,
    close_obligation,
    obligations,
    to_fhir_tasks,
)

DATA = Path(__file__).parent / "data" / "plan_of_care"
NOW = datetime(2025, 2, 3, 14, 30)


def _bundle(case: str = "pt_low_back") -> dict[str, Any]:
    raw = jsonio.loads((DATA / case / "input.json").read_bytes())
    plan = PlanOfCare.model_validate(raw["plan"])
    return jsonio.loads(jsonio.dumps(build_plan_of_care(plan, now=datetime(2025, 1, 6, 15, 30, tzinfo=UTC))))


def _of_type(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


@pytest.fixture
def care_plan() -> dict[str, Any]:
    return _of_type(_bundle(), "CarePlan")[0]  # period 2025-01-06 .. 2025-04-05, active


def _obligation_tasks() -> dict[str, dict[str, Any]]:
    found = obligations(plan_start=date(2025, 1, 6), plan_end=date(2025, 4, 5), initial_treatment=date(2025, 1, 6),
                        certified_on=date(2025, 1, 10), plan_changed_on=None,
                        treatment_dates=[date(2025, 1, d) for d in range(6, 30, 2)], last_progress_report_visit=None,
                        rules=MEDICARE, today=date(2025, 2, 3))
    tasks = to_fhir_tasks(found, care_plan_ref="CarePlan/cp-1", patient_ref="Patient/p-1",
                          owner_ref="PractitionerRole/dr-1", requester_ref="Organization/clinic-1", now=NOW)
    return {t["code"]["coding"][0]["code"]: t for t in tasks}


# ----------------------------------------------------------------------------- obligations


def test_an_open_obligation_is_cancelled_with_the_reason() -> None:
    tasks = _obligation_tasks()
    report = tasks["progress-report"]
    assert report["status"] == "requested" and report["businessStatus"]["coding"][0]["code"] == "overdue"
    untouched = copy.deepcopy(report)
    closed = close_obligation(report, reason="patient discharged", now=datetime(2025, 2, 4, 9, 0))
    assert report == untouched
    assert closed is not None
    assert closed["status"] == "cancelled"
    assert closed["statusReason"] == {"text": "patient discharged"}
    assert closed["businessStatus"]["coding"] == [
        {"system": OBLIGATION_STATUS_SYSTEM, "code": "not-required", "display": "No longer required"}]
    assert closed["lastModified"] == "2025-02-04T09:00:00Z"
    for kept in ("id", "code", "focus", "for", "owner", "restriction", "input", "description", "authoredOn"):
        assert closed[kept] == report[kept]
    assert validate_resource(closed, "Task") == []


@pytest.mark.parametrize("status", ["completed", "cancelled", "failed", "rejected", "entered-in-error"])
def test_an_obligation_over_already_stays_as_it_is(status: str) -> None:
    task = dict(_obligation_tasks()["certification"], status=status)
    assert close_obligation(task, reason="patient discharged", now=NOW) is None


@pytest.mark.parametrize("status", ["requested", "received", "accepted", "ready", "in-progress", "on-hold"])
def test_any_open_status_is_closed(status: str) -> None:
    task = dict(_obligation_tasks()["recertification"], status=status)
    closed = close_obligation(task, reason="referral cancelled", now=NOW)
    assert closed is not None and closed["status"] == "cancelled"


# ----------------------------------------------------------------------------- the CarePlan


@pytest.mark.parametrize(
    ("ended", "end"),
    [
        (date(2025, 2, 14), "2025-02-14"),  # discharged early: the plan ended then
        (date(2025, 4, 5), "2025-04-05"),
        (date(2025, 5, 20), "2025-04-05"),  # recorded after the planned end: the certified period is kept
        (date(2025, 1, 2), "2025-01-06"),  # before the plan started: never before period.start
    ],
)
def test_a_discharged_plan_is_completed(care_plan: dict[str, Any], ended: date, end: str) -> None:
    untouched = copy.deepcopy(care_plan)
    done = end_care_plan(care_plan, ended=ended)
    assert care_plan == untouched
    assert done is not None
    assert done["status"] == "completed"
    assert done["period"] == {"start": "2025-01-06", "end": end}
    assert done["activity"][0]["detail"]["status"] == "completed"
    assert done["activity"][1:] == care_plan["activity"][1:]
    for kept in ("id", "identifier", "extension", "goal", "addresses", "supportingInfo", "author", "subject"):
        assert done[kept] == care_plan[kept]
    assert validate_resource(done) == []


def test_the_narrative_tells_the_end(care_plan: dict[str, Any]) -> None:
    # rebuilt from the CarePlan itself, the narrative is the one the plan was written with
    assert _ended_narrative(care_plan, care_plan["text"]) == care_plan["text"]
    done = end_care_plan(care_plan, ended=date(2025, 2, 14))
    assert done is not None
    before = care_plan["text"]["div"]
    after = done["text"]["div"]
    assert done["text"]["status"] == "generated"
    assert "revision 1 (active)" in before and "revision 1 (completed)" in after
    assert "Period 2025-01-06 to 2025-02-14; 2x/week for 6 weeks" in after
    assert before.split("</p>", 2)[2] == after.split("</p>", 2)[2]  # diagnosis and services kept

    foreign = dict(care_plan, text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">'
                                                                   "<p>Something else</p></div>"})
    rewritten = end_care_plan(foreign, ended=date(2025, 2, 14))
    assert rewritten is not None and "Something else" not in rewritten["text"]["div"]
    assert "(completed)" in rewritten["text"]["div"]
    assert "text" not in (end_care_plan({k: v for k, v in care_plan.items() if k != "text"},
                                        ended=date(2025, 2, 14)) or {})


def test_a_cancelled_referral_revokes_the_plan(care_plan: dict[str, Any]) -> None:
    revoked = end_care_plan(care_plan, ended=date(2025, 2, 14), end="revoked")
    assert revoked is not None and revoked["status"] == "revoked"
    assert revoked["activity"][0]["detail"]["status"] == "stopped"
    draft = _of_type(_bundle("ot_hand_draft_revision"), "CarePlan")[0]
    assert draft["status"] == "draft" and draft["activity"][0]["detail"]["status"] == "not-started"
    ended_draft = end_care_plan(draft, ended=date(2025, 2, 14))
    assert ended_draft is not None and ended_draft["status"] == "completed"
    assert ended_draft["activity"][0]["detail"]["status"] == "cancelled"  # it never started
    assert validate_resource(revoked) == [] and validate_resource(ended_draft) == []


@pytest.mark.parametrize("status", ["completed", "revoked", "entered-in-error"])
def test_an_ended_plan_is_left_alone(care_plan: dict[str, Any], status: str) -> None:
    assert end_care_plan(dict(care_plan, status=status), ended=date(2025, 2, 14)) is None


# ----------------------------------------------------------------------------- goals


@pytest.mark.parametrize("status", GoalLifecycle.__args__)
def test_goals_are_no_longer_sought(status: str) -> None:
    goal = _of_type(_bundle(), "Goal")[0]
    goal = dict(goal, lifecycleStatus=status)
    ended = end_goal(goal, on=date(2025, 2, 14), reason="patient discharged")
    expected = {"accepted": "completed", "active": "completed", "on-hold": "completed",
                "proposed": "cancelled", "planned": "cancelled"}.get(status)
    assert dict(GOAL_STATUS_AT_END) == {"accepted": "completed", "active": "completed", "on-hold": "completed",
                                        "proposed": "cancelled", "planned": "cancelled"}
    if expected is None:  # completed, cancelled, rejected, entered-in-error: final already
        assert ended is None
        return
    assert ended is not None
    assert ended["lifecycleStatus"] == expected
    assert ended["statusDate"] == "2025-02-14" and ended["statusReason"] == "patient discharged"
    assert ended["achievementStatus"] == goal["achievementStatus"]  # "in-progress" stays: never invented
    assert validate_resource(ended) == []


def test_a_goal_without_achievement_gets_none() -> None:
    goal = next(g for g in _of_type(_bundle(), "Goal") if "achievementStatus" not in g)
    ended = end_goal(goal, on=date(2025, 2, 14), reason="patient discharged")
    assert ended is not None and "achievementStatus" not in ended


# ----------------------------------------------------------------------------- the plan's services


def test_the_plans_services_end_with_it() -> None:
    request = _of_type(_bundle(), "ServiceRequest")[0]
    assert (request["intent"], request["status"]) == ("plan", "active")
    completed = end_plan_request(request)
    assert completed is not None and completed["status"] == "completed" and request["status"] == "active"
    assert validate_resource(completed) == []
    assert (end_plan_request(request, end="revoked") or {}).get("status") == "revoked"
    assert (end_plan_request(dict(request, status="draft")) or {}).get("status") == "revoked"
    assert (end_plan_request(dict(request, status="on-hold")) or {}).get("status") == "completed"
    for final in ("completed", "revoked", "entered-in-error"):
        assert end_plan_request(dict(request, status=final)) is None
    assert end_plan_request(dict(request, intent="order")) is None  # the referrer's order is not the plan's

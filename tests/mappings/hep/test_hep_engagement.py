"""The engagement summary of the scripted patients, its FHIR panel, and one lapse alert raised and cleared."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

from mappings.fhir import jsonio
from mappings.hep.adherence import Prescription, last_activity
from mappings.hep.engagement import (
    EngagementSummary,
    LapseState,
    engagement_observations,
    engagement_summary,
    lapse,
    summary_json,
    worsening,
)
from mappings.hep.events import parse_event
from mappings.hep.outcomes import Target

from .conftest import assert_valid, events_of, observations_of
from .scenario import NOW, PER_WEEK, START, d, session
from .test_hep_outcomes import scripted_goals

PROGRAM = Prescription(per_week=PER_WEEK, starts_on=START)


def summary_of(patient: str) -> EngagementSummary:
    events = events_of(patient)
    return engagement_summary(
        f"Patient/p-{patient}",
        events,
        PROGRAM,
        goals=[scripted_goals()[patient]],
        observations=observations_of(events).values(),
        now=NOW,
        care_plan=f"CarePlan/cp-{patient}",
    )


def test_adherent_patient_reaches_an_adherence_streak() -> None:
    summary = summary_of("adherent")
    assert [(w.label, w.percent) for w in summary.weeks] == [("2026-W23", 100), ("2026-W24", 100)]
    assert [(m.kind, m.on) for m in summary.milestones] == [("adherence-streak", d(13))]
    (goal,) = summary.goals
    assert (goal.measure, goal.baseline, goal.latest, goal.status) == ("NPRS", Decimal(6), Decimal(5), "no-change")
    assert goal.target == Target(high=Decimal(2))
    assert summary.last_activity == d(13)
    as_json = json.loads(jsonio.dumps(summary_json(summary)))
    assert as_json["adherence"][0] == {
        "week": "2026-W23",
        "start": "2026-06-01",
        "percent": 100,
        "sessions_done": 4,
        "sessions_prescribed": 3,
        "exercises_done": 8,
        "exercises_skipped": 0,
    }
    assert as_json["goals"][0]["target"] == {"low": None, "high": 2, "text": "<= 2"}
    assert as_json["milestones"] == [
        {"kind": "adherence-streak", "on": "2026-06-14", "detail": "2 weeks in a row at 80% adherence or more"}
    ]


def test_improving_patient_achieves_the_goal_on_the_day_of_the_score() -> None:
    summary = summary_of("improving")
    (goal,) = summary.goals
    assert (goal.baseline, goal.latest, goal.status, goal.target) == (
        Decimal(40),
        Decimal(18),
        "achieved",
        Target(high=Decimal(20)),
    )
    assert [(m.kind, m.on, m.detail) for m in summary.milestones] == [
        ("goal-achieved", d(13), "ODI target <= 20 reached")
    ]
    assert [w.percent for w in summary.weeks] == [67, 67]


def test_engagement_panel_is_valid_r4() -> None:
    summary = summary_of("improving")
    panel, *weekly = engagement_observations(summary, now=NOW)
    for obs in (panel, *weekly):
        assert_valid(obs)
    assert [w["effectivePeriod"] for w in weekly] == [
        {"start": "2026-06-01", "end": "2026-06-07"},
        {"start": "2026-06-08", "end": "2026-06-14"},
    ]
    assert [w["valueQuantity"]["value"] for w in weekly] == [67, 67]
    assert panel["focus"] == [{"reference": "Goal/goal-improving"}]
    members = {m["reference"] for m in panel["hasMember"]}
    assert {f"Observation/{w['id']}" for w in weekly} < members and len(members) == 3
    texts = {c["code"]["text"]: c for c in panel["component"]}
    assert texts["ODI latest"]["valueQuantity"]["value"] == Decimal(18)
    assert texts["ODI latest"]["interpretation"][0]["coding"][0]["code"] == "achieved"
    assert texts["ODI latest"]["referenceRange"][0]["high"]["value"] == Decimal(20)
    assert texts["ODI baseline"]["valueQuantity"]["value"] == Decimal(40)
    assert texts["ODI target <= 20 reached"]["valueDateTime"] == "2026-06-14"
    assert texts["Last home exercise activity"]["valueDateTime"] == "2026-06-14"
    # the same summary twice is the same resources (ids by uuid5)
    assert [o["id"] for o in engagement_observations(summary_of("improving"), now=NOW)] == [
        o["id"] for o in (panel, *weekly)
    ]


def _check(patient: str, previous: LapseState | None, events: list[Any], at_days: int) -> Any:
    now = NOW + timedelta(days=at_days)
    summary = engagement_summary(
        f"Patient/p-{patient}",
        events,
        PROGRAM,
        goals=[scripted_goals()[patient]],
        observations=observations_of(events).values(),
        now=now,
    )
    return lapse(
        previous,
        patient=f"Patient/p-{patient}",
        last_activity=last_activity(events),
        monitoring_start=START,
        now=now,
        days=7,
        worsening=worsening(summary),
    )


def test_a_lapsing_patient_raises_one_alert_until_it_recovers() -> None:
    events = events_of("lapsing")
    first = _check("lapsing", None, events, 0)  # last activity on day 1, now day 14
    assert first.transition == "raise"
    assert first.reasons == ("no home exercise activity for 7 days or more",)
    again = _check("lapsing", first.state, events, 0)
    later = _check("lapsing", again.state, events, 3)
    assert (again.transition, later.transition) == ("none", "none")
    assert again.key == first.key == later.key == "hep-lapse/Patient/p-lapsing/-"
    # the patient comes back: a session on day 16
    events = [*events, parse_event(json.dumps(session("lapsing", d(16), 2)))]
    recovered = _check("lapsing", later.state, events, 2)
    assert (recovered.transition, recovered.state.raised) == ("clear", False)
    assert _check("lapsing", recovered.state, events, 2).transition == "none"
    transitions = [first, again, later, recovered]
    assert [t.transition for t in transitions].count("raise") == 1


def test_worsening_outcome_raises_even_when_active_and_adherent_patients_raise_nothing() -> None:
    alert = _check("worsening", None, events_of("worsening"), 0)
    assert (alert.transition, alert.reasons) == ("raise", ("an outcome measure is worsening",))
    for patient in ("adherent", "improving"):
        assert _check(patient, None, events_of(patient), 0).transition == "none"

"""A patient's HEP engagement: a plain summary, its FHIR form, and lapse alerts.

:func:`engagement_summary` gathers the adherence trend per ISO week (:mod:`.adherence`), each goal
with a HEP outcome measure (baseline, latest, target, status from :mod:`.outcomes`), milestones
(a goal achieved -- dated by the first score that reached its target; an adherence streak -- every
``streak_weeks`` consecutive weeks at >= ``streak_percent`` %, dated the Sunday that completes it)
and the last activity day. The weekly trend runs to the day before ``now`` (complete days only:
a Monday-morning summary does not show the new week at 0 %).

The FHIR form (:func:`engagement_observations`) is an **Observation panel**, chosen over a
``MeasureReport`` because R4 MeasureReport requires a ``Measure`` canonical the hub would have to
publish and the hub's FHIR store does not serve MeasureReport; Observation validates cleanly and is
searchable by patient and code:

* one weekly adherence Observation per week (code ``weekly-adherence``, ``effectivePeriod`` the
  ISO week, valueQuantity %, components sessions done / prescribed and exercises done / skipped);
* the panel (code ``engagement-summary``, ``effectivePeriod`` program start..``now``, ``issued``
  ``now``) that ``hasMember`` the weekly Observations and the latest outcome Observations,
  ``focus`` the Goals, and carries components: ``last-activity`` (valueDateTime), per goal a
  baseline and a latest component (code the measure; the latest with ``referenceRange`` the target
  and ``interpretation`` the goal-achievement code), per milestone a component (valueDateTime,
  ``code.text`` the milestone).

:func:`lapse` decides whether a patient's alert is to be raised, cleared or left alone, keyed by a
stable key so that one alert is raised until the patient recovers.

Pure: no I/O, no clock (``now`` is passed in).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from mappings.fhir.ids import deterministic_id
from mappings.hep.adherence import Prescription, WeekAdherence, last_activity, weekly_adherence
from mappings.hep.events import HepEvent
from mappings.hep.measures import HEP_SYSTEM, OBSERVATION_CATEGORY, UCUM, Coding
from mappings.hep.outcomes import (
    ACHIEVEMENT_DISPLAY,
    GOAL_ACHIEVEMENT_SYSTEM,
    MCIDs,
    Target,
    goal_scores,
)

SUMMARY_SYSTEM = "https://therapy-hub.example/hep/engagement"
WEEKLY_ADHERENCE = Coding(HEP_SYSTEM, "weekly-adherence", "Weekly home exercise adherence")
ENGAGEMENT_SUMMARY = Coding(HEP_SYSTEM, "engagement-summary", "Home exercise engagement summary")
LAST_ACTIVITY = Coding(HEP_SYSTEM, "last-activity", "Last home exercise activity")
SESSIONS_DONE = Coding(HEP_SYSTEM, "sessions-done", "Sessions done")
SESSIONS_PRESCRIBED = Coding(HEP_SYSTEM, "sessions-prescribed", "Sessions prescribed")
EXERCISES_DONE = Coding(HEP_SYSTEM, "exercises-done", "Prescribed exercises done")
EXERCISES_SKIPPED = Coding(HEP_SYSTEM, "exercises-skipped", "Prescribed exercises skipped")
MILESTONE = {
    "goal-achieved": Coding(HEP_SYSTEM, "milestone-goal-achieved", "Goal achieved"),
    "adherence-streak": Coding(HEP_SYSTEM, "milestone-adherence-streak", "Adherence streak"),
}

MilestoneKind = Literal["goal-achieved", "adherence-streak"]
Transition = Literal["raise", "clear", "none"]


@dataclass(frozen=True, slots=True)
class GoalProgress:
    goal: str  # Goal/<id>
    measure: str  # LEFS, ODI...
    baseline: Decimal | None
    latest: Decimal | None
    latest_on: date | None
    latest_reference: str | None
    target: Target | None
    due: date | None
    status: str


@dataclass(frozen=True, slots=True)
class Milestone:
    kind: MilestoneKind
    on: date
    detail: str


@dataclass(frozen=True, slots=True)
class EngagementSummary:
    patient: str  # Patient/<id>
    care_plan: str | None  # CarePlan/<id>
    period_start: date
    period_end: date
    weeks: tuple[WeekAdherence, ...]
    goals: tuple[GoalProgress, ...]
    milestones: tuple[Milestone, ...]
    last_activity: date | None


def _streaks(weeks: Sequence[WeekAdherence], length: int, percent: int) -> list[Milestone]:
    out: list[Milestone] = []
    run = 0
    for week in weeks:
        run = run + 1 if week.percent >= percent else 0
        if length > 0 and run > 0 and run % length == 0:
            out.append(
                Milestone(
                    "adherence-streak",
                    week.start + timedelta(days=6),
                    f"{run} weeks in a row at {percent}% adherence or more",
                )
            )
    return out


def _goal_progress(
    goal: Mapping[str, Any], observations: Sequence[Mapping[str, Any]], now: datetime, mcid: MCIDs | None
) -> tuple[GoalProgress, Milestone | None] | None:
    found = goal_scores(goal, observations, now=now, mcid=mcid)
    if found is None:
        return None
    measure, target, due, series, status = found.measure, found.target, found.due, found.series, found.status
    baseline, latest = found.baseline, found.latest
    reached = next((s for s in series if target is not None and target.reached(s.value)), None)
    milestone = (
        Milestone("goal-achieved", reached.day, f"{measure.key} target {target.text()} reached")
        if reached is not None and target is not None
        else None
    )
    progress = GoalProgress(
        f"Goal/{goal.get('id')}",
        measure.key,
        baseline.value if baseline else None,
        latest.value if latest else None,
        latest.day if latest else None,
        latest.reference if latest else None,
        target,
        due,
        status,
    )
    return progress, milestone


def engagement_summary(
    patient: str,
    events: Iterable[HepEvent],
    prescription: Prescription,
    *,
    goals: Iterable[Mapping[str, Any]] = (),
    observations: Iterable[Mapping[str, Any]] = (),
    now: datetime,
    care_plan: str | None = None,
    mcid: MCIDs | None = None,
    streak_weeks: int = 2,
    streak_percent: int = 80,
) -> EngagementSummary:
    """The engagement of ``patient`` (``Patient/<id>``) up to ``now``.

    ``observations`` are the patient's outcome Observations (FHIR JSON, e.g. from the store or from
    :func:`mappings.hep.observations.event_observations`), ``goals`` the plan's Goals."""
    events = list(events)
    observations = list(observations)
    weeks = weekly_adherence(events, prescription, until=now.date() - timedelta(days=1))
    progress: list[GoalProgress] = []
    milestones = _streaks(weeks, streak_weeks, streak_percent)
    for goal in goals:
        found = _goal_progress(goal, observations, now, mcid)
        if found is None:
            continue
        progress.append(found[0])
        if found[1] is not None:
            milestones.append(found[1])
    milestones.sort(key=lambda m: (m.on, m.kind, m.detail))
    return EngagementSummary(
        patient,
        care_plan,
        prescription.starts_on,
        now.date(),
        tuple(weeks),
        tuple(progress),
        tuple(milestones),
        last_activity(events),
    )


def _concept(coding: Coding, text: str | None = None) -> dict[str, Any]:
    return {"coding": [coding.as_fhir()], "text": text or coding.display}


def _quantity(value: Decimal | int, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _observation(summary: EngagementSummary, key: str, code: dict[str, Any]) -> dict[str, Any]:
    identifier = {"system": SUMMARY_SYSTEM, "value": f"{summary.patient}/{summary.care_plan or '-'}/{key}"}
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": deterministic_id("Observation", identifier["system"], identifier["value"]),
        "identifier": [identifier],
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "therapy", "display": "Therapy"}]}],
        "code": code,
        "subject": {"reference": summary.patient},
    }
    if summary.care_plan:
        obs["basedOn"] = [{"reference": summary.care_plan}]
    return obs


def engagement_observations(summary: EngagementSummary, *, now: datetime) -> list[dict[str, Any]]:
    """The panel Observation first, then one weekly adherence Observation per week."""
    weekly: list[dict[str, Any]] = []
    for week in summary.weeks:
        obs = _observation(summary, f"week/{week.label}", _concept(WEEKLY_ADHERENCE))
        obs["effectivePeriod"] = {"start": week.start.isoformat(), "end": (week.start + timedelta(days=6)).isoformat()}
        obs["valueQuantity"] = _quantity(week.percent, "%")
        obs["component"] = [
            {"code": _concept(c), "valueInteger": v}
            for c, v in (
                (SESSIONS_DONE, week.sessions_done),
                (SESSIONS_PRESCRIBED, week.sessions_prescribed),
                (EXERCISES_DONE, week.exercises_done),
                (EXERCISES_SKIPPED, week.exercises_skipped),
            )
        ]
        weekly.append(obs)
    panel = _observation(summary, "summary", _concept(ENGAGEMENT_SUMMARY))
    panel["effectivePeriod"] = {"start": summary.period_start.isoformat(), "end": now.isoformat()}
    panel["issued"] = now.isoformat()
    components: list[dict[str, Any]] = []
    if summary.last_activity is not None:
        components.append({"code": _concept(LAST_ACTIVITY), "valueDateTime": summary.last_activity.isoformat()})
    members = [{"reference": f"Observation/{w['id']}"} for w in weekly]
    for goal in summary.goals:
        code = Coding(HEP_SYSTEM, f"goal-{goal.measure.lower()}", f"{goal.measure} goal")
        if goal.baseline is not None:
            components.append(
                {
                    "code": _concept(code, f"{goal.measure} baseline"),
                    "valueQuantity": _quantity(goal.baseline, "{score}"),
                }
            )
        if goal.latest is not None:
            latest: dict[str, Any] = {
                "code": _concept(code, f"{goal.measure} latest"),
                "valueQuantity": _quantity(goal.latest, "{score}"),
                "interpretation": [
                    {
                        "coding": [
                            {
                                "system": GOAL_ACHIEVEMENT_SYSTEM,
                                "code": goal.status,
                                "display": ACHIEVEMENT_DISPLAY.get(goal.status, goal.status),
                            }
                        ]
                    }
                ],
            }
            if goal.target is not None:
                bounds: dict[str, Any] = {"text": f"target {goal.target.text()}"}
                if goal.target.low is not None:
                    bounds["low"] = _quantity(goal.target.low, "{score}")
                if goal.target.high is not None:
                    bounds["high"] = _quantity(goal.target.high, "{score}")
                latest["referenceRange"] = [bounds]
            components.append(latest)
        if goal.latest_reference:
            members.append({"reference": goal.latest_reference})
    for milestone in summary.milestones:
        components.append(
            {"code": _concept(MILESTONE[milestone.kind], milestone.detail), "valueDateTime": milestone.on.isoformat()}
        )
    if components:
        panel["component"] = components
    if members:
        panel["hasMember"] = members
    if summary.goals:
        panel["focus"] = [{"reference": g.goal} for g in summary.goals]
    return [panel, *weekly]


@dataclass(frozen=True, slots=True)
class LapseState:
    """What the hub remembers of a patient's lapse alert between checks."""

    raised: bool = False
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LapseDecision:
    key: str  # stable per patient (and care plan): the alert's identity
    transition: Transition
    state: LapseState
    reasons: tuple[str, ...] = field(default=())


def lapse_key(patient: str, care_plan: str | None = None) -> str:
    return f"hep-lapse/{patient}/{care_plan or '-'}"


def lapse(
    previous: LapseState | None,
    *,
    patient: str,
    last_activity: date | None,
    monitoring_start: date,
    now: datetime,
    days: int,
    worsening: bool = False,
    care_plan: str | None = None,
) -> LapseDecision:
    """Raise once when the patient has had no HEP activity for ``days`` days (counted from the start
    of monitoring when there is none) or an outcome is worsening; clear once when neither holds;
    otherwise ``none`` (an alert already raised is not raised again, even for a new reason)."""
    reasons: list[str] = []
    since = last_activity or monitoring_start
    if (now.date() - since).days >= days:
        reasons.append(f"no home exercise activity for {days} days or more")
    if worsening:
        reasons.append("an outcome measure is worsening")
    was_raised = previous is not None and previous.raised
    state = LapseState(bool(reasons), tuple(reasons))
    if reasons and not was_raised:
        transition: Transition = "raise"
    elif not reasons and was_raised:
        transition = "clear"
    else:
        transition = "none"
    return LapseDecision(lapse_key(patient, care_plan), transition, state, tuple(reasons))


def worsening(summary: EngagementSummary) -> bool:
    """Whether any goal of the summary is worsening."""
    return any(g.status == "worsening" for g in summary.goals)


def _target_json(target: Target | None) -> dict[str, Any] | None:
    if target is None:
        return None
    return {"low": target.low, "high": target.high, "text": target.text()}


def summary_json(summary: EngagementSummary) -> dict[str, Any]:
    """The summary as JSON values (dates ISO 8601; scores stay ``Decimal``: write with
    :func:`mappings.fhir.jsonio.dumps`), e.g. for ``GET /patients/{id}/engagement``."""
    return {
        "patient": summary.patient,
        "care_plan": summary.care_plan,
        "period": {"start": summary.period_start.isoformat(), "end": summary.period_end.isoformat()},
        "last_activity": summary.last_activity.isoformat() if summary.last_activity else None,
        "adherence": [
            {
                "week": w.label,
                "start": w.start.isoformat(),
                "percent": w.percent,
                "sessions_done": w.sessions_done,
                "sessions_prescribed": w.sessions_prescribed,
                "exercises_done": w.exercises_done,
                "exercises_skipped": w.exercises_skipped,
            }
            for w in summary.weeks
        ],
        "goals": [
            {
                "goal": g.goal,
                "measure": g.measure,
                "baseline": g.baseline,
                "latest": g.latest,
                "latest_on": g.latest_on.isoformat() if g.latest_on else None,
                "target": _target_json(g.target),
                "due": g.due.isoformat() if g.due else None,
                "status": g.status,
            }
            for g in summary.goals
        ],
        "milestones": [{"kind": m.kind, "on": m.on.isoformat(), "detail": m.detail} for m in summary.milestones],
    }

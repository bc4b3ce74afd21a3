"""Outcome scores -> ``Goal.achievementStatus`` (http://terminology.hl7.org/CodeSystem/goal-achievement).

:func:`goal_status` decides, for one measure (:data:`mappings.hep.measures.MEASURES`: direction,
range, default MCID, each MCID overridable through the ``mcid`` mapping):

1. no score yet -> ``in-progress``;
2. the latest score reaches the target -> ``achieved`` (a target of one value is a threshold in the
   measure's better direction: LEFS >= 60, ODI <= 20; a range target must hold the score);
3. the due date has passed without reaching it -> ``not-achieved``;
4. the change from the previous score (the baseline when there is none) reaches the MCID ->
   ``improving`` or ``worsening``; otherwise, a cumulative change from the baseline that reaches
   the MCID keeps ``improving``/``worsening`` (small steps add up);
5. else ``no-change`` (``in-progress`` when there is nothing to compare with).

:func:`update_goal` reads a Goal as :mod:`mappings.plan_of_care.fhir` writes it -- ``target[]``
with ``measure`` (a coding of the measure, or its name as text), ``detailQuantity`` (a
``comparator`` ``>=``/``<=`` sets the bound's side, else the measure's better direction does; read
liberally, also ``detailInteger`` / ``detailRange``) and ``dueDate`` -- and returns a copy with
``achievementStatus`` set, ``statusDate`` the latest score's date, ``statusReason`` a one-line
account (baseline, latest, target), ``outcomeReference`` the latest score's Observation and the
extension :data:`LATEST_VALUE_EXTENSION` (valueQuantity). The history of statuses is the FHIR
store's version history of the Goal: nothing else is kept here.

Pure: no I/O, no clock (``now`` is passed in).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from mappings.hep.measures import MEASURES, Measure, mcid_of, measure_of

GOAL_ACHIEVEMENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/goal-achievement"
LATEST_VALUE_EXTENSION = "https://therapy-hub.example/StructureDefinition/goal-latest-value"

Achievement = Literal["in-progress", "improving", "worsening", "no-change", "achieved", "not-achieved"]
ACHIEVEMENT_DISPLAY: dict[str, str] = {
    "in-progress": "In Progress",
    "improving": "Improving",
    "worsening": "Worsening",
    "no-change": "No Change",
    "achieved": "Achieved",
    "not-achieved": "Not Achieved",
}
_FINAL = ("final", "amended", "corrected")
MCIDs = Mapping[str, Decimal | int | float]


@dataclass(frozen=True, slots=True)
class Target:
    """A goal target: ``low`` and/or ``high`` bounds of the score (a single value is one bound)."""

    low: Decimal | None = None
    high: Decimal | None = None

    @classmethod
    def of(cls, value: Decimal | int | float, measure: Measure) -> Target:
        number = Decimal(str(value))
        return cls(low=number) if measure.better == "higher" else cls(high=number)

    def reached(self, score: Decimal) -> bool:
        return (self.low is None or score >= self.low) and (self.high is None or score <= self.high)

    def text(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low}-{self.high}"
        return f">= {self.low}" if self.low is not None else f"<= {self.high}"


@dataclass(frozen=True, slots=True)
class Score:
    value: Decimal
    day: date
    reference: str | None = None  # Observation/<id>


def goal_status(
    baseline: Decimal | None,
    previous: Decimal | None,
    latest: Decimal | None,
    target: Target | None,
    measure: Measure | str,
    mcid: MCIDs | Decimal | int | float | None = None,
    *,
    due: date | None = None,
    today: date | None = None,
) -> Achievement:
    """The achievement code of a goal (see the module docstring for the order of the rules).

    ``mcid`` is the clinic's MCID mapping (by measure name) or a number for this measure."""
    m = MEASURES[measure] if isinstance(measure, str) else measure
    threshold = mcid_of(m, mcid) if mcid is None or isinstance(mcid, Mapping) else Decimal(str(mcid))
    if latest is None:
        return "in-progress"
    if target is not None and target.reached(latest):
        return "achieved"
    if due is not None and today is not None and today > due:
        return "not-achieved"
    reference = previous if previous is not None else baseline
    if reference is None:
        return "in-progress"
    step = m.improvement(reference, latest)
    if step >= threshold:
        return "improving"
    if -step >= threshold:
        return "worsening"
    if baseline is not None:
        overall = m.improvement(baseline, latest)
        if overall >= threshold:
            return "improving"
        if -overall >= threshold:
            return "worsening"
    return "no-change"


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _day(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def goal_target(goal: Mapping[str, Any]) -> tuple[Measure, Target | None, date | None] | None:
    """The first ``target`` of ``goal`` whose measure is a HEP outcome measure: (measure, target, due)."""
    for target in goal.get("target") or []:
        if not isinstance(target, dict):
            continue
        measure = measure_of(target.get("measure"))
        if measure is None:
            continue
        bound: Target | None = None
        q = target.get("detailQuantity")
        value = _number(q.get("value")) if isinstance(q, dict) else None
        integer = _number(target.get("detailInteger"))
        if isinstance(q, dict) and value is not None:
            comparator = q.get("comparator")
            if comparator in (">", ">="):
                bound = Target(low=value)
            elif comparator in ("<", "<="):
                bound = Target(high=value)
            else:
                bound = Target.of(value, measure)
        elif integer is not None:
            bound = Target.of(integer, measure)
        elif isinstance(target.get("detailRange"), dict):
            r = target["detailRange"]
            low = _number((r.get("low") or {}).get("value")) if isinstance(r.get("low"), dict) else None
            high = _number((r.get("high") or {}).get("value")) if isinstance(r.get("high"), dict) else None
            if low is not None or high is not None:
                bound = Target(low, high)
        return measure, bound, _day(target.get("dueDate"))
    return None


def _subject(resource: Mapping[str, Any]) -> str | None:
    subject = resource.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    return reference if isinstance(reference, str) else None


def scores(observations: Iterable[Mapping[str, Any]], measure: Measure, *, subject: str | None = None) -> list[Score]:
    """The final scores of ``measure`` among ``observations`` (FHIR JSON), oldest first; with
    ``subject``, an Observation of another subject is left out (one without a subject is kept)."""
    found: list[tuple[date, str, Score]] = []
    for obs in observations:
        if obs.get("resourceType") != "Observation" or obs.get("status") not in _FINAL:
            continue
        other = _subject(obs)
        if subject is not None and other is not None and other != subject:
            continue
        if not measure.matches(obs.get("code")):
            continue
        q = obs.get("valueQuantity")
        value = _number(q.get("value")) if isinstance(q, dict) else _number(obs.get("valueInteger"))
        effective = obs.get("effectiveDateTime")
        if not isinstance(effective, str):
            period = obs.get("effectivePeriod")
            effective = period.get("start") if isinstance(period, dict) else None
        day = _day(effective)
        if value is None or day is None:
            continue
        ref = f"Observation/{obs['id']}" if isinstance(obs.get("id"), str) else None
        found.append((day, str(effective), Score(value, day, ref)))
    found.sort(key=lambda item: (item[0], item[1]))
    return [score for _, _, score in found]


@dataclass(frozen=True)
class GoalScores:
    """A goal's measure, target and due date, the scores of its subject oldest first, and its status."""

    measure: Measure
    target: Target | None
    due: date | None
    series: list[Score]
    status: Achievement

    @property
    def baseline(self) -> Score | None:
        return self.series[0] if self.series else None

    @property
    def latest(self) -> Score | None:
        return self.series[-1] if self.series else None


def goal_scores(goal: Mapping[str, Any], observations: Iterable[Mapping[str, Any]], *, now: datetime,
                mcid: MCIDs | None = None) -> GoalScores | None:
    """The scores and achievement status of ``goal`` from ``observations``; None for a Goal without a
    HEP outcome measure in its targets. Shared by :func:`update_goal` and the engagement summary."""
    found = goal_target(goal)
    if found is None:
        return None
    measure, target, due = found
    series = scores(observations, measure, subject=_subject(goal))
    previous = series[-2] if len(series) > 1 else None
    status = goal_status(
        series[0].value if series else None,
        previous.value if previous else None,
        series[-1].value if series else None,
        target,
        measure,
        mcid,
        due=due,
        today=now.date(),
    )
    return GoalScores(measure, target, due, series, status)


def update_goal(
    goal: Mapping[str, Any],
    observations: Iterable[Mapping[str, Any]],
    *,
    now: datetime,
    mcid: MCIDs | None = None,
) -> dict[str, Any]:
    """A copy of ``goal`` with its achievement status worked out from ``observations``.

    A Goal without a HEP outcome measure in its targets is returned unchanged (as a copy)."""
    updated = copy.deepcopy(dict(goal))
    progress = goal_scores(goal, observations, now=now, mcid=mcid)
    if progress is None:
        return updated
    measure, target, status = progress.measure, progress.target, progress.status
    baseline, latest = progress.baseline, progress.latest
    updated["achievementStatus"] = {
        "coding": [{"system": GOAL_ACHIEVEMENT_SYSTEM, "code": status, "display": ACHIEVEMENT_DISPLAY[status]}],
        "text": ACHIEVEMENT_DISPLAY[status],
    }
    if latest is None or baseline is None:
        return updated
    updated["statusDate"] = latest.day.isoformat()
    reason = f"{measure.key} {latest.value} on {latest.day.isoformat()} (baseline {baseline.value}"
    reason += f", target {target.text()})" if target else ")"
    updated["statusReason"] = reason
    if latest.reference:
        updated["outcomeReference"] = [{"reference": latest.reference}]
    extensions = [
        e
        for e in updated.get("extension") or []
        if not (isinstance(e, dict) and e.get("url") == LATEST_VALUE_EXTENSION)
    ]
    extensions.append(
        {
            "url": LATEST_VALUE_EXTENSION,
            "valueQuantity": {
                "value": latest.value,
                "unit": measure.unit,
                "system": "http://unitsofmeasure.org",
                "code": measure.unit,
            },
        }
    )
    updated["extension"] = extensions
    return updated

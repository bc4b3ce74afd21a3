"""A plan of care (:class:`PlanOfCare`) <-> a FHIR R4 transaction Bundle: CarePlan, Goals, ServiceRequests.

Shape (FHIR workflow, as HL7 BSeR answers a referral):

* ``CarePlan`` -- status draft|active, intent ``plan``, category the discipline (SNOMED CT, as the
  referral ``ServiceRequest`` has it) and US Core ``assess-plan``; ``subject``, ``period``,
  ``author`` (the therapist's PractitionerRole), ``contributor`` (author + clinic), ``addresses``
  the Condition, ``goal`` the Goals, ``supportingInfo`` the referral. R4 ``CarePlan.basedOn`` may
  only point at another CarePlan, so the referral is linked through ``supportingInfo`` here and
  through ``basedOn`` on every ServiceRequest. ``activity[0]`` is the visit schedule
  (``detail`` of kind Appointment, ``scheduledTiming`` 2x/week for 6 weeks, ``reasonCode`` the
  ICD-10-CM diagnosis); every other activity is a ``reference`` to one ServiceRequest. The plan
  revision is the extension :data:`REVISION_EXTENSION` (valueInteger) -- R4 has no element for it.
* one ``ServiceRequest`` per activity -- status as the plan (draft|active), intent ``plan``, code
  CPT (:data:`CPT`), ``occurrenceTiming.repeat`` ``frequency``/``period`` 1/``periodUnit`` wk and
  ``boundsDuration`` in weeks (or ``count`` for a one-off service), ``basedOn`` the referral and the
  CarePlan, ``requester`` the author, ``performer`` the clinic, ``reasonCode``/``reasonReference``
  the diagnosis.
* one ``Goal`` per goal -- ``lifecycleStatus``, ``achievementStatus`` (HL7 goal-achievement),
  ``category`` [term, discipline], ``description.text``, ``target`` (``measure`` LOINC/SNOMED,
  ``detailQuantity`` or ``detailString``, ``dueDate``), ``addresses`` the Condition. Short- vs
  long-term is a category coding in the hub's own code system :data:`GOAL_TERM_SYSTEM` (codes
  ``short-term`` / ``long-term``): neither HL7 goal-category nor any other R4 element says it;
  the due date stays in ``target.dueDate``.
* a goal **baseline** (where the patient stood at the evaluation) is a final ``Observation`` of the
  goal's target measure (category ``therapy``, ``effectiveDateTime`` the baseline date,
  ``valueQuantity`` or ``valueString``, ``performer`` the author) that the Goal ``addresses`` beside
  the Condition: R4 Goal has no baseline element, and ``addresses`` takes an Observation of the state
  the goal sets out to change. Its identifier is ``<plan>/baseline/<goal key>``.
* **precautions** are ``CarePlan.note`` entries whose text starts with :data:`PRECAUTION_PREFIX`.
* a ``Condition`` (ICD-10-CM) only when the diagnosis has no ``reference`` of its own.

Ids and requests: every entry is ``PUT Type/id`` to a uuid5 id over type + identifier system +
identifier value (:func:`deterministic_id`), with ``fullUrl`` ``urn:uuid:<that id>``; references
between entries use those fullUrls. PUT rather than a conditional create because a revised plan
(same identifier, next ``revision``) must *update* the CarePlan, Goals and ServiceRequests it sent
before, and a replayed message must land on the same resources. Goals, ServiceRequests and an own
Condition get identifiers in the plan's identifier system with values ``<plan>/goal/<key>``,
``<plan>/activity/<CPT>`` and ``<plan>/condition/<ICD-10>``. A revision that drops a goal or an
activity leaves the old resource as it was: cancelling it is the caller's business.

The same plan and ``now`` always give the same Bundle; ``now`` only sets ``Bundle.timestamp``.

Reading a plan back is :func:`mappings.plan_of_care.summary.plan_summary`; ending it (discharge, a
cancelled referral) is :mod:`mappings.plan_of_care.ending`.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from mappings.fhir.ids import deterministic_id
from mappings.plan_of_care.codes import (
    CONDITION_CATEGORY,
    CONDITION_CLINICAL,
    CONDITION_VERIFICATION,
    CPT,
    DISCIPLINES,
    GOAL_ACHIEVEMENT_DISPLAY,
    GOAL_ACHIEVEMENT_SYSTEM,
    GOAL_TERM_SYSTEM,
    GOAL_TERMS,
    ICD10CM,
    OBSERVATION_CATEGORY,
    PRECAUTION_PREFIX,
    REVISION_EXTENSION,
    SNOMED,
    UCUM,
    US_CORE_CAREPLAN_CATEGORY,
    frequency_text,
)
from mappings.plan_of_care.model import (
    Diagnosis,
    Goal,
    PlanIdentifier,
    PlanOfCare,
)


def _derived(plan_id: PlanIdentifier, kind: str, key: str) -> dict[str, str]:
    return {"system": plan_id.system, "value": f"{plan_id.value}/{kind}/{key}"}


def _id_of(resource_type: str, identifier: dict[str, str]) -> str:
    return deterministic_id(resource_type, identifier["system"], identifier["value"])


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": f"urn:uuid:{resource['id']}",
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
    }


def _ref(target: str, display: str | None = None) -> dict[str, str]:
    return {"reference": target, **({"display": display} if display else {})}


def _discipline_concept(discipline: str) -> dict[str, Any]:
    code, display, _ = DISCIPLINES[discipline]
    return {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": discipline}


def _diagnosis_concept(diagnosis: Diagnosis) -> dict[str, Any]:
    return {
        "coding": [{"system": ICD10CM, "code": diagnosis.code, "display": diagnosis.display}],
        "text": diagnosis.display,
    }


def _weeks(weeks: int) -> dict[str, Any]:
    return {"value": weeks, "unit": "wk", "system": UCUM, "code": "wk"}


def _timing(
    frequency: int | None, frequency_max: int | None, count: int | None, weeks: int
) -> dict[str, Any]:
    repeat: dict[str, Any] = {"boundsDuration": _weeks(weeks)}
    if count is not None:
        repeat["count"] = count
    if frequency is not None:
        repeat["frequency"] = frequency
        if frequency_max is not None:
            repeat["frequencyMax"] = frequency_max
        repeat["period"] = 1
        repeat["periodUnit"] = "wk"
    return {"repeat": repeat}


def _goal_target(goal: Goal) -> dict[str, Any] | None:
    target: dict[str, Any] = {}
    if goal.measure is not None:
        coding = {"system": goal.measure.system, "code": goal.measure.code}
        if goal.measure.display:
            coding["display"] = goal.measure.display
        target["measure"] = {"coding": [coding]}
    if goal.detail_quantity is not None:
        q = goal.detail_quantity
        target["detailQuantity"] = {
            "value": q.value,
            "unit": q.unit,
            **({"system": UCUM, "code": q.code} if q.code else {}),
        }
    if goal.detail_string is not None:
        target["detailString"] = goal.detail_string
    if goal.due_date is not None:
        target["dueDate"] = goal.due_date.isoformat()
    return target or None


def _baseline(
    goal: Goal, pid: PlanIdentifier, patient: dict[str, str], author: dict[str, str]
) -> dict[str, Any] | None:
    """A goal's baseline as a final Observation of the goal's measure, dated ``baseline_date``."""
    if not goal.has_baseline or goal.measure is None or goal.key is None:
        return None
    identifier = _derived(pid, "baseline", goal.key)
    coding = {"system": goal.measure.system, "code": goal.measure.code}
    if goal.measure.display:
        coding["display"] = goal.measure.display
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _id_of("Observation", identifier),
        "identifier": [identifier],
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "therapy", "display": "Therapy"}]}],
        "code": {"coding": [coding]},
        "subject": patient,
        "effectiveDateTime": (goal.baseline_date.isoformat() if goal.baseline_date else None),
        "performer": [author],
    }
    if goal.baseline_quantity is not None:
        q = goal.baseline_quantity
        observation["valueQuantity"] = {
            "value": q.value,
            "unit": q.unit,
            **({"system": UCUM, "code": q.code} if q.code else {}),
        }
    else:
        observation["valueString"] = goal.baseline_string
    return observation


def _narrative(plan: PlanOfCare) -> dict[str, str]:
    name = DISCIPLINES[plan.discipline][2]
    lines = [
        f"{name} plan of care, revision {plan.revision} ({plan.status})",
        f"Period {plan.period_start.isoformat()} to {plan.period_end.isoformat()}; "
        f"{frequency_text(plan.frequency_per_week, plan.frequency_max_per_week, plan.duration_weeks)}",
        f"Diagnosis {plan.diagnosis.code}: {plan.diagnosis.display}",
        "Services: " + ", ".join(f"{a.code} {a.display}" for a in plan.activities),
    ]
    body = "".join(f"<p>{html.escape(line, quote=False)}</p>" for line in lines)
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


def build_plan_of_care(plan: PlanOfCare, *, now: datetime) -> dict[str, Any]:
    """The FHIR R4 transaction Bundle of ``plan``: CarePlan, [Condition], Goals, ServiceRequests.

    ``now`` (timezone-aware) is the Bundle's timestamp and nothing else. Goal target values are
    ``Decimal``: serialise with :func:`mappings.fhir.jsonio.dumps` (``json.dumps`` refuses them)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    pid = plan.identifier
    plan_identifier = {"system": pid.system, "value": pid.value}
    care_plan_id = _id_of("CarePlan", plan_identifier)
    care_plan_url = f"urn:uuid:{care_plan_id}"
    patient = _ref(plan.patient)
    author = _ref(plan.author)
    discipline = _discipline_concept(plan.discipline)
    diagnosis = _diagnosis_concept(plan.diagnosis)

    entries: list[dict[str, Any]] = []
    if plan.diagnosis.reference is not None:
        condition_ref = plan.diagnosis.reference
    else:
        condition_identifier = _derived(pid, "condition", plan.diagnosis.code)
        condition: dict[str, Any] = {
            "resourceType": "Condition",
            "id": _id_of("Condition", condition_identifier),
            "identifier": [condition_identifier],
            "clinicalStatus": {
                "coding": [{"system": CONDITION_CLINICAL, "code": "active", "display": "Active"}]
            },
            "verificationStatus": {
                "coding": [{"system": CONDITION_VERIFICATION, "code": "confirmed", "display": "Confirmed"}]
            },
            "category": [
                {
                    "coding": [
                        {
                            "system": CONDITION_CATEGORY,
                            "code": "encounter-diagnosis",
                            "display": "Encounter Diagnosis",
                        }
                    ]
                }
            ],
            "code": diagnosis,
            "subject": patient,
            "recorder": author,
        }
        if plan.created is not None:
            condition["recordedDate"] = plan.created.isoformat()
        entries.append(_entry(condition))
        condition_ref = entries[-1]["fullUrl"]

    goal_refs: list[dict[str, str]] = []
    for goal in plan.goals:
        assert goal.key is not None  # filled in by PlanOfCare
        identifier = _derived(pid, "goal", goal.key)
        term_code, term_display = GOAL_TERMS[goal.term]
        resource: dict[str, Any] = {
            "resourceType": "Goal",
            "id": _id_of("Goal", identifier),
            "identifier": [identifier],
            "lifecycleStatus": goal.lifecycle_status,
        }
        if goal.achievement_status is not None:
            resource["achievementStatus"] = {
                "coding": [
                    {
                        "system": GOAL_ACHIEVEMENT_SYSTEM,
                        "code": goal.achievement_status,
                        "display": GOAL_ACHIEVEMENT_DISPLAY[goal.achievement_status],
                    }
                ]
            }
        resource["category"] = [
            {"coding": [{"system": GOAL_TERM_SYSTEM, "code": term_code, "display": term_display}]},
            discipline,
        ]
        resource["description"] = {"text": goal.description}
        resource["subject"] = patient
        resource["startDate"] = plan.period_start.isoformat()
        target = _goal_target(goal)
        if target is not None:
            resource["target"] = [target]
        resource["expressedBy"] = author
        resource["addresses"] = [_ref(condition_ref)]
        baseline = _baseline(goal, pid, patient, author)
        if baseline is not None:
            entries.append(_entry(baseline))
            resource["addresses"].append(_ref(entries[-1]["fullUrl"]))
        entries.append(_entry(resource))
        goal_refs.append(_ref(entries[-1]["fullUrl"]))

    activity_refs: list[dict[str, str]] = []
    for activity in plan.activities:
        identifier = _derived(pid, "activity", activity.code)
        frequency, frequency_max = plan.activity_frequency(activity)
        resource = {
            "resourceType": "ServiceRequest",
            "id": _id_of("ServiceRequest", identifier),
            "identifier": [identifier],
            "basedOn": [_ref(plan.referral), _ref(care_plan_url)],
            "status": plan.status,
            "intent": "plan",
            "category": [discipline],
            "code": {"coding": [{"system": CPT, "code": activity.code, "display": activity.display}]},
            "subject": patient,
            "occurrenceTiming": _timing(frequency, frequency_max, activity.count, plan.duration_weeks),
            "requester": author,
            "performer": [_ref(plan.organization)],
            "reasonCode": [diagnosis],
            "reasonReference": [_ref(condition_ref)],
        }
        entries.append(_entry(resource))
        activity_refs.append(_ref(entries[-1]["fullUrl"]))

    visits: dict[str, Any] = {
        "kind": "Appointment",
        "code": discipline,
        "reasonCode": [diagnosis],
        "reasonReference": [_ref(condition_ref)],
    }
    if goal_refs:
        visits["goal"] = goal_refs
    visits["status"] = "scheduled" if plan.status == "active" else "not-started"
    visits["scheduledTiming"] = _timing(
        plan.frequency_per_week, plan.frequency_max_per_week, None, plan.duration_weeks
    )
    visits["performer"] = [_ref(plan.organization)]
    visits["description"] = (
        f"{DISCIPLINES[plan.discipline][2]} visits "
        f"{frequency_text(plan.frequency_per_week, plan.frequency_max_per_week, plan.duration_weeks)}"
    )

    care_plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": care_plan_id,
        "text": _narrative(plan),
        "extension": [{"url": REVISION_EXTENSION, "valueInteger": plan.revision}],
        "identifier": [plan_identifier],
        "status": plan.status,
        "intent": "plan",
        "category": [
            discipline,
            {
                "coding": [
                    {
                        "system": US_CORE_CAREPLAN_CATEGORY,
                        "code": "assess-plan",
                        "display": "Assessment and Plan of Treatment",
                    }
                ]
            },
        ],
        "title": f"{DISCIPLINES[plan.discipline][2]} plan of care",
        "description": frequency_text(
            plan.frequency_per_week, plan.frequency_max_per_week, plan.duration_weeks
        ),
        "subject": patient,
        "period": {"start": plan.period_start.isoformat(), "end": plan.period_end.isoformat()},
    }
    if plan.created is not None:
        care_plan["created"] = plan.created.isoformat()
    care_plan["author"] = author
    care_plan["contributor"] = [author, _ref(plan.organization)]
    care_plan["addresses"] = [_ref(condition_ref, plan.diagnosis.display)]
    care_plan["supportingInfo"] = [_ref(plan.referral)]
    if goal_refs:
        care_plan["goal"] = goal_refs
    care_plan["activity"] = [{"detail": visits}] + [{"reference": ref} for ref in activity_refs]
    if plan.precautions:
        care_plan["note"] = [{"text": f"{PRECAUTION_PREFIX}{text}"} for text in plan.precautions]

    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "timestamp": now.isoformat(),
        "entry": [_entry(care_plan), *entries],
    }

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

Ending a plan (discharge, a cancelled referral): :func:`end_care_plan`, :func:`end_goal` and
:func:`end_plan_request` give the new versions of the CarePlan, its Goals and its ServiceRequests.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import copy
import html
import re
from collections.abc import Mapping
from datetime import date, datetime
from types import MappingProxyType
from typing import Any, Literal

from mappings.fhir.ids import deterministic_id
from mappings.plan_of_care.model import (
    Activity,
    Amount,
    Diagnosis,
    Goal,
    Measure,
    PlanIdentifier,
    PlanOfCare,
    PlanSummary,
)

#: the uuid5 namespace of the hub's deterministic ids (the one ``mappings.referral.intake`` uses)
CPT = "http://www.ama-assn.org/go/cpt"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
#: CarePlan.note text that carries one precaution
PRECAUTION_PREFIX = "Precaution: "
GOAL_ACHIEVEMENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/goal-achievement"
GOAL_TERM_SYSTEM = "https://therapy-hub.example/CodeSystem/goal-term"
REVISION_EXTENSION = "https://therapy-hub.example/StructureDefinition/plan-revision"
US_CORE_CAREPLAN_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

#: discipline -> (SNOMED CT code, SNOMED display, plain name); the codes the referral intake uses
DISCIPLINES: dict[str, tuple[str, str, str]] = {
    "PT": ("91251008", "Physical therapy procedure", "Physical therapy"),
    "OT": ("84478008", "Occupational therapy", "Occupational therapy"),
    "SLP": ("5154007", "Speech therapy", "Speech-language pathology"),
}
GOAL_TERMS: dict[str, tuple[str, str]] = {
    "short": ("short-term", "Short-term goal"),
    "long": ("long-term", "Long-term goal"),
}
GOAL_ACHIEVEMENT_DISPLAY: dict[str, str] = {
    "in-progress": "In Progress",
    "improving": "Improving",
    "worsening": "Worsening",
    "no-change": "No Change",
    "achieved": "Achieved",
    "sustaining": "Sustaining",
    "not-achieved": "Not Achieved",
    "no-progress": "No Progress",
    "not-attainable": "Not Attainable",
}


def frequency_text(frequency: int | None, frequency_max: int | None, weeks: int | None = None) -> str:
    """``2x/week``, ``2-3x/week``, with `` for 6 weeks`` when ``weeks`` is given."""
    text = f"{frequency}{f'-{frequency_max}' if frequency_max else ''}x/week"
    if weeks is not None:
        text += f" for {weeks} week{'s' if weeks != 1 else ''}"
    return text


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


# ----------------------------------------------------------------------------- reading back


class PlanBundleError(ValueError):
    """The Bundle does not hold a plan of care as :func:`build_plan_of_care` writes it.

    Messages name elements, never their values (they may identify a patient)."""


def _index(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """reference -> resource, by fullUrl and by ``Type/id``."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise PlanBundleError("not a Bundle")
    index: dict[str, dict[str, Any]] = {}
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        if isinstance(entry.get("fullUrl"), str):
            index[entry["fullUrl"]] = resource
        if isinstance(resource.get("id"), str) and isinstance(resource.get("resourceType"), str):
            index[f"{resource['resourceType']}/{resource['id']}"] = resource
    return index


def _resolve(
    index: dict[str, dict[str, Any]], reference: Any, resource_type: str, where: str
) -> dict[str, Any]:
    target = reference.get("reference") if isinstance(reference, dict) else None
    if isinstance(target, str):
        found = index.get(target)
        if found is None and "/" in target:  # an absolute URL: .../Type/id
            found = index.get("/".join(target.rstrip("/").split("/")[-2:]))
        if found is not None and found.get("resourceType") == resource_type:
            return found
    raise PlanBundleError(f"{where} does not resolve to a {resource_type} in the Bundle")


def _coding(concept: Any, system: str) -> dict[str, Any] | None:
    for coding in (concept or {}).get("coding") or []:
        if isinstance(coding, dict) and coding.get("system") == system:
            return coding
    return None


def _read_timing(timing: Any) -> tuple[int | None, int | None, int | None, int | None]:
    """(frequency, frequency max, count, weeks) of a Timing as :func:`_timing` writes it."""
    repeat = (timing or {}).get("repeat") or {}
    if repeat.get("frequency") is not None and (repeat.get("period"), repeat.get("periodUnit")) != (1, "wk"):
        raise PlanBundleError("Timing.repeat must be a frequency per 1 wk")
    bounds = repeat.get("boundsDuration") or {}
    if bounds and bounds.get("code", bounds.get("unit")) != "wk":
        raise PlanBundleError("Timing.repeat.boundsDuration must be in weeks")
    weeks = bounds.get("value")
    return repeat.get("frequency"), repeat.get("frequencyMax"), repeat.get("count"), weeks


def _read_baseline(index: dict[str, dict[str, Any]], goal: dict[str, Any], plan_id: PlanIdentifier,
                   key: str | None) -> dict[str, Any]:
    """The baseline fields of a Goal: the Observation it ``addresses`` with the plan's baseline id."""
    wanted = {"system": plan_id.system, "value": f"{plan_id.value}/baseline/{key}"}
    for address in goal.get("addresses") or []:
        reference: Any = address.get("reference") if isinstance(address, dict) else None
        observation = index.get(reference)
        if not observation or wanted not in (observation.get("identifier") or []):
            continue
        out: dict[str, Any] = {"baseline_date": str(observation.get("effectiveDateTime") or "")[:10] or None}
        if "valueQuantity" in observation:
            q = observation["valueQuantity"]
            out["baseline_quantity"] = Amount(value=q.get("value"), unit=q.get("unit"), code=q.get("code"))
        else:
            out["baseline_string"] = observation.get("valueString")
        return out
    return {}


def _read_goal(resource: dict[str, Any], plan_id: PlanIdentifier) -> dict[str, Any]:
    prefix = f"{plan_id.value}/goal/"
    key = next(
        (
            i["value"][len(prefix) :]
            for i in resource.get("identifier") or []
            if i.get("system") == plan_id.system and str(i.get("value", "")).startswith(prefix)
        ),
        None,
    )
    term = None
    for category in resource.get("category") or []:
        coding = _coding(category, GOAL_TERM_SYSTEM)
        if coding is not None:
            code: Any = coding.get("code")  # a JSON value, looked up as it is
            term = {c: t for t, (c, _) in GOAL_TERMS.items()}.get(code)
    goal: dict[str, Any] = {
        "key": key,
        "term": term,
        "description": (resource.get("description") or {}).get("text"),
        "lifecycle_status": resource.get("lifecycleStatus"),
    }
    achievement = _coding(resource.get("achievementStatus"), GOAL_ACHIEVEMENT_SYSTEM)
    if achievement is not None:
        goal["achievement_status"] = achievement.get("code")
    target = (resource.get("target") or [None])[0] or {}
    measure = ((target.get("measure") or {}).get("coding") or [None])[0]
    if measure:
        goal["measure"] = Measure(
            system=measure.get("system"), code=measure.get("code"), display=measure.get("display")
        )
    if "detailQuantity" in target:
        q = target["detailQuantity"]
        goal["detail_quantity"] = Amount(value=q.get("value"), unit=q.get("unit"), code=q.get("code"))
    if "detailString" in target:
        goal["detail_string"] = target["detailString"]
    if "dueDate" in target:
        goal["due_date"] = target["dueDate"]
    return goal


def plan_summary(care_plan_bundle: dict[str, Any]) -> PlanSummary:
    """Read a plan of care back from a Bundle that holds its CarePlan, Goals and ServiceRequests
    (the transaction of :func:`build_plan_of_care`, or a search result with them included).

    Raises :class:`PlanBundleError` when something is missing; pydantic's ``ValidationError`` when
    what is there does not make a valid :class:`PlanOfCare`."""
    index = _index(care_plan_bundle)
    care_plans = {id(r): r for r in index.values() if r.get("resourceType") == "CarePlan"}
    if len(care_plans) != 1:
        raise PlanBundleError("the Bundle must hold exactly one CarePlan")
    cp = next(iter(care_plans.values()))
    identifiers = cp.get("identifier") or []
    if not identifiers:
        raise PlanBundleError("CarePlan.identifier is missing")
    plan_id = PlanIdentifier(system=identifiers[0].get("system"), value=identifiers[0].get("value"))
    revision = next(
        (e.get("valueInteger") for e in cp.get("extension") or [] if e.get("url") == REVISION_EXTENSION), 1
    )
    by_snomed = {code: name for name, (code, _, _) in DISCIPLINES.items()}
    discipline = None
    for category in cp.get("category") or []:
        coding = _coding(category, SNOMED)
        if coding is not None and coding.get("code") in by_snomed:
            discipline = by_snomed[coding["code"]]
    author = (cp.get("author") or {}).get("reference")
    organization = next(
        (
            c.get("reference")
            for c in cp.get("contributor") or []
            if str(c.get("reference", "")).split("/")[-2:-1] == ["Organization"]
        ),
        None,
    )
    referral = next(
        (
            s.get("reference")
            for s in cp.get("supportingInfo") or []
            if str(s.get("reference", "")).split("/")[-2:-1] == ["ServiceRequest"]
        ),
        None,
    )

    activities = cp.get("activity") or []
    visits = next((a["detail"] for a in activities if isinstance(a.get("detail"), dict)), None)
    if visits is None:
        raise PlanBundleError("CarePlan.activity has no visit schedule (activity.detail)")
    frequency, frequency_max, _, weeks = _read_timing(visits.get("scheduledTiming"))
    dx = next((_coding(c, ICD10CM) for c in visits.get("reasonCode") or [] if _coding(c, ICD10CM)), None)
    if dx is None:
        raise PlanBundleError("CarePlan.activity.detail.reasonCode has no ICD-10-CM code")
    addresses = (cp.get("addresses") or [{}])[0]
    condition_ref = addresses.get("reference")
    own = index.get(condition_ref) if isinstance(condition_ref, str) else None
    own_identifier = {"system": plan_id.system, "value": f"{plan_id.value}/condition/{dx.get('code')}"}
    if own is not None and own_identifier in (own.get("identifier") or []):
        condition_ref = None  # the plan's own Condition, written again by the next build

    plan_activities = []
    for number, activity in enumerate(activities):
        if "reference" not in activity:
            continue
        sr = _resolve(
            index, activity["reference"], "ServiceRequest", f"CarePlan.activity[{number}].reference"
        )
        cpt = _coding(sr.get("code"), CPT)
        if cpt is None:
            raise PlanBundleError(f"ServiceRequest of CarePlan.activity[{number}] has no CPT code")
        a_freq, a_max, a_count, _ = _read_timing(sr.get("occurrenceTiming"))
        inherits = a_count is None and (a_freq, a_max) == (frequency, frequency_max)
        plan_activities.append(
            Activity.model_validate(
                {
                    "code": cpt.get("code"),
                    "display": cpt.get("display"),
                    "frequency_per_week": None if inherits else a_freq,
                    "count": a_count,
                }
            )
        )
    goals = []
    for number, ref in enumerate(cp.get("goal") or []):
        resource = _resolve(index, ref, "Goal", f"CarePlan.goal[{number}]")
        goal = _read_goal(resource, plan_id)
        goals.append({**goal, **_read_baseline(index, resource, plan_id, goal["key"])})
    precautions = [
        str(n["text"])[len(PRECAUTION_PREFIX) :]
        for n in cp.get("note") or []
        if str(n.get("text", "")).startswith(PRECAUTION_PREFIX)
    ]
    period = cp.get("period") or {}
    plan = PlanOfCare.model_validate(
        {
            "identifier": plan_id,
            "revision": revision,
            "status": cp.get("status"),
            "discipline": discipline,
            "patient": (cp.get("subject") or {}).get("reference"),
            "referral": referral,
            "diagnosis": Diagnosis.model_validate(
                {"code": dx.get("code"), "display": dx.get("display"), "reference": condition_ref}
            ),
            "author": author,
            "organization": organization,
            "created": cp.get("created"),
            "period_start": period.get("start"),
            "period_end": period.get("end"),
            "frequency_per_week": frequency,
            "frequency_max_per_week": frequency_max,
            "duration_weeks": weeks,
            "activities": plan_activities,
            "goals": goals,
            "precautions": precautions,
        }
    )
    return PlanSummary.model_validate({"plan": plan, "care_plan_id": cp.get("id")})


# ----------------------------------------------------------------------------- ending a plan

#: how a plan of care ends: ``completed`` at discharge, ``revoked`` when the referral is cancelled
PlanEnd = Literal["completed", "revoked"]
#: CarePlan.status codes after which nothing changes the plan
ENDED_PLAN_STATUSES = frozenset({"completed", "revoked", "entered-in-error"})
#: Goal.lifecycleStatus when the plan ends (R4 http://hl7.org/fhir/goal-status): a goal that was agreed
#: (accepted) or pursued (active, on-hold) is "no longer being sought" -> completed, whether it was met
#: or not (achievementStatus says that, and is left as the therapist recorded it); a goal never taken
#: up (proposed, planned) was abandoned -> cancelled. Other statuses are final and stay.
GOAL_STATUS_AT_END: Mapping[str, str] = MappingProxyType(
    {
        "accepted": "completed",
        "active": "completed",
        "on-hold": "completed",
        "proposed": "cancelled",
        "planned": "cancelled",
    }
)
_ENDED_ACTIVITY_STATUSES = frozenset({"completed", "cancelled", "stopped", "entered-in-error"})
_PARAGRAPH = re.compile(r"<p>(.*?)</p>", re.DOTALL)


def _date_of(value: Any) -> date | None:
    try:
        return date.fromisoformat(value[:10]) if isinstance(value, str) else None
    except ValueError:
        return None


def _ended_narrative(care_plan: dict[str, Any], old: Any) -> dict[str, str]:
    """The narrative :func:`_narrative` writes, its first two lines (status, period) rebuilt from the
    CarePlan itself; the other lines (diagnosis, services) are kept from ``old`` when it is the hub's."""
    revision = next(
        (e.get("valueInteger") for e in care_plan.get("extension") or [] if e.get("url") == REVISION_EXTENSION), 1
    )
    title = care_plan.get("title") or "Plan of care"
    period = care_plan.get("period") or {}
    lines = [
        f"{title}, revision {revision} ({care_plan.get('status')})",
        f"Period {str(period.get('start', ''))[:10]} to {str(period.get('end', ''))[:10]}"
        + (f"; {care_plan['description']}" if care_plan.get("description") else ""),
    ]
    body = "".join(f"<p>{html.escape(line, quote=False)}</p>" for line in lines)
    div = old.get("div") if isinstance(old, Mapping) else None
    paragraphs = _PARAGRAPH.findall(div) if isinstance(div, str) else []
    if len(paragraphs) > 2 and paragraphs[0].startswith(html.escape(f"{title}, revision", quote=False)):
        body += "".join(f"<p>{p}</p>" for p in paragraphs[2:])  # already escaped
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


def end_care_plan(care_plan: Mapping[str, Any], *, ended: date, end: PlanEnd = "completed") -> dict[str, Any] | None:
    """The CarePlan ended on ``ended`` (the discharge date); None when it has ended already.

    * ``status`` ``end``: ``completed`` at discharge, ``revoked`` when the referral was cancelled;
    * ``period.end``: the earlier of the planned end and ``ended`` (never before ``period.start``): a
      patient discharged early ended the plan then, while a discharge recorded after the planned end
      does not stretch the period the physician certified;
    * the visit schedule (``activity.detail``) ``completed`` (``stopped`` for a revoked plan,
      ``cancelled`` when it had not started); the narrative tells the new status and period.

    ``care_plan`` is left untouched; everything else (goals, activities, revision, certification)
    stays as it was.
    """
    if care_plan.get("status") in ENDED_PLAN_STATUSES:
        return None
    new = copy.deepcopy(dict(care_plan))
    new["status"] = end
    period = dict(new.get("period") or {})
    start, planned = _date_of(period.get("start")), _date_of(period.get("end"))
    last = ended if planned is None else min(planned, ended)
    if start is not None and last < start:
        last = start
    period["end"] = last.isoformat()
    new["period"] = period
    for activity in new.get("activity") or []:
        detail = activity.get("detail") if isinstance(activity, dict) else None
        if isinstance(detail, dict) and detail.get("status") not in _ENDED_ACTIVITY_STATUSES:
            if detail.get("status") == "not-started":
                detail["status"] = "cancelled"
            else:
                detail["status"] = "completed" if end == "completed" else "stopped"
    if "text" in new:
        new["text"] = _ended_narrative(new, new["text"])
    return new


def end_goal(goal: Mapping[str, Any], *, on: date, reason: str) -> dict[str, Any] | None:
    """The Goal when its plan ends on ``on`` (:data:`GOAL_STATUS_AT_END`), with ``statusDate`` ``on``
    and ``statusReason`` ``reason``; None when its lifecycle status is final already.
    ``achievementStatus`` is never touched: a goal not achieved stays not achieved."""
    status = GOAL_STATUS_AT_END.get(str(goal.get("lifecycleStatus")))
    if status is None:
        return None
    new = copy.deepcopy(dict(goal))
    new["lifecycleStatus"] = status
    new["statusDate"] = on.isoformat()
    new["statusReason"] = reason
    return new


def end_plan_request(service_request: Mapping[str, Any], *, end: PlanEnd = "completed") -> dict[str, Any] | None:
    """A ServiceRequest of the plan (intent ``plan``) when the plan ends: ``completed`` at discharge,
    ``revoked`` when the referral was cancelled or the request was still a draft; None when it has
    ended already or is not a plan's request (the referrer's order is the referrer's to close)."""
    if service_request.get("intent") != "plan" or service_request.get("status") in ENDED_PLAN_STATUSES:
        return None
    new = copy.deepcopy(dict(service_request))
    new["status"] = "revoked" if end == "revoked" or new.get("status") == "draft" else "completed"
    return new

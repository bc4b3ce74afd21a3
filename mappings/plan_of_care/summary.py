"""A plan of care read back from FHIR: :func:`plan_summary` of a Bundle that holds its CarePlan, Goals
and ServiceRequests as :func:`mappings.plan_of_care.fhir.build_plan_of_care` writes them."""

from __future__ import annotations

from typing import Any

from mappings.plan_of_care.codes import (
    CPT,
    DISCIPLINES,
    GOAL_ACHIEVEMENT_SYSTEM,
    GOAL_TERM_SYSTEM,
    GOAL_TERMS,
    ICD10CM,
    PRECAUTION_PREFIX,
    REVISION_EXTENSION,
    SNOMED,
)
from mappings.plan_of_care.model import (
    Activity,
    Amount,
    Diagnosis,
    Measure,
    PlanIdentifier,
    PlanOfCare,
    PlanSummary,
)


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
    """(frequency, frequency max, count, weeks) of a Timing as
    :func:`~mappings.plan_of_care.fhir.build_plan_of_care` writes it."""
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

"""A patient's HEP engagement (``GET /patients/{id}/engagement``), from what the hub stored.

The typed events are parsed again from the patient's accepted HEP webhooks in the message store
(:func:`hub.inbound.hep.patient_events`: the raw bodies are kept anyway, and parsing is pure, so no
second copy of the events is needed and nothing has to be reconstructed from Observations); the
outcome Observations are those events' (:func:`mappings.hep.observations.replay_observations`,
the same resources, ids and values the webhook wrote to the FHIR store); the Goals are read from the
store (the CarePlan's ``goal`` references). The prescription (sessions per week, start) is the one
the connector sends the vendor (:func:`mappings.hep.program.program_body` over the stored CarePlan
and its exercise ServiceRequests); without a frequency in the plan, daily (7 a week); without the
CarePlan, from the first event's day.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hub.boundary import Work
from hub.errors import HubError
from hub.fhir.service import FhirService
from hub.inbound.hep import care_plan_goals, patient_events, stored_content
from mappings.hep.adherence import Prescription
from mappings.hep.engagement import engagement_summary, summary_json
from mappings.hep.events import HepEvent, OutcomeRecorded
from mappings.hep.observations import replay_observations
from mappings.hep.program import DeliveryResources, ProgramError, program_body

__all__ = ["DEFAULT_PER_WEEK", "patient_engagement"]

#: sessions a week when the plan gives no frequency
DEFAULT_PER_WEEK = 7


def _prescription(fhir: FhirService, care_plan_id: str | None, events: list[HepEvent],
                  now: datetime) -> Prescription:
    first = min((e.occurred_at.date() for e in events), default=now.date() - timedelta(days=1))
    if care_plan_id is None:
        return Prescription(DEFAULT_PER_WEEK, first)
    try:
        plan = stored_content(fhir.read("CarePlan", care_plan_id))
    except HubError:
        return Prescription(DEFAULT_PER_WEEK, first)
    index: dict[str, dict[str, Any]] = {}
    for activity in plan.get("activity") or []:
        ref = (activity.get("reference") or {}).get("reference") if isinstance(activity, dict) else None
        if isinstance(ref, str) and ref.count("/") == 1:
            kind, rid = ref.split("/")
            try:
                index[ref] = stored_content(fhir.read(kind, rid))
            except HubError:
                continue
    try:
        body = program_body(DeliveryResources(plan, index), today=now.date())
    except ProgramError:
        return Prescription(DEFAULT_PER_WEEK, first)
    per_week = int((body.get("frequency") or {}).get("per_week") or DEFAULT_PER_WEEK)
    ends = datetime.fromisoformat(body["ends_on"]).date() if body.get("ends_on") else None
    return Prescription(per_week, datetime.fromisoformat(body["starts_on"]).date(), ends)


def patient_engagement(work: Work, patient_id: str, *, now: datetime) -> dict[str, Any]:
    """The engagement summary of ``Patient/<patient_id>`` as JSON (:func:`mappings.hep.engagement.summary_json`);
    ``NotFound`` when the caller cannot see that patient."""
    fhir = work.fhir
    fhir.read("Patient", patient_id)  # the caller's access policy decides (404 when not visible)
    events = patient_events(work.session, work.settings, tenant=work.tenant, patient_id=patient_id)
    programs = [e for e in sorted(events, key=lambda e: e.occurred_at) if e.program is not None]
    care_plan_id = programs[-1].program.external_id if programs and programs[-1].program else None
    goals = care_plan_goals(fhir, care_plan_id) if care_plan_id else []
    observations = list(replay_observations([e for e in events if isinstance(e, OutcomeRecorded)]).values())
    summary = engagement_summary(f"Patient/{patient_id}", events, _prescription(fhir, care_plan_id, events, now),
                                 goals=goals, observations=observations, now=now,
                                 care_plan=f"CarePlan/{care_plan_id}" if care_plan_id else None)
    return summary_json(summary)

"""Plan of care, certification clocks, signing and discharge: the second half of the referral loop.

- ``establish_plan``: the clinic's therapist writes the plan (CarePlan, ServiceRequests, Goals), the
  hub renders the certification PDF (DocumentReference) and opens the obligations (Tasks with due
  dates) from the certification clocks; certification Tasks are owned by the referring physician.
- ``refresh_clocks``: recomputes the obligations from the facts (plan period, treatment days counted
  from finished Encounters, signatures, progress reports); overdue ones get business status overdue.
- Signing: the referrer completes the certification Task (FHIR PUT or ``/certifications/{id}/sign``);
  the hub records a Provenance with a signature and marks the plan certified.
- ``discharge``: a BSeR feedback Composition in Task.output and the referral Task completed.
- End of the episode (``end_episode``, run by the workflow rules in the transaction that moves the
  referral Task to ``completed`` -- a discharge, ``/status`` or a FHIR PUT -- or ``cancelled``): every open
  obligation is cancelled with a reason ("patient discharged", "referral cancelled"), those met stay
  completed; the CarePlan becomes ``completed`` (``revoked`` for a cancelled referral), its period
  ending on the discharge date when that is before the planned end; its Goals no longer sought
  (``completed``, or ``cancelled`` when never taken up; achievementStatus untouched) and its
  ServiceRequests ``completed`` (``revoked``). Clocks are never recomputed for an ended plan, so
  nothing reopens and no reminder is routed; a plan whose referral ended before the hub did this is
  closed by the next clock run, as of the day the referral ended.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, Field

from hub.errors import BadRequest, Conflict, NotFound
from hub.fhir.events import Change
from hub.referrals.episode import EPISODE_END
from hub.referrals.plan_records import (
    CLOSED_OBLIGATION,
    OBLIGATION_KINDS,
    PLAN_SYSTEM,
    REVISION_URL,
    obligation_code,
    plan_extension,
    plan_return_code,
)
from hub.referrals.service import is_referral_task
from hub.referrals.signing import SignIn, Signing
from mappings.fhir import jsonio
from mappings.plan_of_care.fhir import build_plan_of_care
from mappings.plan_of_care.model import Activity, Diagnosis, Goal, PlanIdentifier, PlanOfCare
from mappings.plan_of_care.pdf import plan_document_reference, render_plan_pdf
from mappings.plan_of_care.summary import plan_summary
from mappings.referral.feedback import FeedbackEntry, feedback_composition, task_output_for_feedback
from mappings.referral.intake import referral_category
from mappings.referral.task_state import apply_transition


class PlanIn(BaseModel):
    """What the therapist sends to ``POST /referrals/{task_id}/plan-of-care``."""

    author: str = Field(pattern=r"^PractitionerRole/[A-Za-z0-9\-.]{1,64}$",
                        description="The therapist's PractitionerRole")
    status: str = Field(default="active", pattern="^(draft|active)$")
    period_start: date
    period_end: date
    frequency_per_week: int = Field(ge=1, le=14)
    frequency_max_per_week: int | None = Field(default=None, ge=2, le=14)
    duration_weeks: int = Field(ge=1, le=52)
    activities: list[Activity] = Field(min_length=1, max_length=40)
    goals: list[Goal] = Field(default_factory=list, max_length=40)
    precautions: list[str] = Field(default_factory=list, max_length=20,
                                   description="Precautions / contraindications the physician certifies")
    initial_treatment: date | None = Field(default=None, description="Default: the first treatment day")
    therapist_name: str | None = Field(default=None, min_length=1, max_length=200,
                                       description="Printed when the author PractitionerRole names no one")


class DischargeIn(BaseModel):
    summary: str = Field(min_length=1, max_length=4000)
    outcome: str | None = Field(default=None, max_length=4000)
    author: str | None = Field(default=None, pattern=r"^PractitionerRole/[A-Za-z0-9\-.]{1,64}$")


class PlanService(Signing):
    """The plan of care of a referral: established, its clocks kept (:mod:`hub.referrals.clocks`),
    signed (:mod:`hub.referrals.signing`), ended with the episode (:mod:`hub.referrals.episode`) and
    discharged; :meth:`on_change` holds the rules that react to the store's change events."""

    # ------------------------------------------------------------ plan of care

    def establish_plan(self, task_id: str, body: PlanIn) -> dict[str, Any]:
        task = self._read("Task", task_id)
        if not is_referral_task(task):
            raise NotFound(f"Task/{task_id} is not a referral")
        if task.get("status") not in ("accepted", "in-progress"):
            raise Conflict(f"A plan of care needs an accepted referral; this one is {task.get('status')}",
                           expression="Task.status")
        sr_ref = task["focus"]["reference"]
        sr = self._read(*sr_ref.split("/"))
        condition_ref = ((sr.get("reasonReference") or [{}])[0]).get("reference")
        if not condition_ref:
            raise Conflict("The referral has no reason (Condition) to address",
                           expression="ServiceRequest.reasonReference")
        condition = self._read(*condition_ref.split("/"))
        coding = (condition.get("code") or {}).get("coding", [{}])[0]
        existing = self._plans_for(sr_ref)
        revision = 1
        if existing:
            ext = plan_extension(existing[0], REVISION_URL)
            revision = int(ext.get("valueInteger", 1)) + 1 if ext else 2
        plan = PlanOfCare(
            identifier=PlanIdentifier(system=PLAN_SYSTEM, value=task_id),
            revision=revision,
            status=body.status,
            discipline=referral_category(sr) or "PT",
            patient=sr["subject"]["reference"],
            referral=sr_ref,
            diagnosis=Diagnosis(code=coding.get("code", "R69"), display=coding.get("display") or "Diagnosis",
                                reference=condition_ref),
            author=body.author,
            organization=task["owner"]["reference"],
            created=self._now().date(),
            period_start=body.period_start,
            period_end=body.period_end,
            frequency_per_week=body.frequency_per_week,
            frequency_max_per_week=body.frequency_max_per_week,
            duration_weeks=body.duration_weeks,
            activities=body.activities,
            goals=body.goals,
            precautions=body.precautions,
        )
        now_aware = self._now().replace(tzinfo=UTC)
        bundle = build_plan_of_care(plan, now=now_aware)
        self.fhir.process_bundle(bundle, return_preference="minimal")
        summary = plan_summary(bundle)
        self._apply_clinic_settings(task["owner"]["reference"])
        return_code = plan_return_code(summary.care_plan_id, revision)
        pdf = render_plan_pdf(summary, return_code=return_code, generated_at=now_aware,
                              **self._document_inputs(sr, task["owner"]["reference"], body.author,
                                                      therapist_name=body.therapist_name))
        document = plan_document_reference(pdf, plan_ref=summary.care_plan_ref, patient_ref=plan.patient,
                                           now=now_aware, return_code=return_code)
        self.fhir.update("DocumentReference", document["id"], document)
        if task.get("status") == "accepted":
            self.fhir.update("Task", task_id, apply_transition(task, "in-progress", now=self._now()))
            task = self._read("Task", task_id)
        tasks = self.refresh_clocks(summary.care_plan_id, initial_treatment=body.initial_treatment,
                                    plan_changed=revision > 1)
        self._tell_referrer(task, f"Plan of care (revision {revision}) ready for your signature, "
                                  f"return code {return_code}")
        return {
            "care_plan": summary.care_plan_ref,
            "revision": revision,
            "document": f"DocumentReference/{document['id']}",
            "return_code": return_code,
            "obligations": tasks,
        }

    # ------------------------------------------------------------ workflow rules (reactions to changes)

    def on_change(self, change: Change) -> None:
        super().on_change(change)
        resource = change.resource or {}
        if change.resource_type == "Task" and change.interaction == "update" and change.previous:
            before = jsonio.loads(change.previous).get("status")
            if (obligation_code(resource) in OBLIGATION_KINDS and before in CLOSED_OBLIGATION
                    and resource.get("status") != before):
                # e.g. a certification cancelled at discharge "completed" by a PUT: that would record
                # a signature on a plan that has ended
                raise Conflict(f"This obligation is {before}: it cannot become {resource.get('status')}",
                               expression="Task.status")
        if (change.resource_type == "Task" and change.interaction == "update"
                and obligation_code(resource) in ("certification", "recertification")
                and resource.get("status") == "completed" and change.previous
                and jsonio.loads(change.previous).get("status") != "completed"):
            self._record_signature(resource)
        elif change.resource_type == "Encounter" and change.interaction in ("create", "update"):
            self._encounter_changed(resource)
        elif (change.resource_type == "Task" and change.interaction == "update" and is_referral_task(resource)
              and resource.get("status") in EPISODE_END and change.previous
              and jsonio.loads(change.previous).get("status") != resource.get("status")):
            self.end_episode(resource, ended=self._now().date())  # the transition was checked by super()

    def _encounter_changed(self, encounter: dict[str, Any]) -> None:
        if encounter.get("status") != "finished":
            return
        for based_on in encounter.get("basedOn") or []:
            for plan in self._plans_for(based_on.get("reference", "")):
                self.refresh_clocks(plan["id"])

    # ------------------------------------------------------------ discharge

    def discharge(self, task_id: str, body: DischargeIn) -> dict[str, Any]:
        task = self._read("Task", task_id)
        if not is_referral_task(task):
            raise NotFound(f"Task/{task_id} is not a referral")
        if task.get("status") == "completed":  # a second discharge changes nothing: the same 409 every time
            raise Conflict("This referral is discharged already (Task.status completed)", expression="Task.status")
        if task.get("status") != "in-progress":
            raise Conflict(f"Only a referral in progress can be discharged; this one is {task.get('status')}",
                           expression="Task.status")
        sr_ref = task["focus"]["reference"]
        goals = []
        for plan in self._plans_for(sr_ref):
            for goal_ref in plan.get("goal") or []:
                goal = self._read(*goal_ref["reference"].split("/"))
                status = ((goal.get("achievementStatus") or {}).get("coding") or [{}])[0].get("code", "in-progress")
                goals.append(FeedbackEntry(goal_ref["reference"],
                                           f"{(goal.get('description') or {}).get('text', 'Goal')}: {status}"))
        author = body.author or task["owner"]["reference"]
        composition = feedback_composition(service_request_ref=sr_ref, patient_ref=task["for"]["reference"],
                                           author_ref=author, now=self._now(), summary=body.summary,
                                           goals=goals, outcome=body.outcome)
        stored = self.fhir.create("Composition", composition, resource_id=composition.get("id"))
        done = apply_transition(task, "completed", now=self._now(),
                                output=task_output_for_feedback(f"Composition/{stored.stored.id}"))
        self.fhir.update("Task", task_id, done)  # the workflow rules end the episode (end_episode), same transaction
        view = self.view(self._read("Task", task_id))
        view["feedback"] = f"Composition/{stored.stored.id}"
        return view


__all__ = ["PlanService", "PlanIn", "SignIn", "DischargeIn", "BadRequest", "datetime"]

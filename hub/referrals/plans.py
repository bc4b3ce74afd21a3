"""Plan of care, certification clocks, signing and discharge: the second half of the referral loop.

- ``establish_plan``: the clinic's therapist writes the plan (CarePlan, ServiceRequests, Goals), the
  hub renders the certification PDF (DocumentReference) and opens the obligations (Tasks with due
  dates) from the certification clocks; certification Tasks are owned by the referring physician.
- ``refresh_clocks``: recomputes the obligations from the facts (plan period, treatment days counted
  from finished Encounters, signatures, progress reports); overdue ones get business status overdue.
- Signing: the referrer completes the certification Task (FHIR PUT or ``/certifications/{id}/sign``);
  the listener records a Provenance with a signature and marks the plan certified.
- ``discharge``: a BSeR feedback Composition in Task.output and the referral Task completed.
- End of the episode (``end_episode``, run by the listener in the transaction that moves the referral
  Task to ``completed`` -- a discharge, ``/status`` or a FHIR PUT -- or ``cancelled``): every open
  obligation is cancelled with a reason ("patient discharged", "referral cancelled"), those met stay
  completed; the CarePlan becomes ``completed`` (``revoked`` for a cancelled referral), its period
  ending on the discharge date when that is before the planned end; its Goals no longer sought
  (``completed``, or ``cancelled`` when never taken up; achievementStatus untouched) and its
  ServiceRequests ``completed`` (``revoked``). Clocks are never recomputed for an ended plan, so
  nothing reopens and no reminder is routed; a plan whose referral ended before the hub did this is
  closed by the next clock run, as of the day the referral ended.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from hub.errors import BadRequest, Conflict, NotFound
from hub.fhir.events import Change
from hub.referrals.service import ReferralService, _is_referral_task
from mappings.fhir import jsonio
from mappings.plan_of_care.model import Activity, Goal

PLAN_SYSTEM = "https://therapy-hub.example/sid/plan-of-care"
REVISION_URL = "https://therapy-hub.example/StructureDefinition/plan-revision"
CERTIFIED_URL = "https://therapy-hub.example/StructureDefinition/plan-certified"
SIGNATURE_TYPE = {"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1",
                  "display": "Author's Signature"}


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


#: the formats a physician's own signature mark may have, and how to tell that its data is one
_SIGNATURE_FORMATS = {
    "image/png": lambda data: data.startswith(b"\x89PNG\r\n\x1a\n"),
    "image/jpeg": lambda data: data.startswith(b"\xff\xd8\xff"),
    "application/pdf": lambda data: data.startswith(b"%PDF-"),
    "application/jose": lambda data: re.fullmatch(rb"[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*", data),
    "text/plain": lambda data: _is_text(data),
}


def _is_text(data: bytes) -> bool:
    try:
        return bool(data.decode("utf-8").strip())
    except UnicodeDecodeError:
        return False


class SignIn(BaseModel):
    signature: str | None = Field(default=None, description="The physician's own mark, base64 (optional): "
                                  "a typed name (text/plain), a drawn signature (image/png) or a JWS")
    signature_type: str = Field(default="text/plain", description=", ".join(_SIGNATURE_FORMATS))

    @model_validator(mode="after")
    def _really_that_format(self) -> SignIn:
        """Refuse a mark whose data is not what its type says (a name declared as image/png)."""
        if self.signature is None:
            return self
        check = _SIGNATURE_FORMATS.get(self.signature_type)
        if check is None:
            raise ValueError(f"signature_type must be one of {', '.join(_SIGNATURE_FORMATS)}")
        try:
            data = base64.b64decode(self.signature, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("signature must be base64") from None
        if not check(data):
            raise ValueError(f"signature is not {self.signature_type} data")
        return self


class DischargeIn(BaseModel):
    summary: str = Field(min_length=1, max_length=4000)
    outcome: str | None = Field(default=None, max_length=4000)
    author: str | None = Field(default=None, pattern=r"^PractitionerRole/[A-Za-z0-9\-.]{1,64}$")


OBLIGATION_KINDS = frozenset({"certification", "recertification", "progress-report"})
#: final statuses of an obligation Task: it never leaves them
CLOSED_OBLIGATION = frozenset({"completed", "cancelled", "failed", "entered-in-error"})


def _code(task: dict[str, Any]) -> str | None:
    from mappings.referral.certification import OBLIGATION_CODE_SYSTEM

    for coding in (task.get("code") or {}).get("coding", []):
        if coding.get("system") == OBLIGATION_CODE_SYSTEM:
            return str(coding.get("code"))
    return None


#: the referral Task statuses that end the episode of care: how the plan ends and the reason its open
#: obligations and goals are given
EPISODE_END: dict[str, tuple[Literal["completed", "revoked"], str]] = {
    "completed": ("completed", "patient discharged"),
    "cancelled": ("revoked", "referral cancelled"),
}


def _ext(resource: dict[str, Any], url: str) -> dict[str, Any] | None:
    return next((e for e in resource.get("extension") or [] if e.get("url") == url), None)


class PlanService(ReferralService):
    def __init__(self, fhir: Any, *, payer_rules: dict[str, dict[str, Any]] | None = None,
                 now: datetime | None = None, clinics: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__(fhir, now=now)
        self.payer_rules = payer_rules or {}
        #: tenant -> the clinic's details from the settings (HUB_CLINICS), written onto its Organization
        self.clinics = clinics or {}

    def _rules_for(self, sr: dict[str, Any]) -> Any:
        """The certification rules of the referral's payer (Coverage payor identifier), else Medicare's."""
        from mappings.referral.certification import CertificationRules, rules_for_payer

        payer_id = None
        for insurance in sr.get("insurance") or []:
            try:
                coverage = self._read(*insurance["reference"].split("/"))
            except (NotFound, KeyError, TypeError):
                continue
            for payor in coverage.get("payor") or []:
                payer_id = (payor.get("identifier") or {}).get("value") or payer_id
        overrides = {k: CertificationRules(**v) for k, v in self.payer_rules.items()}
        return rules_for_payer(payer_id, overrides)

    # ------------------------------------------------------------ plan of care

    def establish_plan(self, task_id: str, body: PlanIn) -> dict[str, Any]:
        from mappings.plan_of_care.fhir import build_plan_of_care
        from mappings.plan_of_care.model import Diagnosis, PlanIdentifier, PlanOfCare
        from mappings.plan_of_care.pdf import plan_document_reference, render_plan_pdf
        from mappings.plan_of_care.summary import plan_summary
        from mappings.referral.intake import referral_category

        task = self._read("Task", task_id)
        if not _is_referral_task(task):
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
            ext = _ext(existing[0], REVISION_URL)
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
        return_code = _return_code(summary.care_plan_id, revision)
        pdf = render_plan_pdf(summary, return_code=return_code, generated_at=now_aware,
                              **self._document_inputs(sr, task["owner"]["reference"], body.author,
                                                      therapist_name=body.therapist_name))
        document = plan_document_reference(pdf, plan_ref=summary.care_plan_ref, patient_ref=plan.patient,
                                           now=now_aware, return_code=return_code)
        self.fhir.update("DocumentReference", document["id"], document)
        if task.get("status") == "accepted":
            from mappings.referral.task_state import apply_transition

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

    def _plans_for(self, sr_ref: str) -> list[dict[str, Any]]:
        """The plans of care of a referral: a plan's identifier is its referral Task's id."""
        plans = [
            plan
            for task in self._search("Task", [("focus", sr_ref), ("code", "fulfill")])
            for plan in self._search("CarePlan", [("identifier", f"{PLAN_SYSTEM}|{task['id']}")])
        ]
        return [p for p in plans if any(i.get("reference") == sr_ref for i in p.get("supportingInfo") or [])]

    def _referrer_name(self, sr: dict[str, Any]) -> str:
        role_ref = (sr.get("requester") or {}).get("reference")
        if not role_ref:
            return "Referring physician"
        role = self._read(*role_ref.split("/"))
        practitioner_ref = (role.get("practitioner") or {}).get("reference")
        if practitioner_ref:
            return _person_name(self._read(*practitioner_ref.split("/")))
        return "Referring physician"

    def _referrer_npi(self, sr: dict[str, Any]) -> str | None:
        role_ref = (sr.get("requester") or {}).get("reference")
        if not role_ref:
            return None
        role = self._read(*role_ref.split("/"))
        return next((i["value"] for i in role.get("identifier") or []
                     if i.get("system") == "http://hl7.org/fhir/sid/us-npi"), None)

    def _organization_name(self, reference: str) -> str:
        try:
            return str(self._read(*reference.split("/")).get("name") or "Clinic")
        except NotFound:
            return "Clinic"

    # ------------------------------------------------------------ the document's inputs

    def _apply_clinic_settings(self, organization_ref: str) -> None:
        """Write the clinic's configured name, address and telecom (phone, fax, Direct address) onto
        its Organization, which the page and every partner read; only what differs is written."""
        config = self.clinics.get(self.fhir.tenant)
        if not config or not organization_ref.startswith("Organization/"):
            return
        try:
            organization = self._read(*organization_ref.split("/"))
        except NotFound:
            return
        updated = {**organization, **_organization_details(config)}
        if updated != organization:
            self.fhir.update("Organization", organization["id"], updated)

    def _clinic_block(self, organization_ref: str) -> Any:
        from mappings.plan_of_care.pdf import ClinicBlock

        try:
            organization = self._read(*organization_ref.split("/"))
        except NotFound:
            return ClinicBlock("Clinic")
        address = (organization.get("address") or [{}])[0]
        city = " ".join(x for x in (address.get("city"), address.get("state"), address.get("postalCode")) if x)
        lines = tuple(x for x in [*address.get("line", []), city] if x)
        telecom = {t.get("system"): t.get("value") for t in reversed(organization.get("telecom") or [])}
        return ClinicBlock(str(organization.get("name") or "Clinic"), lines, telecom.get("phone"),
                           telecom.get("fax"), telecom.get("email"))

    def _person_of_role(self, role_ref: str | None) -> tuple[str | None, str | None]:
        """(the name, the NPI) of a PractitionerRole's practitioner; (None, None) when unknown."""
        if not role_ref or not role_ref.startswith("PractitionerRole/"):
            return None, None
        try:
            role = self._read(*role_ref.split("/"))
        except NotFound:
            return None, None
        npi = _npi_of(role)
        practitioner_ref = (role.get("practitioner") or {}).get("reference")
        if not practitioner_ref:
            return None, npi
        try:
            practitioner = self._read(*practitioner_ref.split("/"))
        except NotFound:
            return None, npi
        name = _person_name(practitioner)
        credentials = ", ".join(q["code"]["text"] for q in practitioner.get("qualification") or []
                                if (q.get("code") or {}).get("text"))
        return (f"{name}, {credentials}" if credentials else name), npi or _npi_of(practitioner)

    def _document_inputs(self, sr: dict[str, Any], organization_ref: str, author_ref: str | None, *,
                         therapist_name: str | None = None) -> dict[str, Any]:
        """What the certification page shows besides the plan: patient (name, birth date, MRN), payer,
        referring physician, clinic, treating therapist."""
        patient = self._read(*sr["subject"]["reference"].split("/"))
        name, npi = self._person_of_role(author_ref)
        return {
            "patient_name": _person_name(patient),
            "patient_birth_date": (date.fromisoformat(patient["birthDate"][:10])
                                   if len(patient.get("birthDate", "")) >= 10 else None),
            "patient_mrn": _mrn_of(patient),
            "payer": self._payer_of(sr),
            "referring_physician": self._referrer_name(sr),
            "referring_npi": self._referrer_npi(sr),
            "clinic": self._clinic_block(organization_ref),
            "therapist_name": name or therapist_name,
            "therapist_npi": npi,
        }

    def _payer_of(self, sr: dict[str, Any]) -> str | None:
        for insurance in sr.get("insurance") or []:
            try:
                coverage = self._read(*insurance["reference"].split("/"))
            except (NotFound, KeyError, TypeError):
                continue
            payor = (coverage.get("payor") or [{}])[0]
            payer = payor.get("display") or (payor.get("identifier") or {}).get("value")
            member = coverage.get("subscriberId")
            if payer:
                return f"{payer}, member {member}" if member else str(payer)
        return None

    # ------------------------------------------------------------ clocks

    def refresh_clocks(self, care_plan_id: str, *, initial_treatment: date | None = None,
                       plan_changed: bool = False, today: date | None = None) -> list[dict[str, Any]]:
        """Recompute the plan's obligations and upsert their Tasks; returns their views.

        An ended plan (discharged, cancelled) is not recomputed: its obligations are returned as they
        are, and nothing is written."""
        care_plan = self._read("CarePlan", care_plan_id)
        if self._episode_over(care_plan):
            return self._obligation_views(care_plan_id, today)
        return self._recompute(care_plan, initial_treatment=initial_treatment, plan_changed=plan_changed,
                               today=today)

    def _recompute(self, care_plan: dict[str, Any], *, initial_treatment: date | None = None,
                   plan_changed: bool = False, today: date | None = None) -> list[dict[str, Any]]:
        from mappings.referral.certification import MEDICARE, obligations, to_fhir_tasks

        care_plan_id = care_plan["id"]
        care_plan_ref = f"CarePlan/{care_plan_id}"
        period = care_plan.get("period") or {}
        sr_ref = next((i["reference"] for i in care_plan.get("supportingInfo") or []
                       if i.get("reference", "").startswith("ServiceRequest/")), None)
        sr = self._read(*sr_ref.split("/")) if sr_ref else {}
        referrer = (sr.get("requester") or {}).get("reference")
        clinic = ((sr.get("performer") or [{}])[0]).get("reference") or self.ensure_clinic()
        today = today or self._now().date()
        treatment_dates = self._treatment_dates(sr_ref) if sr_ref else []
        existing = self._search("Task", [("focus", care_plan_ref)])
        certified = [t for t in existing if _code(t) in ("certification", "recertification")
                     and t.get("status") == "completed"]
        certified_on = max((date.fromisoformat(t["lastModified"][:10]) for t in certified), default=None)
        revision_ext = _ext(care_plan, REVISION_URL)
        certified_ext = _ext(care_plan, CERTIFIED_URL)
        changed_on = None
        if certified_on and revision_ext and certified_ext:
            certified_revision = int((certified_ext.get("extension") or [{}])[0].get("valueInteger", 1))
            if int(revision_ext.get("valueInteger", 1)) > certified_revision:
                changed_on = date.fromisoformat(care_plan["meta"]["lastUpdated"][:10])
        reports = [t for t in existing if _code(t) == "progress-report" and t.get("status") == "completed"]
        last_report = max((int(o.get("valueInteger", 0)) for t in reports for o in t.get("output") or []
                           if "valueInteger" in o), default=None)
        start = date.fromisoformat(period["start"][:10])
        first_day = initial_treatment or (treatment_dates[0] if treatment_dates else start)
        found = obligations(
            plan_start=start,
            plan_end=date.fromisoformat(period["end"][:10]),
            initial_treatment=first_day,
            certified_on=certified_on,
            plan_changed_on=changed_on if plan_changed or changed_on else None,
            treatment_dates=treatment_dates,
            last_progress_report_visit=last_report,
            rules=self._rules_for(sr) if sr else MEDICARE,
            today=today,
        )
        tasks = to_fhir_tasks(found, care_plan_ref=care_plan_ref, patient_ref=care_plan["subject"]["reference"],
                              owner_ref=referrer or clinic, requester_ref=clinic, now=self._now())
        views = []
        wanted = set()
        for new in tasks:
            if _code(new) == "progress-report":
                new["owner"] = {"reference": clinic}
            wanted.add(new["id"])
            try:
                current = self._read("Task", new["id"])
            except NotFound:
                current = None
            if current is not None and current.get("status") == "completed":
                views.append(self.obligation_view(current, today))
                continue
            if current is None or _differs(current, new):
                self.fhir.update("Task", new["id"], new)
            views.append(self.obligation_view(self._read("Task", new["id"]), today))
        for old in existing:  # obligations whose due date moved: the old Task is cancelled
            if _code(old) and old["id"] not in wanted and old.get("status") == "requested":
                self.fhir.update("Task", old["id"], {**old, "status": "cancelled",
                                                     "statusReason": {"text": "superseded"}})
        return views

    def refresh_all(self) -> int:
        """Recompute the obligations of every active plan of care (the beat runs this every 6 hours);
        returns how many were recomputed. A plan whose referral has ended is skipped (and closed, when
        its referral ended before the hub closed plans at discharge)."""
        plans = self._search("CarePlan", [("identifier", f"{PLAN_SYSTEM}|"), ("status", "active")])
        recomputed = 0
        for plan in plans:
            if not self._episode_over(plan):
                self._recompute(plan)
                recomputed += 1
        return recomputed

    # ------------------------------------------------------------ end of the episode

    def _referral_of(self, care_plan: dict[str, Any]) -> dict[str, Any] | None:
        """The referral Task a plan answers (the plan's identifier value is that Task's id)."""
        task_id = next((i.get("value") for i in care_plan.get("identifier") or [] if i.get("system") == PLAN_SYSTEM),
                       None)
        if not task_id:
            return None
        try:
            task = self._read("Task", task_id)
        except NotFound:
            return None
        return task if _is_referral_task(task) else None

    def _episode_over(self, care_plan: dict[str, Any]) -> bool:
        """True when the plan has ended, or its referral has (the plan is then ended now, as of the
        day the referral ended: plans of referrals that ended before the hub closed them)."""
        from mappings.plan_of_care.ending import ENDED_PLAN_STATUSES

        if care_plan.get("status") in ENDED_PLAN_STATUSES:
            return True
        referral = self._referral_of(care_plan)
        if referral is None or referral.get("status") not in EPISODE_END:
            return False
        changed = referral.get("lastModified") or (referral.get("meta") or {}).get("lastUpdated")
        try:
            ended = date.fromisoformat(changed[:10]) if changed else self._now().date()
        except ValueError:
            ended = self._now().date()
        self.end_episode(referral, ended=ended)
        return True

    def end_episode(self, task: dict[str, Any], *, ended: date) -> None:
        """Close what the hub opened for the referral ``task`` (completed or cancelled) as of ``ended``:
        its plan's open obligations, Goals, ServiceRequests and the CarePlan (see the module docstring).
        Writes only what changes, so running it twice writes nothing the second time."""
        end, reason = EPISODE_END[str(task.get("status"))]
        for plan in self._search("CarePlan", [("identifier", f"{PLAN_SYSTEM}|{task['id']}")]):
            self._end_plan(plan, end=end, reason=reason, ended=ended)

    def _end_plan(self, care_plan: dict[str, Any], *, end: Literal["completed", "revoked"], reason: str,
                  ended: date) -> None:
        from mappings.plan_of_care.ending import end_care_plan, end_goal, end_plan_request
        from mappings.referral.certification import close_obligation

        for task in self._search("Task", [("focus", f"CarePlan/{care_plan['id']}")]):
            closed = close_obligation(task, reason=reason, now=self._now()) if _code(task) else None
            if closed is not None:
                self.fhir.update("Task", task["id"], closed)
        for goal_ref in care_plan.get("goal") or []:
            goal = self._read_reference(goal_ref, "Goal")
            ended_goal = end_goal(goal, on=ended, reason=reason) if goal else None
            if ended_goal is not None:
                self.fhir.update("Goal", ended_goal["id"], ended_goal)
        for activity in care_plan.get("activity") or []:
            request = self._read_reference(activity.get("reference"), "ServiceRequest")
            ended_request = end_plan_request(request, end=end) if request else None
            if ended_request is not None:
                self.fhir.update("ServiceRequest", ended_request["id"], ended_request)
        ended_plan = end_care_plan(self._read("CarePlan", care_plan["id"]), ended=ended, end=end)
        if ended_plan is not None:
            self.fhir.update("CarePlan", ended_plan["id"], ended_plan)

    def _read_reference(self, reference: Any, resource_type: str) -> dict[str, Any] | None:
        target = reference.get("reference") if isinstance(reference, dict) else None
        parts = target.split("/_history/")[0].split("/")[-2:] if isinstance(target, str) else []
        if len(parts) != 2 or parts[0] != resource_type:
            return None
        try:
            return self._read(resource_type, parts[1])
        except NotFound:
            return None

    def _obligation_views(self, care_plan_id: str, today: date | None = None) -> list[dict[str, Any]]:
        tasks = [t for t in self._search("Task", [("focus", f"CarePlan/{care_plan_id}")]) if _code(t)]
        return sorted((self.obligation_view(t, today) for t in tasks), key=lambda v: (v["due"] or "9999", v["task"]))

    def _treatment_dates(self, sr_ref: str) -> list[date]:
        encounters = self._search("Encounter", [("based-on", sr_ref), ("status", "finished")])
        days = sorted({date.fromisoformat(e["period"]["start"][:10]) for e in encounters
                       if (e.get("period") or {}).get("start")})
        return days

    def obligation_view(self, task: dict[str, Any], today: date | None = None) -> dict[str, Any]:
        today = today or self._now().date()
        due = ((task.get("restriction") or {}).get("period") or {}).get("end")
        open_ = task.get("status") == "requested"
        return {
            "task": f"Task/{task['id']}",
            "kind": _code(task),
            "care_plan": (task.get("focus") or {}).get("reference"),
            "owner": (task.get("owner") or {}).get("reference"),
            "status": task.get("status"),
            "due": due,
            "overdue": bool(open_ and due and date.fromisoformat(due[:10]) < today),
            "business_status": ((task.get("businessStatus") or {}).get("coding") or [{}])[0].get("code"),
            "status_reason": (task.get("statusReason") or {}).get("text"),
            "description": task.get("description"),
        }

    def certifications(self, *, due_before: date | None = None, owner: str | None = None,
                       include_done: bool = False) -> list[dict[str, Any]]:
        from mappings.referral.certification import OBLIGATION_CODE_SYSTEM

        items = [("code", f"{OBLIGATION_CODE_SYSTEM}|")]
        if owner:
            items.append(("owner", owner))
        if not include_done:
            items.append(("status", "requested"))
        views = [self.obligation_view(t) for t in self._search("Task", items)]
        if due_before:
            views = [v for v in views if v["due"] and date.fromisoformat(v["due"][:10]) <= due_before]
        return sorted(views, key=lambda v: v["due"] or "9999")

    # ------------------------------------------------------------ signing (listener + endpoint)

    def sign(self, task_id: str, body: SignIn, *, signer: str | None = None) -> dict[str, Any]:
        """Complete a certification; ``signer`` (a referrer's PractitionerRole) must be its owner.

        Not there, not visible to the caller, not a certification, not the signer's: one answer (404,
        same text), so that signing is no way to learn what exists. The caller's policy reads the Task;
        the hub writes the signature (a referring physician may not PUT a Task)."""
        unknown = NotFound("There is no certification with this id that you can sign")
        try:
            task = self._read("Task", task_id)
        except NotFound:
            raise unknown from None
        if _code(task) not in ("certification", "recertification"):
            raise unknown
        if signer is not None and (task.get("owner") or {}).get("reference") != signer:
            raise unknown
        if task.get("status") != "requested":
            raise Conflict(f"This certification is {task.get('status')}", expression="Task.status")
        signed = {**task, "status": "completed", "lastModified": self._now().isoformat(timespec="seconds") + "Z"}
        if body.signature:
            signed["output"] = [{"type": {"text": "signature"},
                                 "valueAttachment": {"contentType": body.signature_type, "data": body.signature}}]
        with self.fhir.internal():
            self.fhir.update("Task", task_id, signed)
        return self.obligation_view(self._read("Task", task_id))

    def on_change(self, change: Change) -> None:
        super().on_change(change)
        resource = change.resource or {}
        if change.resource_type == "Task" and change.interaction == "update" and change.previous:
            before = jsonio.loads(change.previous).get("status")
            if (_code(resource) in OBLIGATION_KINDS and before in CLOSED_OBLIGATION
                    and resource.get("status") != before):
                # e.g. a certification cancelled at discharge "completed" by a PUT: that would record
                # a signature on a plan that has ended
                raise Conflict(f"This obligation is {before}: it cannot become {resource.get('status')}",
                               expression="Task.status")
        if (change.resource_type == "Task" and change.interaction == "update"
                and _code(resource) in ("certification", "recertification")
                and resource.get("status") == "completed" and change.previous
                and jsonio.loads(change.previous).get("status") != "completed"):
            self._record_signature(resource)
        elif change.resource_type == "Encounter" and change.interaction in ("create", "update"):
            self._encounter_changed(resource)
        elif (change.resource_type == "Task" and change.interaction == "update" and _is_referral_task(resource)
              and resource.get("status") in EPISODE_END and change.previous
              and jsonio.loads(change.previous).get("status") != resource.get("status")):
            self.end_episode(resource, ended=self._now().date())  # the transition was checked by super()

    def _signed_document(self, care_plan: dict[str, Any], signer: str | None) -> dict[str, Any] | None:
        """Render the signed version of the plan's certification page (the signer's electronic
        signature, name, NPI and the time) and store it as a DocumentReference that ``signs`` the
        unsigned one; None when the plan has no unsigned page (a plan written through /fhir)."""
        from mappings.fhir.ids import deterministic_id
        from mappings.plan_of_care.pdf import (
            RETURN_CODE_SYSTEM,
            Attestation,
            render_plan_pdf,
            signed_document_reference,
        )
        from mappings.plan_of_care.summary import plan_summary

        revision = int((_ext(care_plan, REVISION_URL) or {}).get("valueInteger", 1))
        return_code = _return_code(care_plan["id"], revision)
        try:
            unsigned = self._read("DocumentReference", deterministic_id("DocumentReference", RETURN_CODE_SYSTEM,
                                                                        return_code))
        except NotFound:
            return None
        sr_ref = next((i["reference"] for i in care_plan.get("supportingInfo") or []
                       if i.get("reference", "").startswith("ServiceRequest/")), None)
        if not sr_ref or not signer:
            return None
        sr = self._read(*sr_ref.split("/"))
        summary = plan_summary(self._plan_as_bundle(care_plan))
        organization = summary.plan.organization
        name, npi = self._person_of_role(signer)
        signed_at = self._now().replace(tzinfo=UTC)
        inputs = self._document_inputs(sr, organization, summary.plan.author)
        attestation = Attestation(signer_name=name or inputs["referring_physician"], signed_at=signed_at,
                                  signer_npi=npi or inputs["referring_npi"])
        pdf = render_plan_pdf(summary, return_code=return_code, generated_at=signed_at, attestation=attestation,
                              **inputs)
        document = signed_document_reference(pdf, unsigned=unsigned, signer_ref=signer, signed_at=signed_at)
        self.fhir.update("DocumentReference", document["id"], document)
        return document

    def _plan_as_bundle(self, care_plan: dict[str, Any]) -> dict[str, Any]:
        """The stored CarePlan with its Goals, their baselines and its ServiceRequests, as a collection
        Bundle that :func:`mappings.plan_of_care.fhir.plan_summary` reads."""
        resources = [care_plan]
        for goal_ref in care_plan.get("goal") or []:
            goal = self._read_reference(goal_ref, "Goal")
            if goal is None:
                continue
            resources.append(goal)
            for address in goal.get("addresses") or []:
                observation = self._read_reference(address, "Observation")
                if observation is not None:
                    resources.append(observation)
        for activity in care_plan.get("activity") or []:
            request = self._read_reference(activity.get("reference"), "ServiceRequest")
            if request is not None:
                resources.append(request)
        return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}

    def _record_signature(self, task: dict[str, Any]) -> None:
        care_plan_ref = task["focus"]["reference"]
        care_plan = self._read(*care_plan_ref.split("/"))
        signer = (task.get("owner") or {}).get("reference")
        now_text = self._now().isoformat(timespec="seconds") + "Z"
        # what was really signed: the signed version of the page (application/pdf), its bytes the data
        document = self._signed_document(care_plan, signer)
        signature: dict[str, Any] = {"type": [SIGNATURE_TYPE], "when": now_text, "who": {"reference": signer}}
        targets = [{"reference": f"{care_plan_ref}/_history/{care_plan['meta']['versionId']}"}]
        entities = [{"role": "source", "what": {"reference": f"Task/{task['id']}"}}]
        if document is not None:
            attachment = document["content"][0]["attachment"]
            signature.update({"targetFormat": "application/pdf", "sigFormat": "application/pdf",
                              "data": attachment["data"]})
            targets.append({"reference": f"DocumentReference/{document['id']}"})
            entities.append({"role": "source", "what": document["relatesTo"][0]["target"]})
        provenance = {
            "resourceType": "Provenance",
            "target": targets,
            "recorded": now_text,
            "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DocumentCompletion",
                                     "code": "LA", "display": "legally authenticated"}]},
            "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                            "code": "verifier"}]}, "who": {"reference": signer}}],
            "entity": entities,
            "signature": [signature],
        }
        self.fhir.create("Provenance", provenance)
        revision = int((_ext(care_plan, REVISION_URL) or {}).get("valueInteger", 1))
        extensions = [e for e in care_plan.get("extension") or [] if e.get("url") != CERTIFIED_URL]
        extensions.append({"url": CERTIFIED_URL, "extension": [
            {"url": "revision", "valueInteger": revision},
            {"url": "when", "valueDateTime": now_text},
            {"url": "by", "valueReference": {"reference": signer}},
        ]})
        self.fhir.update("CarePlan", care_plan["id"], {**care_plan, "extension": extensions})
        self.refresh_clocks(care_plan["id"])

    def _encounter_changed(self, encounter: dict[str, Any]) -> None:
        if encounter.get("status") != "finished":
            return
        for based_on in encounter.get("basedOn") or []:
            for plan in self._plans_for(based_on.get("reference", "")):
                self.refresh_clocks(plan["id"])

    # ------------------------------------------------------------ discharge

    def discharge(self, task_id: str, body: DischargeIn) -> dict[str, Any]:
        from mappings.referral.feedback import FeedbackEntry, feedback_composition, task_output_for_feedback
        from mappings.referral.task_state import apply_transition

        task = self._read("Task", task_id)
        if not _is_referral_task(task):
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
        self.fhir.update("Task", task_id, done)  # the listener ends the episode (end_episode), same transaction
        view = self.view(self._read("Task", task_id))
        view["feedback"] = f"Composition/{stored.stored.id}"
        return view


def refresh_all_tenants(settings: Any, *, now: datetime | None = None) -> int:
    """Recompute the obligations of every active plan of every tenant, one transaction per tenant,
    enqueueing the reminders each one routes after it commits (the scheduled clock job)."""
    from hub.services import fhir_service
    from hub.store.repository import tenant_ids
    from hub.unit_of_work import unit_of_work

    with unit_of_work(settings) as session:
        tenants = tenant_ids(session)
    total = 0
    for tenant in tenants:
        with unit_of_work(settings) as session:
            fhir = fhir_service(session, settings, tenant, settings.fhir_base or "/fhir",
                                (lambda: now) if now else None)
            total += PlanService(fhir, payer_rules=settings.certification_rules).refresh_all()
    return total


def _return_code(care_plan_id: str, revision: int) -> str:
    """The return code of a plan revision's certification page (its DocumentReference identifier)."""
    return "POC-" + hashlib.sha256(f"{care_plan_id}|{revision}".encode()).hexdigest()[:10].upper()


def _npi_of(resource: dict[str, Any]) -> str | None:
    return next((i["value"] for i in resource.get("identifier") or []
                 if i.get("system") == "http://hl7.org/fhir/sid/us-npi" and i.get("value")), None)


def _mrn_of(patient: dict[str, Any]) -> str | None:
    """The medical record number: the identifier of type MR, else the first one."""
    identifiers = [i for i in patient.get("identifier") or [] if i.get("value")]
    typed = next((i for i in identifiers
                  if any(c.get("code") == "MR" for c in (i.get("type") or {}).get("coding", []))), None)
    chosen = typed or (identifiers[0] if identifiers else None)
    return str(chosen["value"]) if chosen else None


def _organization_details(config: dict[str, Any]) -> dict[str, Any]:
    """Organization elements from a clinic's settings (name, line, city, state, postal_code, phone, fax,
    direct)."""
    out: dict[str, Any] = {}
    if config.get("name"):
        out["name"] = config["name"]
    address = {k: v for k, v in (("line", list(config.get("line") or [])), ("city", config.get("city")),
                                 ("state", config.get("state")), ("postalCode", config.get("postal_code"))) if v}
    if address:
        out["address"] = [{"use": "work", **address}]
    telecom = [{"system": system, "value": config[key], "use": "work"}
               for system, key in (("phone", "phone"), ("fax", "fax"), ("email", "direct")) if config.get(key)]
    if telecom:
        out["telecom"] = telecom
    return out


def _person_name(resource: dict[str, Any]) -> str:
    name = (resource.get("name") or [{}])[0]
    return " ".join([*name.get("prefix", []), *name.get("given", []), name.get("family", "")]).strip() or "Unknown"


def _differs(current: dict[str, Any], new: dict[str, Any]) -> bool:
    keys = ("status", "businessStatus", "restriction", "description", "owner", "input")
    return any(current.get(k) != new.get(k) for k in keys)


__all__ = ["PlanService", "PlanIn", "SignIn", "DischargeIn", "BadRequest", "datetime"]

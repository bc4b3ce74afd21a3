"""The certification clocks of a plan of care: its obligations (certification, recertification,
progress report) recomputed from the facts -- plan period, treatment days counted from finished
Encounters, signatures, progress reports -- and upserted as Tasks with due dates."""

from __future__ import annotations

from datetime import date
from typing import Any

from hub.errors import NotFound
from hub.referrals.deliveries import DOCUMENT_OF, deliveries_of
from hub.referrals.episode import EpisodeEnd
from hub.referrals.plan_records import CERTIFIED_URL, PLAN_SYSTEM, REVISION_URL, obligation_code, plan_extension
from mappings.referral.certification import (
    MEDICARE,
    OBLIGATION_CODE_SYSTEM,
    CertificationRules,
    obligations,
    rules_for_payer,
    to_fhir_tasks,
)


class CertificationClocks(EpisodeEnd):
    def _rules_for(self, sr: dict[str, Any]) -> Any:
        """The certification rules of the referral's payer (Coverage payor identifier), else Medicare's."""
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
        certified = [t for t in existing if obligation_code(t) in ("certification", "recertification")
                     and t.get("status") == "completed"]
        certified_on = max((date.fromisoformat(t["lastModified"][:10]) for t in certified), default=None)
        revision_ext = plan_extension(care_plan, REVISION_URL)
        certified_ext = plan_extension(care_plan, CERTIFIED_URL)
        changed_on = None
        if certified_on and revision_ext and certified_ext:
            certified_revision = int((certified_ext.get("extension") or [{}])[0].get("valueInteger", 1))
            if int(revision_ext.get("valueInteger", 1)) > certified_revision:
                changed_on = date.fromisoformat(care_plan["meta"]["lastUpdated"][:10])
        reports = [t for t in existing if obligation_code(t) == "progress-report" and t.get("status") == "completed"]
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
            if obligation_code(new) == "progress-report":
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
            if obligation_code(old) and old["id"] not in wanted and old.get("status") == "requested":
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

    def _obligation_views(self, care_plan_id: str, today: date | None = None) -> list[dict[str, Any]]:
        tasks = [t for t in self._search("Task", [("focus", f"CarePlan/{care_plan_id}")]) if obligation_code(t)]
        sent = deliveries_of(self.fhir.session, tenant=self.fhir.tenant, tasks=tasks)
        return sorted((self.obligation_view(t, today, deliveries=sent.get(str(t["id"]), [])) for t in tasks),
                      key=lambda v: (v["due"] or "9999", v["task"]))

    def _treatment_dates(self, sr_ref: str) -> list[date]:
        encounters = self._search("Encounter", [("based-on", sr_ref), ("status", "finished")])
        days = sorted({date.fromisoformat(e["period"]["start"][:10]) for e in encounters
                       if (e.get("period") or {}).get("start")})
        return days

    def obligation_view(self, task: dict[str, Any], today: date | None = None, *,
                        deliveries: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The obligation Task, with the channels and statuses of the deliveries of what it sends
        (:mod:`hub.referrals.deliveries`; looked up when not given)."""
        today = today or self._now().date()
        if deliveries is None:
            sent = deliveries_of(self.fhir.session, tenant=self.fhir.tenant, tasks=[task])
            deliveries = sent.get(str(task["id"]), [])
        due = ((task.get("restriction") or {}).get("period") or {}).get("end")
        open_ = task.get("status") == "requested"
        return {
            "task": f"Task/{task['id']}",
            "kind": obligation_code(task),
            "care_plan": (task.get("focus") or {}).get("reference"),
            "owner": (task.get("owner") or {}).get("reference"),
            "status": task.get("status"),
            "due": due,
            "overdue": bool(open_ and due and date.fromisoformat(due[:10]) < today),
            "business_status": ((task.get("businessStatus") or {}).get("coding") or [{}])[0].get("code"),
            "status_reason": (task.get("statusReason") or {}).get("text"),
            "description": task.get("description"),
            "document": DOCUMENT_OF.get(str(obligation_code(task))),
            "deliveries": deliveries,
        }

    def certifications(self, *, due_before: date | None = None, owner: str | None = None,
                       include_done: bool = False) -> list[dict[str, Any]]:
        items = [("code", f"{OBLIGATION_CODE_SYSTEM}|")]
        if owner:
            items.append(("owner", owner))
        if not include_done:
            items.append(("status", "requested"))
        tasks = self._search("Task", items)
        sent = deliveries_of(self.fhir.session, tenant=self.fhir.tenant, tasks=tasks)
        views = [self.obligation_view(t, deliveries=sent.get(str(t["id"]), [])) for t in tasks]
        if due_before:
            views = [v for v in views if v["due"] and date.fromisoformat(v["due"][:10]) <= due_before]
        return sorted(views, key=lambda v: v["due"] or "9999")


def _differs(current: dict[str, Any], new: dict[str, Any]) -> bool:
    keys = ("status", "businessStatus", "restriction", "description", "owner", "input")
    return any(current.get(k) != new.get(k) for k in keys)

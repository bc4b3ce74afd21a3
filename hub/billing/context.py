"""The scrub context only the store knows: the patient's plans of care on file (certified or not) and
the therapy amount already billed in the claim's calendar year."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from hub.billing import repository as repo
from hub.billing.fhir_access import StoreReader
from hub.referrals.plan_records import CERTIFIED_URL, obligation_code, plan_extension
from hub.store.models import BillingClaim
from mappings.billing.fhir_read import careplan_discipline
from mappings.billing.model import Discipline, PayerRules, PlanOnFile, ScrubContext
from mappings.billing.rules.modifiers import kx_group

__all__ = ["NOT_COUNTED", "plans_on_file", "scrub_context", "year_to_date"]

#: claims whose amount does not count toward the year's therapy amount (never reached or left the payer)
NOT_COUNTED = frozenset({"rejected", "payer_rejected", "denied", "reversed"})
_CERTIFYING = ("certification", "recertification")


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def plans_on_file(reader: StoreReader, patient_ref: str) -> list[tuple[dict[str, Any], PlanOnFile]]:
    """The patient's plans of care with a discipline and a start: certified when a certification (or
    recertification) obligation Task of the plan is completed, or the plan carries the hub's
    plan-certified extension. A plan without an end covers every later date."""
    plans: list[tuple[dict[str, Any], PlanOnFile]] = []
    for careplan in reader.search("CarePlan", [("subject", patient_ref)]):
        if careplan.get("status") in ("entered-in-error", "revoked", "draft"):
            continue
        discipline: Discipline | None = careplan_discipline(careplan)
        period = careplan.get("period") or {}
        start = _day(period.get("start"))
        if discipline is None or start is None:
            continue
        ref = f"CarePlan/{careplan['id']}"
        tasks = reader.search("Task", [("focus", ref)])
        certified = any(obligation_code(t) in _CERTIFYING and t.get("status") == "completed" for t in tasks)
        certified = certified or plan_extension(careplan, CERTIFIED_URL) is not None
        end = _day(period.get("end")) or date.max
        plans.append((careplan, PlanOnFile(careplan_ref=ref, discipline=discipline, start=start, end=end,
                                           certified=certified)))
    return plans


def _counts(row: BillingClaim, latest_of_visit: dict[str | None, int]) -> bool:
    return row.status not in NOT_COUNTED and latest_of_visit.get(row.encounter_id) == row.id


def year_to_date(session: Session, *, tenant: str, patient_id: str, service_from: datetime,
                 encounter_id: str | None, rules: PayerRules) -> tuple[tuple[str, Decimal], ...]:
    """The patient's therapy amount billed in the calendar year of ``service_from`` before it (earlier
    dates, and earlier claims of the same date), per discipline group of ``rules`` (PT/SLP and OT under
    Medicare's combined rule). Per visit only its latest claim counts (a replacement stands for the
    original); claims of ``encounter_id`` itself, rejected, denied and reversed claims do not."""
    year = service_from.year
    rows = repo.claims_of_patient_in(session, tenant=tenant, patient_id=patient_id, start=datetime(year, 1, 1),
                                     end=datetime(year + 1, 1, 1))
    latest: dict[str | None, int] = {}
    for row in rows:
        latest[row.encounter_id] = max(latest.get(row.encounter_id, 0), row.id)
    own = [r.id for r in rows if r.encounter_id == encounter_id]
    first_own = min(own) if own else None
    totals: dict[str, Decimal] = {}
    for row in rows:
        if row.encounter_id == encounter_id or row.discipline not in ("PT", "OT", "SLP") or not _counts(row, latest):
            continue
        assert row.service_from is not None
        earlier = row.service_from < service_from or (
            row.service_from == service_from and (first_own is None or row.id < first_own))
        if not earlier:
            continue
        group = kx_group(row.discipline, rules)  # type: ignore[arg-type]
        totals[group] = totals.get(group, Decimal("0.00")) + Decimal(row.charge_cents) / 100
    return tuple(sorted((group, amount.quantize(Decimal("0.01"))) for group, amount in totals.items()))


def scrub_context(session: Session, reader: StoreReader, *, tenant: str, patient_ref: str, service_from: datetime,
                  encounter_id: str | None, rules: PayerRules) -> ScrubContext:
    plans = tuple(plan for _, plan in plans_on_file(reader, patient_ref))
    patient_id = patient_ref.split("/", 1)[1]
    ytd = year_to_date(session, tenant=tenant, patient_id=patient_id, service_from=service_from,
                       encounter_id=encounter_id, rules=rules)
    return ScrubContext(rules=rules, plans=plans, year_to_date=ytd)

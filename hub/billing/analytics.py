"""Billing analytics for a period of dates of service: claims by status, denials by CARC and payer,
days to payment (ADR 0013: the listings read ``billing_claims``; the denial reasons are read from
the ``ClaimResponse`` of each denied or partially paid claim).

* **by status**: per status, the number of claims, what they charged and what was paid (cents);
* **denials**: per payer and CARC (with its description and CAS group), how many denied lines (or
  claim-level adjustments of a denied claim) and their amount; a denied line is one paid nothing.
  Contractual adjustments and patient shares of paid lines (CO-45, PR-2) are not denials;
* **days to payment**: from ``submitted_at`` to ``paid_at`` (whole days) of the claims paid or
  partially paid: count, median, mean and 90th percentile (nearest rank), overall and per payer.

The period is ``[start, end)`` on the claim's first date of service; either end may be open.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from hub.billing import imports_queries as q
from hub.errors import NotFound
from hub.fhir.service import FhirService
from hub.store.billing_statuses import DENIAL_STATUSES, PAID_STATUSES
from hub.store.models import BillingClaim
from mappings.fhir import jsonio
from mappings.x12.carc import carc_description
from mappings.x12.remittance_fhir import CARC_SYSTEM, GROUP_SYSTEM

__all__ = ["billing_analytics", "days_summary"]

PAID = PAID_STATUSES
DENIED = DENIAL_STATUSES


def _cents(value: Any) -> int:
    return int((Decimal(str(value)) * 100).to_integral_value())


def days_summary(days: Iterable[int]) -> dict[str, Any]:
    """count, median, mean and p90 (nearest rank) of whole days; None values when there are none."""
    values = sorted(days)
    if not values:
        return {"count": 0, "median": None, "mean": None, "p90": None}
    p90 = values[max(math.ceil(0.9 * len(values)) - 1, 0)]
    return {"count": len(values), "median": statistics.median(values),
            "mean": round(statistics.fmean(values), 2), "p90": p90}


def _code(concept: dict[str, Any] | None, system: str) -> str | None:
    for coding in (concept or {}).get("coding") or []:
        if coding.get("system") == system:
            return str(coding.get("code"))
    return None


def _benefit(adjudications: list[dict[str, Any]]) -> Decimal | None:
    for item in adjudications:
        if any(c.get("code") == "benefit" for c in (item.get("category") or {}).get("coding") or []):
            return Decimal(str((item.get("amount") or {}).get("value", 0)))
    return None


def _denials_of(response: dict[str, Any], status: str) -> list[tuple[str, str, int]]:
    """(group, CARC, amount cents) of the denied lines of a ClaimResponse (all lines of a denied claim)."""
    out: list[tuple[str, str, int]] = []
    sections = [item.get("adjudication") or [] for item in response.get("item") or []]
    if status == "denied":
        sections.append(response.get("adjudication") or [])
    for adjudications in sections:
        benefit = _benefit(adjudications)
        if status != "denied" and (benefit is None or benefit != 0):
            continue
        for adjudication in adjudications:
            carc = _code(adjudication.get("reason"), CARC_SYSTEM)
            if carc is None:
                continue
            group = _code(adjudication.get("category"), GROUP_SYSTEM) or ""
            out.append((group, carc, _cents((adjudication.get("amount") or {}).get("value", 0))))
    return out


def billing_analytics(session: Session, fhir: FhirService, *, tenant: str, start: datetime | None = None,
                      end: datetime | None = None) -> dict[str, Any]:
    claims = q.claims_between(session, tenant=tenant, start=start, end=end)
    by_status: dict[str, dict[str, int]] = {}
    for claim in claims:
        row = by_status.setdefault(claim.status, {"count": 0, "charge_cents": 0, "paid_cents": 0})
        row["count"] += 1
        row["charge_cents"] += claim.charge_cents or 0
        row["paid_cents"] += claim.paid_cents or 0
    return {
        "period": {"from": start.date().isoformat() if start else None,
                   "to": end.date().isoformat() if end else None},
        "claims": len(claims),
        "by_status": dict(sorted(by_status.items())),
        "denials": _denials(fhir, [c for c in claims if c.status in DENIED]),
        "days_to_payment": _days(claims),
    }


def _denials(fhir: FhirService, claims: list[BillingClaim]) -> dict[str, Any]:
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for claim in claims:
        if not claim.claim_response_id:
            continue
        try:
            response = jsonio.loads(fhir.read("ClaimResponse", claim.claim_response_id).content or "{}")
        except NotFound:
            continue
        for group, carc, amount in _denials_of(response, claim.status):
            row = rows.setdefault((claim.payer_id, group, carc), {
                "payer_id": claim.payer_id, "group": group, "carc": carc,
                "description": carc_description(carc), "count": 0, "amount_cents": 0, "claims": set()})
            row["count"] += 1
            row["amount_cents"] += amount
            row["claims"].add(claim.id)
    by_payer = sorted(rows.values(), key=lambda r: (-r["count"], r["payer_id"], r["carc"]))
    by_carc: dict[tuple[str, str], dict[str, Any]] = {}
    for row in by_payer:
        total = by_carc.setdefault((row["group"], row["carc"]), {
            "group": row["group"], "carc": row["carc"], "description": row["description"], "count": 0,
            "amount_cents": 0, "claims": 0})
        total["count"] += row["count"]
        total["amount_cents"] += row["amount_cents"]
        total["claims"] += len(row["claims"])
    return {
        "by_carc": sorted(by_carc.values(), key=lambda r: (-r["count"], r["carc"])),
        "by_payer": [{**{k: v for k, v in r.items() if k != "claims"}, "claims": len(r["claims"])} for r in by_payer],
    }


def _days(claims: list[BillingClaim]) -> dict[str, Any]:
    per_payer: dict[str, list[int]] = {}
    for claim in claims:
        if claim.status in PAID and claim.submitted_at and claim.paid_at:
            per_payer.setdefault(claim.payer_id, []).append((claim.paid_at.date() - claim.submitted_at.date()).days)
    everything = [d for days in per_payer.values() for d in days]
    return {**days_summary(everything),
            "by_payer": {payer: days_summary(days) for payer, days in sorted(per_payer.items())}}

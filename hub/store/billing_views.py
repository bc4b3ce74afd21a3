"""Read-only queries of the billing state (``billing_claims``, ADR 0013) for the dashboard's Billing
page and ``/metrics``: claims by status with their amounts, a page of claims, one claim with its
scrubber findings.

What these views return never names the patient: no patient id, no encounter id, no name; a claim
is known by its own id and its patient control number (both derived from the tenant and the visit,
never from the patient's data), and the findings are the scrubber's rule ids and wording.

The statuses and the groups of them that billed, paid and the denial rate count are those of
:mod:`hub.store.billing_statuses` (re-exported here), which the billing service and its analytics use too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.store.billing_statuses import ADJUDICATED_STATUSES, CLAIM_STATUSES, SENT_STATUSES
from hub.store.models import BillingClaim, Tenant

__all__ = [
    "ADJUDICATED_STATUSES",
    "CLAIM_STATUSES",
    "SENT_STATUSES",
    "BillingTotals",
    "ClaimRow",
    "Finding",
    "StatusTotals",
    "claim_detail",
    "claim_totals",
    "list_claims",
    "tenant_totals",
    "totals_of",
]


@dataclass(frozen=True, slots=True)
class StatusTotals:
    """The claims of one status: how many, and the sums of their amounts in cents."""

    count: int = 0
    charge_cents: int = 0
    paid_cents: int = 0
    patient_responsibility_cents: int = 0


@dataclass(frozen=True, slots=True)
class BillingTotals:
    """One tenant's claims: per status (every status, zeros included) and overall."""

    by_status: dict[str, StatusTotals]

    @property
    def claims(self) -> int:
        return sum(t.count for t in self.by_status.values())

    @property
    def billed_cents(self) -> int:
        """The charges of the claims sent to the clearinghouse (submitted and every status after)."""
        return sum(self.by_status[s].charge_cents for s in SENT_STATUSES)

    @property
    def paid_cents(self) -> int:
        return sum(t.paid_cents for t in self.by_status.values())

    @property
    def patient_responsibility_cents(self) -> int:
        return sum(t.patient_responsibility_cents for t in self.by_status.values())

    @property
    def denial_rate(self) -> float | None:
        """Denied claims among those the payer decided (paid, partially paid, denied); None before any."""
        decided = sum(self.by_status[s].count for s in ADJUDICATED_STATUSES)
        return self.by_status["denied"].count / decided if decided else None


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding of the scrubber on a claim (what to fix before it can go out)."""

    rule: str
    severity: str
    line: str
    message: str
    fix: str


@dataclass(frozen=True, slots=True)
class ClaimRow:
    """One claim as the Billing page lists it (no patient id, no encounter id)."""

    claim_id: str
    patient_control_number: str
    payer_id: str
    discipline: str | None
    status: str
    status_detail: str | None
    frequency_code: str
    service_from: date | None
    service_to: date | None
    charge_cents: int
    paid_cents: int | None
    patient_responsibility_cents: int | None
    finding_count: int
    payer_claim_number: str | None
    file_message_id: str | None
    interchange_control: int | None
    transaction_control: int | None
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    acknowledged_at: datetime | None
    paid_at: datetime | None
    findings: tuple[Finding, ...] = field(default=())
    #: the stored findings could not be read (not a JSON list): the page says so rather than show none
    findings_unreadable: bool = False


def _sums(session: Session, tenant: str | None) -> list[Any]:
    c = BillingClaim
    return list(session.execute(
        select(c.tenant_id, c.status, func.count(), func.coalesce(func.sum(c.charge_cents), 0),
               func.coalesce(func.sum(c.paid_cents), 0), func.coalesce(func.sum(c.patient_responsibility_cents), 0))
        .where(*([c.tenant_id == tenant] if tenant is not None else []))
        .group_by(c.tenant_id, c.status)
    ))


def _by_status(rows: list[Any]) -> dict[str, StatusTotals]:
    """Every known status (zeros included), then any other status found in the table."""
    out = {s: StatusTotals() for s in CLAIM_STATUSES}
    for _tenant, status, count, charge, paid, patient in rows:
        out[status] = StatusTotals(int(count), int(charge), int(paid), int(patient))
    return out


def totals_of(by_status: Mapping[str, Mapping[str, int]]) -> BillingTotals:
    """Totals from counts and sums per status (``count``, ``charge_cents``, ``paid_cents``, and
    ``patient_responsibility_cents`` when known), as :func:`hub.billing.analytics.billing_analytics`
    gives them for a period: the same definitions of billed, paid and denial rate as the whole store's."""
    out = {s: StatusTotals() for s in CLAIM_STATUSES}
    for status, sums in by_status.items():
        out[status] = StatusTotals(int(sums.get("count", 0)), int(sums.get("charge_cents", 0)),
                                   int(sums.get("paid_cents", 0)), int(sums.get("patient_responsibility_cents", 0)))
    return BillingTotals(out)


def tenant_totals(session: Session, *, tenant: str) -> BillingTotals:
    """The claims of ``tenant`` by status, with their amounts (every status, zeros included)."""
    return BillingTotals(_by_status(_sums(session, tenant)))


def claim_totals(session: Session, *, tenant: str | None) -> dict[str, BillingTotals]:
    """The totals of ``tenant`` (None: of every tenant, those without claims included), by tenant id."""
    rows = _sums(session, tenant)
    tenants = {tenant} if tenant is not None else set(session.scalars(select(Tenant.id)))
    tenants |= {row[0] for row in rows}
    return {t: BillingTotals(_by_status([r for r in rows if r[0] == t])) for t in sorted(tenants)}


def _findings(raw: str | None) -> tuple[tuple[Finding, ...], bool]:
    """The stored findings (a JSON list of objects) and whether they could not be read."""
    if not raw:
        return (), False
    try:
        items = json.loads(raw)
    except ValueError:
        return (), True
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        return (), True

    def text(item: dict[str, Any], key: str) -> str:
        value = item.get(key)
        return "" if value is None else str(value)

    return tuple(Finding(rule=text(i, "rule"), severity=text(i, "severity"), line=text(i, "line"),
                         message=text(i, "message"), fix=text(i, "fix")) for i in items), False


def _day(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


def _row(claim: BillingClaim, *, with_findings: bool) -> ClaimRow:
    findings, unreadable = _findings(claim.findings)
    return ClaimRow(
        claim_id=claim.claim_id, patient_control_number=claim.patient_control_number, payer_id=claim.payer_id,
        discipline=claim.discipline, status=claim.status, status_detail=claim.status_detail,
        frequency_code=claim.frequency_code, service_from=_day(claim.service_from), service_to=_day(claim.service_to),
        charge_cents=claim.charge_cents, paid_cents=claim.paid_cents,
        patient_responsibility_cents=claim.patient_responsibility_cents, finding_count=len(findings),
        payer_claim_number=claim.payer_claim_number, file_message_id=claim.file_message_id,
        interchange_control=claim.interchange_control, transaction_control=claim.transaction_control,
        created_at=claim.created_at, updated_at=claim.updated_at, submitted_at=claim.submitted_at,
        acknowledged_at=claim.acknowledged_at, paid_at=claim.paid_at,
        findings=findings if with_findings else (), findings_unreadable=unreadable,
    )


def list_claims(session: Session, *, tenant: str, status: str | None = None, limit: int = 50,
                offset: int = 0) -> tuple[int, list[ClaimRow]]:
    """(how many claims of ``tenant`` match, one page of them), the last changed first."""
    where = [BillingClaim.tenant_id == tenant, *([BillingClaim.status == status] if status else [])]
    total = session.scalar(select(func.count()).select_from(BillingClaim).where(*where)) or 0
    claims = session.scalars(
        select(BillingClaim).where(*where)
        .order_by(BillingClaim.updated_at.desc(), BillingClaim.id.desc()).limit(limit).offset(offset)
    )
    return int(total), [_row(c, with_findings=False) for c in claims]


def claim_detail(session: Session, *, tenant: str, claim_id: str) -> ClaimRow | None:
    """One claim of ``tenant`` with its findings; None when ``tenant`` has no claim of that id."""
    claim = session.scalars(
        select(BillingClaim).where(BillingClaim.tenant_id == tenant, BillingClaim.claim_id == claim_id)
    ).first()
    return _row(claim, with_findings=True) if claim is not None else None

"""The Billing page of the dashboard: the signed-in client's claims by status with their amounts (billed,
paid, the patients' share, the denial rate), a page of claims filtered by status, and one claim with
the scrubber's findings, read from the billing state (:mod:`hub.store.billing_views`) of its tenant
and audited like a search and a read of ``Claim``.

The client needs the scopes to read and search ``Claim`` and ``ClaimResponse`` (what the billing state
summarises); without them the page is 403 with the reason, as ``/fhir/Claim`` would answer. The page
shows claim ids, patient control numbers, payers, dates of service, amounts, statuses and findings:
never a patient's name or id. Its analytics (:func:`hub.billing.analytics.billing_analytics`, as
``GET /admin/api/billing/analytics`` gives them) cover a period of dates of service: denials by CARC
and by payer, days to payment, and the period's billed, paid and denial rate, defined as the whole
store's totals are (:mod:`hub.store.billing_statuses`). Building, scrubbing and submitting claims
are :mod:`hub.dashboard.billing_actions`, for a client that :func:`may_bill` only (the page shows
their buttons to it alone).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from hub.billing.analytics import billing_analytics
from hub.billing.results import EDITABLE
from hub.dashboard.pages import MAX_INT, PAGE_SIZES, T, User, UserDep, notice, render, run, templates
from hub.errors import NotFound
from hub.fhir.router import fhir_base
from hub.fhir.service import FhirService
from hub.security.audit import audit_event
from hub.security.policy import AccessPolicy
from hub.services import fhir_service
from hub.store.billing_views import (
    CLAIM_STATUSES,
    BillingTotals,
    ClaimRow,
    claim_detail,
    list_claims,
    tenant_totals,
    totals_of,
)

PAGE = "/dashboard/billing"
CLAIM_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
#: what the billing state summarises: the claims and the payers' answers to them
BILLING_VIEW_TYPES = ("Claim", "ClaimResponse")
NO_BILLING_SCOPE = ("The signed-in client's scopes do not allow reading and searching Claim and ClaimResponse, "
                    "so claims are not shown.")
#: why a client that sees the page gets no buttons (and 403 on their POST): :func:`may_bill`
NO_BILLING_RIGHTS = ("Building, scrubbing and submitting claims needs an admin client whose scopes allow reading "
                     "and searching Claim and ClaimResponse and writing Claim.")


def _days(value: float | None) -> str:
    """Days to payment as the page shows them (12, 5.5, 12.25); — when there are none."""
    return "—" if value is None else f"{round(float(value), 2):g}"


templates.filters["days"] = _days


def sees_billing(user: User) -> bool:
    return all(user.principal.can(t, "s") and user.principal.can(t, "r") for t in BILLING_VIEW_TYPES)


def may_bill(user: User) -> bool:
    """May build, scrub and submit claims: an admin whose scopes read the billing state and write Claim."""
    principal = user.principal
    return (principal.role == "admin" and sees_billing(user)
            and principal.can("Claim", "c") and principal.can("Claim", "u"))


def billing_work(request: Request, user: User, interaction: str, resource_id: str | None,
                 work: Callable[[Session, FhirService], T]) -> Callable[[Session], T]:
    """``work(session, fhir)`` in one transaction with the AuditEvent of the signed-in client's read
    (``fhir``: the FHIR store under the client's policy)."""
    base = fhir_base(request, user.settings)
    address = request.client.host if request.client else None

    def job(session: Session) -> T:
        fhir = fhir_service(session, user.settings, user.tenant, base, user.clock,
                            policy=AccessPolicy(user.principal, session=session, tenant=user.tenant))
        result = work(session, fhir)
        fhir.record_audit(audit_event(principal=user.principal, interaction=interaction, now=fhir.clock(),
                                      outcome=0, address=address, resource_type="Claim", resource_id=resource_id,
                                      description=f"{request.method} {request.url.path}"))
        return result

    return job


def _day(name: str, value: str) -> date | None:
    """A date of the period filter (YYYY-MM-DD), None when empty; ValueError naming the field."""
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be a date like 2026-03-01") from None


def _midnight(day: date | None) -> datetime | None:
    return datetime.combine(day, datetime.min.time()) if day else None


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = int(value) if value else default
    except ValueError:
        return default
    return min(max(number, low), high)


async def billing(request: Request, user: UserDep) -> Response:
    if not sees_billing(user):
        return render(request, "error.html", status=403, error=NO_BILLING_SCOPE)
    query = request.query_params
    status = (query.get("status") or "").strip()[:40]
    limit = _int(query.get("limit"), 50, 1, 500)
    offset = _int(query.get("offset"), 0, 0, MAX_INT)
    period = {k: (query.get(k) or "").strip()[:10] for k in ("from", "to")}
    error = None
    if status and status not in CLAIM_STATUSES:
        error, status = f"There is no claim status {status!r}; choose one of the list.", ""
    try:
        start, end = _day("From", period["from"]), _day("To", period["to"])
    except ValueError as exc:
        error, start, end, period = str(exc), None, None, {"from": "", "to": ""}
    if start and end and end <= start:
        error, start, end = "The period is empty: To (not included) must come after From.", None, None

    def work(session: Session, fhir: FhirService) -> tuple[BillingTotals, tuple[int, list[ClaimRow]], dict[str, Any]]:
        totals = tenant_totals(session, tenant=user.tenant)
        page = (list_claims(session, tenant=user.tenant, status=status or None, limit=limit, offset=offset)
                if error is None else (0, []))
        analytics = billing_analytics(session, fhir, tenant=user.tenant, start=_midnight(start), end=_midnight(end))
        return totals, page, analytics

    totals, (total, claims), analytics = await run(
        user.settings, billing_work(request, user, "search-type", None, work))
    kept = {k: v for k, v in (("status", status), ("limit", str(limit) if limit != 50 else ""),
                              ("from", period["from"]), ("to", period["to"])) if v}

    def link(at: int) -> str:
        return PAGE + "?" + urlencode({**kept, "offset": str(at)})

    return render(request, "billing.html", status=400 if error else 200, totals=totals, claims=claims,
                  total=total, status_filter=status, statuses=CLAIM_STATUSES, limit=limit, offset=offset,
                  page_sizes=PAGE_SIZES, error=error, period=period, analytics=analytics,
                  period_totals=totals_of(analytics["by_status"]), can_bill=may_bill(user),
                  no_billing_rights=NO_BILLING_RIGHTS, notice=notice(request, user),
                  previous=link(max(0, offset - limit)) if offset > 0 else None,
                  following=link(offset + limit) if offset + limit < total else None)


async def claim(claim_id: str, request: Request, user: UserDep) -> Response:
    if not sees_billing(user):
        return render(request, "error.html", status=403, error=NO_BILLING_SCOPE)
    if not CLAIM_ID.fullmatch(claim_id):
        raise NotFound("No such claim")
    found = await run(user.settings, billing_work(
        request, user, "read", claim_id, lambda s, _: claim_detail(s, tenant=user.tenant, claim_id=claim_id)))
    if found is None:  # another tenant's claim does not exist here
        raise NotFound("No such claim")
    return render(request, "billing_claim.html", claim=found, can_bill=may_bill(user), notice=notice(request, user),
                  editable=found.status in EDITABLE)

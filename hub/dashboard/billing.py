"""The Billing page of the dashboard: the signed-in client's claims by status with their amounts (billed,
paid, the patients' share, the denial rate), a page of claims filtered by status, and one claim with
the scrubber's findings, read from the billing state (:mod:`hub.store.billing_views`) of its tenant
and audited like a search and a read of ``Claim``.

The client needs the scopes to read and search ``Claim`` and ``ClaimResponse`` (what the billing state
summarises); without them the page is 403 with the reason, as ``/fhir/Claim`` would answer. The page
shows claim ids, patient control numbers, payers, dates of service, amounts, statuses and findings:
never a patient's name or id. It only reads: building and submitting claims are the admin API's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from hub.dashboard.pages import MAX_INT, PAGE_SIZES, T, User, UserDep, render, run
from hub.errors import NotFound
from hub.fhir.router import fhir_base
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
)

PAGE = "/dashboard/billing"
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
#: what the billing state summarises: the claims and the payers' answers to them
BILLING_VIEW_TYPES = ("Claim", "ClaimResponse")
NO_BILLING_SCOPE = ("The signed-in client's scopes do not allow reading and searching Claim and ClaimResponse, "
                    "so claims are not shown.")


def sees_billing(user: User) -> bool:
    return all(user.principal.can(t, "s") and user.principal.can(t, "r") for t in BILLING_VIEW_TYPES)


def billing_work(request: Request, user: User, interaction: str, resource_id: str | None,
             work: Callable[[Session], T]) -> Callable[[Session], T]:
    """``work(session)`` in one transaction with the AuditEvent of the signed-in client's read."""
    base = fhir_base(request, user.settings)
    address = request.client.host if request.client else None

    def job(session: Session) -> T:
        result = work(session)
        fhir = fhir_service(session, user.settings, user.tenant, base, user.clock,
                            policy=AccessPolicy(user.principal, session=session, tenant=user.tenant))
        fhir.record_audit(audit_event(principal=user.principal, interaction=interaction, now=fhir.clock(),
                                      outcome=0, address=address, resource_type="Claim", resource_id=resource_id,
                                      description=f"{request.method} {request.url.path}"))
        return result

    return job


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
    error = None
    if status and status not in CLAIM_STATUSES:
        error, status = f"There is no claim status {status!r}; choose one of the list.", ""

    def work(session: Session) -> tuple[BillingTotals, tuple[int, list[ClaimRow]]]:
        totals = tenant_totals(session, tenant=user.tenant)
        return totals, (list_claims(session, tenant=user.tenant, status=status or None, limit=limit,
                                    offset=offset) if error is None else (0, []))

    totals, (total, claims) = await run(user.settings, billing_work(request, user, "search-type", None, work))
    kept = {k: v for k, v in (("status", status), ("limit", str(limit) if limit != 50 else "")) if v}

    def link(at: int) -> str:
        return PAGE + "?" + urlencode({**kept, "offset": str(at)})

    return render(request, "billing.html", status=400 if error else 200, totals=totals, claims=claims,
                  total=total, status_filter=status, statuses=CLAIM_STATUSES, limit=limit, offset=offset,
                  page_sizes=PAGE_SIZES, error=error,
                  previous=link(max(0, offset - limit)) if offset > 0 else None,
                  following=link(offset + limit) if offset + limit < total else None)


async def claim(claim_id: str, request: Request, user: UserDep) -> Response:
    if not sees_billing(user):
        return render(request, "error.html", status=403, error=NO_BILLING_SCOPE)
    if not _ID.fullmatch(claim_id):
        raise NotFound("No such claim")
    found = await run(user.settings, billing_work(
        request, user, "read", claim_id, lambda s: claim_detail(s, tenant=user.tenant, claim_id=claim_id)))
    if found is None:  # another tenant's claim does not exist here
        raise NotFound("No such claim")
    return render(request, "billing_claim.html", claim=found)

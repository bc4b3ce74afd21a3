"""The referral views of the dashboard: the referrals and their obligations, read through the referral
services in the signed-in client's tenant, with its scopes and audited like the referral API's reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from hub.dashboard.pages import T, User, UserDep, render, run
from hub.fhir.router import fhir_base
from hub.referrals.plans import PlanService
from hub.security.audit import audit_event
from hub.security.policy import AccessPolicy
from hub.services import fhir_service


def referral_work(request: Request, user: User, work: Callable[[Any], T]) -> Callable[[Session], T]:
    """``work(plan_service)`` in the caller's transaction, audited like the referral API's reads."""
    base = fhir_base(request, user.settings)
    address = request.client.host if request.client else None

    def job(session: Session) -> T:
        # the scopes GET /referrals and /fhir apply
        fhir = fhir_service(session, user.settings, user.tenant, base, user.clock,
                            policy=AccessPolicy(user.principal, session=session, tenant=user.tenant))
        result = work(PlanService(fhir, payer_rules=user.settings.certification_rules, clinics=user.settings.clinics))
        fhir.record_audit(audit_event(principal=user.principal, interaction="search-type", now=fhir.clock(), outcome=0,
                                      address=address, resource_type="Task",
                                      description=f"{request.method} {request.url.path}"))
        return result

    return job


#: what the referral views search: their Tasks (the referral and obligation Tasks) and ServiceRequests
REFERRAL_VIEW_TYPES = ("Task", "ServiceRequest")
NO_REFERRAL_SCOPE = ("The signed-in client's scopes do not allow searching Task and ServiceRequest, "
                     "so referrals and obligations are not shown.")


def sees_referrals(user: User) -> bool:
    return all(user.principal.can(t, "s") and user.principal.can(t, "r") for t in REFERRAL_VIEW_TYPES)


async def referrals(request: Request, user: UserDep) -> Response:
    status = (request.query_params.get("status") or "").strip()[:40]
    include_done = request.query_params.get("include_done") == "1"

    def work(plans: Any) -> dict[str, Any]:
        return {"referrals": plans.list_referrals(status=status or None),
                "obligations": plans.certifications(include_done=include_done)}

    if not sees_referrals(user):  # as GET /referrals answers this token: 403, explained
        return render(request, "error.html", status=403, error=NO_REFERRAL_SCOPE)
    data = await run(user.settings, referral_work(request, user, work))
    return render(request, "referrals.html", status_filter=status, include_done=include_done,
                  task_statuses=("requested", "received", "accepted", "rejected", "in-progress", "on-hold",
                                 "completed", "cancelled"), **data)

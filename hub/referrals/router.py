"""Referral endpoints for referring physicians and clinics (JSON; the FHIR view is at /fhir).

- ``POST /referrals``: send a referral (friendly body; builds Patient, PractitionerRole, Condition,
  Coverage, attachments and the ServiceRequest; the Task that tracks it is opened by the hub).
- ``GET /referrals``: follow referrals (filter by requester, owner, status).
- ``POST /referrals/{task_id}/status``: move the referral Task (accept, reject with reason, start,
  put on hold, complete, cancel); illegal transitions are 409 OperationOutcome-like problems.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from hub import boundary
from hub.boundary import Audit, Caller
from hub.deps import PrincipalDep, SettingsDep, TenantDep, get_clock, require_roles
from hub.errors import PROBLEMS
from hub.fhir.router import fhir_base
from hub.jsonbody import JsonBodyRoute
from hub.referrals.plans import DischargeIn, PlanIn, PlanService, SignIn
from hub.referrals.schemas import DischargeOut, ObligationOut, PlanOut, ReferralOut
from hub.settings import Settings
from mappings.referral.intake import ReferralIn

router = APIRouter(tags=["referrals"], route_class=JsonBodyRoute, responses=PROBLEMS)
CLINIC = [Depends(require_roles("clinic", "admin"))]
T = TypeVar("T")


async def run(request: Request, settings: Settings, tenant: str, work: Callable[[PlanService], T]) -> T:
    """Run ``work`` in one unit of work under the caller's access policy (the scopes and, for a
    referring physician, the compartment that /fhir applies), and audit it (:func:`hub.boundary.run`)."""
    caller = Caller(principal=request.state.principal, address=request.client.host if request.client else None,
                    base_url=fhir_base(request, settings),
                    clock=request.app.dependency_overrides.get(get_clock, get_clock)())
    target = request.path_params.get("task_id") or request.path_params.get("care_plan_id")
    target_type = "CarePlan" if "care_plan_id" in request.path_params else "Task"
    what = f"{request.method} {request.url.path}"

    def failure(exc: BaseException) -> tuple[int, str]:
        status = getattr(exc, "status_code", 500)
        return (4 if status < 500 else 8), f"{what} HTTP {status}"

    audit = Audit(interaction="operation", resource_type=target_type if target else None, resource_id=target,
                  description=what, failure=failure)
    return await run_in_threadpool(boundary.run, settings, tenant, caller, audit, lambda services: work(services.plans))


class StatusIn(BaseModel):
    status: Literal["received", "accepted", "rejected", "in-progress", "on-hold", "completed", "cancelled"]
    reason: str | None = Field(default=None, max_length=1000, description="Required to reject or cancel")
    business_status: str | None = Field(default=None, description="A BSeR/360X business status code")


@router.post("/referrals", response_model=ReferralOut,
             status_code=201, summary="Send a referral (the same identifier updates it)")
async def send_referral(body: ReferralIn, request: Request, settings: SettingsDep, tenant: TenantDep,
                        principal: PrincipalDep) -> dict[str, Any]:
    principal.require_role("referrer", "clinic", "admin", "system")
    principal.require("ServiceRequest", "c")  # a read-only client (system/*.rs) sends no referral
    as_referrer = principal.fhir_user if principal.role == "referrer" else None
    return await run(request, settings, tenant, lambda svc: svc.intake(body, as_referrer=as_referrer))


@router.get("/referrals", response_model=list[ReferralOut],
            summary="Referrals, newest first")
async def list_referrals(
    request: Request,
    settings: SettingsDep,
    tenant: TenantDep,
    principal: PrincipalDep,
    requester: str | None = None,
    owner: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    if principal.role == "referrer":  # a referring physician sees the referrals they sent, only
        requester = principal.fhir_user
    return await run(request, settings, tenant,
                     lambda svc: svc.list_referrals(requester=requester, owner=owner, status=status))


@router.post("/referrals/{task_id}/status", response_model=ReferralOut,
             dependencies=CLINIC, summary="Move a referral through its workflow")
async def change_status(task_id: str, body: StatusIn, request: Request, settings: SettingsDep,
                        tenant: TenantDep) -> dict[str, Any]:
    return await run(request, settings, tenant, lambda svc: svc.transition(
        task_id, body.status, reason=body.reason, business_status=body.business_status))


@router.post("/referrals/{task_id}/plan-of-care", response_model=PlanOut,
             status_code=201, dependencies=CLINIC,
             summary="Establish (or revise) the plan of care; it goes to the referrer for certification")
async def plan_of_care(task_id: str, body: PlanIn, request: Request, settings: SettingsDep,
                       tenant: TenantDep) -> dict[str, Any]:
    return await run(request, settings, tenant, lambda svc: svc.establish_plan(task_id, body))


@router.post("/referrals/{task_id}/discharge", response_model=DischargeOut,
             dependencies=CLINIC,
             summary="Discharge: feedback to the referrer, referral completed, the plan of care and its open "
                     "obligations closed (409 when discharged already)")
async def discharge(task_id: str, body: DischargeIn, request: Request, settings: SettingsDep,
                    tenant: TenantDep) -> dict[str, Any]:
    return await run(request, settings, tenant, lambda svc: svc.discharge(task_id, body))


@router.get("/certifications", response_model=list[ObligationOut],
            summary="Certification, recertification and progress-report obligations")
async def certifications(
    request: Request,
    settings: SettingsDep,
    tenant: TenantDep,
    principal: PrincipalDep,
    due_before: date | None = None,
    owner: str | None = None,
    include_done: bool = False,
) -> list[dict[str, Any]]:
    if principal.role == "referrer":  # their own signatures to give, only
        owner = principal.fhir_user
    return await run(request, settings, tenant, lambda svc: svc.certifications(
        due_before=due_before, owner=owner, include_done=include_done))


@router.post("/certifications/{task_id}/sign", response_model=ObligationOut,
             summary="The referring physician signs (certifies) the plan")
async def sign(task_id: str, body: SignIn, request: Request, settings: SettingsDep,
               tenant: TenantDep, principal: PrincipalDep) -> dict[str, Any]:
    principal.require_role("referrer", "admin")
    signer = principal.fhir_user if principal.role == "referrer" else None
    return await run(request, settings, tenant, lambda svc: svc.sign(task_id, body, signer=signer))


@router.post("/care-plans/{care_plan_id}/clocks", response_model=list[ObligationOut],
             dependencies=CLINIC, summary="Recompute a plan's obligations now")
async def refresh_clocks(care_plan_id: str, request: Request, settings: SettingsDep,
                         tenant: TenantDep) -> list[dict[str, Any]]:
    return await run(request, settings, tenant, lambda svc: svc.refresh_clocks(care_plan_id))

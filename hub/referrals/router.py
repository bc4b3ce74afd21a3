"""Referral endpoints for referring physicians and clinics (JSON; the FHIR view is at /fhir).

- ``POST /referrals``: send a referral (friendly body; builds Patient, PractitionerRole, Condition,
  Coverage, attachments and the ServiceRequest; the Task that tracks it is opened by the hub).
- ``GET /referrals``: follow referrals (filter by requester, owner, status).
- ``POST /referrals/{task_id}/status``: move the referral Task (accept, reject with reason, start,
  put on hold, complete, cancel); illegal transitions are 409 OperationOutcome-like problems.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from hub.deps import SettingsDep, TenantDep, unit_of_work
from hub.referrals.service import ReferralService
from hub.settings import Settings
from mappings.referral.intake import ReferralIn

router = APIRouter(tags=["referrals"])
T = TypeVar("T")


async def run(request: Request, settings: Settings, tenant: str, work: Callable[[ReferralService], T]) -> T:
    from hub.fhir.router import fhir_base
    from hub.services import fhir_service

    base = fhir_base(request, settings)

    def job() -> T:
        with unit_of_work(settings) as session:
            return work(ReferralService(fhir_service(session, settings, tenant, base)))

    return await run_in_threadpool(job)


class StatusIn(BaseModel):
    status: Literal["received", "accepted", "rejected", "in-progress", "on-hold", "completed", "cancelled"]
    reason: str | None = Field(default=None, max_length=1000, description="Required to reject or cancel")
    business_status: str | None = Field(default=None, description="A BSeR/360X business status code")


@router.post("/referrals", status_code=201, summary="Send a referral (the same identifier updates it)")
async def send_referral(body: ReferralIn, request: Request, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    return await run(request, settings, tenant, lambda svc: svc.intake(body))


@router.get("/referrals", summary="Referrals, newest first")
async def list_referrals(
    request: Request,
    settings: SettingsDep,
    tenant: TenantDep,
    requester: str | None = None,
    owner: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    return await run(request, settings, tenant,
                     lambda svc: svc.list_referrals(requester=requester, owner=owner, status=status))


@router.post("/referrals/{task_id}/status", summary="Move a referral through its workflow")
async def change_status(task_id: str, body: StatusIn, request: Request, settings: SettingsDep,
                        tenant: TenantDep) -> dict[str, Any]:
    return await run(request, settings, tenant, lambda svc: svc.transition(
        task_id, body.status, reason=body.reason, business_status=body.business_status))

"""HEP endpoints: the vendor's webhook (signed by the vendor; no bearer token) and a patient's
engagement summary (clinic and admin callers)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hub import boundary
from hub.boundary import Audit, Caller
from hub.deps import SettingsDep, TenantDep, get_clock, require_roles
from hub.errors import PROBLEMS
from hub.fhir.router import fhir_base
from hub.inbound.engagement import patient_engagement
from hub.inbound.hep import receive_hep_webhook

router = APIRouter(tags=["inbound"])
CLINIC = [Depends(require_roles("clinic", "admin"))]


@router.post("/inbound/{tenant}/hep/{connector}", status_code=200,
             summary="A home exercise program vendor reports adherence, outcomes or program events (vendor-signed)")
async def inbound_hep(tenant: str, connector: str, request: Request, settings: SettingsDep) -> JSONResponse:
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}

    def receive() -> tuple[int, dict[str, Any]]:
        return receive_hep_webhook(settings, tenant=tenant, connector=connector, body=body, headers=headers)

    status, result = await run_in_threadpool(receive)
    return JSONResponse(result, status_code=status)


@router.get("/patients/{patient_id}/engagement", dependencies=CLINIC, responses=PROBLEMS, tags=["patients"],
            summary="A patient's home exercise engagement: weekly adherence, goals, milestones, last activity")
async def engagement(patient_id: str, request: Request, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    clock = request.app.dependency_overrides.get(get_clock, get_clock)()
    caller = Caller(principal=request.state.principal, address=request.client.host if request.client else None,
                    base_url=fhir_base(request, settings), clock=clock)
    audit = Audit(interaction="read", resource_type="Patient", resource_id=patient_id,
                  description=f"GET {request.url.path}")
    now = clock().replace(tzinfo=UTC)
    return await run_in_threadpool(boundary.run, settings, tenant, caller, audit,
                                   lambda work: patient_engagement(work, patient_id, now=now), readonly=True)

"""Billing admin API (``/admin/api/billing``, role admin): build claims from the visits, list and
scrub them, submit the ready ones as 837P files. Thin: each endpoint runs one
:class:`~hub.billing.service.BillingService` call in the audited boundary (:func:`hub.boundary.run`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from hub import boundary
from hub.billing.results import FileResult, ScrubResult
from hub.billing.schemas import BuildIn, BuildOut, ClaimDetail, ClaimOut, FileOut, ScrubOut, SubmitIn
from hub.billing.service import BillingService
from hub.boundary import Audit, Caller
from hub.deps import SettingsDep, TenantDep, get_clock, require_roles
from hub.errors import PROBLEMS
from hub.fhir.router import fhir_base
from hub.jsonbody import JsonBodyRoute
from hub.settings import Settings

router = APIRouter(prefix="/admin/api/billing", tags=["billing"], dependencies=[Depends(require_roles("admin"))],
                   route_class=JsonBodyRoute, responses=PROBLEMS)
T = TypeVar("T")
ClaimId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9\-.]+$")]


async def run(request: Request, settings: Settings, tenant: str, work: Callable[[BillingService], T], *,
              readonly: bool = False) -> T:
    clock = request.app.dependency_overrides.get(get_clock, get_clock)()
    caller = Caller(principal=request.state.principal, address=request.client.host if request.client else None,
                    base_url=fhir_base(request, settings), clock=clock)
    what = f"{request.method} {request.url.path}"
    claim_id = request.path_params.get("claim_id")

    def failure(exc: BaseException) -> tuple[int, str]:
        status = getattr(exc, "status_code", 500)
        return (4 if status < 500 else 8), f"{what} HTTP {status}"

    audit = Audit(interaction="read" if readonly else "operation", resource_type="Claim" if claim_id else None,
                  resource_id=claim_id, description=what, failure=failure)

    def call(services: boundary.Work) -> T:
        # billing reads and writes the store as the hub itself: the admin role is checked at the door
        return work(BillingService(services.session, settings, tenant, clock))

    return await run_in_threadpool(boundary.run, settings, tenant, caller, audit, call, readonly=readonly)


def _scrub_out(result: ScrubResult) -> dict[str, Any]:
    return {"claim_id": result.claim_id, "status": result.status, "blocking": result.blocking,
            "findings": [f.model_dump() for f in result.findings]}


def _file_out(result: FileResult) -> dict[str, Any]:
    out = dataclasses.asdict(result)
    out["charge"] = f"{out.pop('charge_cents') / 100:.2f}"
    return out


@router.post("/claims/build", response_model=BuildOut, summary="Build a claim per finished visit with billable charges")
async def build_claims(request: Request, settings: SettingsDep, tenant: TenantDep,
                       body: Annotated[BuildIn | None, Body()] = None) -> dict[str, Any]:
    through = body.through if body is not None else None
    result = await run(request, settings, tenant, lambda svc: svc.build_claims(through=through))
    return {"claims": [dataclasses.asdict(c) for c in result.claims],
            "skipped": [dataclasses.asdict(s) for s in result.skipped]}


@router.get("/claims", response_model=list[ClaimOut], summary="Claims, newest date of service first")
async def list_claims(request: Request, settings: SettingsDep, tenant: TenantDep,
                      status: Annotated[str | None, Query(max_length=200,
                                                          description="status, or several comma-separated")] = None,
                      limit: Annotated[int, Query(ge=1, le=500)] = 100,
                      offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0) -> list[dict[str, Any]]:
    return await run(request, settings, tenant, lambda svc: svc.claims(status=status, limit=limit, offset=offset),
                     readonly=True)


@router.get("/claims/{claim_id}", response_model=ClaimDetail, summary="One claim with its findings")
async def get_claim(claim_id: ClaimId, request: Request, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    return await run(request, settings, tenant, lambda svc: svc.claim(claim_id), readonly=True)


@router.post("/claims/{claim_id}/scrub", response_model=ScrubOut, summary="Scrub one claim again")
async def scrub_claim(claim_id: ClaimId, request: Request, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    return _scrub_out(await run(request, settings, tenant, lambda svc: svc.scrub(claim_id)))


@router.post("/submit", response_model=list[FileOut], summary="Submit the ready claims as 837P files, one per payer")
async def submit(request: Request, settings: SettingsDep, tenant: TenantDep,
                 body: Annotated[SubmitIn | None, Body()] = None) -> list[dict[str, Any]]:
    connector = body.connector if body is not None else None
    results = await run(request, settings, tenant, lambda svc: svc.submit(connector=connector))
    return [_file_out(r) for r in results]

"""Admin API of the billing files that come back (``/admin/api/billing``): importing an X12 file by
hand, polling a clearinghouse now, the analytics, and an eligibility inquiry. Every call is audited
(:func:`hub.boundary.run`); answers hold counts, amounts, codes and ids, never a patient's name."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from hub import boundary
from hub.billing.analytics import billing_analytics
from hub.billing.eligibility_requests import request_eligibility
from hub.billing.imports import MANUAL_SOURCE, import_x12
from hub.billing.imports_poll import poll_billing_named
from hub.boundary import Audit, Caller, Work
from hub.deps import SettingsDep, TenantDep, get_clock, require_roles
from hub.errors import PROBLEMS, BadRequest, HubError
from hub.fhir.router import fhir_base
from hub.jsonbody import JsonBodyRoute

router = APIRouter(prefix="/admin/api/billing", tags=["admin"], dependencies=[Depends(require_roles("admin"))],
                   route_class=JsonBodyRoute, responses=PROBLEMS)
T = TypeVar("T")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")


class EligibilityIn(BaseModel):
    coverage: str = Field(pattern=r"^Coverage/[A-Za-z0-9\-.]{1,64}$", description="The Coverage asked about")
    disciplines: list[str] = Field(default_factory=lambda: ["PT"], min_length=1, max_length=10,
                                   description="PT, OT, SLP (or X12 service type codes)")
    provider: str | None = Field(default=None, pattern=r"^Organization/[A-Za-z0-9\-.]{1,64}$",
                                 description="The provider Organization (with an NPI) that asks")
    connector: str | None = Field(default=None, max_length=100, description="The clearinghouse connector")


def _caller(request: Request, settings: Any) -> Caller:
    return Caller(principal=request.state.principal, address=request.client.host if request.client else None,
                  base_url=fhir_base(request, settings),
                  clock=request.app.dependency_overrides.get(get_clock, get_clock)())


async def _run(request: Request, settings: Any, tenant: str, audit: Audit, work: Callable[[Work], T], *,
               readonly: bool = False) -> T:
    return await run_in_threadpool(boundary.run, settings, tenant, _caller(request, settings), audit, work,
                                   readonly=readonly)


def _failure(what: str) -> Callable[[BaseException], tuple[int, str]]:
    def failure(exc: BaseException) -> tuple[int, str]:
        status = getattr(exc, "status_code", 500)
        return (4 if status < 500 else 8), f"{what} HTTP {status}"

    return failure


@router.post("/import", summary="Import an X12 response file (999, TA1, 277CA, 835, 271)")
async def import_file(request: Request, settings: SettingsDep, tenant: TenantDep,
                      x_filename: str | None = Header(default=None, max_length=200)) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        raise BadRequest("the body is the X12 file: it is empty", expression="body")
    name = x_filename if x_filename and _NAME.fullmatch(x_filename) else None
    what = f"POST {request.url.path}"
    audit = Audit(interaction="operation", resource_type="ClaimResponse", description=what, failure=_failure(what))
    result = await _run(request, settings, tenant, audit, lambda work: import_x12(
        work.session, work.settings, tenant=tenant, raw=raw, source=MANUAL_SOURCE, name=name))
    return result.view()


@router.post("/connectors/{name}/poll", summary="Poll a clearinghouse for response files now")
async def poll_now(request: Request, settings: SettingsDep, tenant: TenantDep,
                   name: str = Path(pattern=r"^[A-Za-z0-9_.\-]{1,100}$")) -> dict[str, Any]:
    what = f"POST {request.url.path}"
    audit = Audit(interaction="operation", resource_type="ClaimResponse", description=what, failure=_failure(what))
    try:  # the poll commits file by file in units of work of its own; then its audit
        report = await run_in_threadpool(poll_billing_named, settings, tenant, name)
    except HubError as exc:
        failed: HubError = exc

        def fail(work: Work) -> None:
            raise failed

        await _run(request, settings, tenant, audit, fail)  # audits the failure, raises it again
        raise
    await _run(request, settings, tenant, audit, lambda work: None)
    return report.view()


def _day(value: date | None) -> datetime | None:
    return datetime.combine(value, datetime.min.time()) if value else None


@router.get("/analytics", summary="Claims by status, denials by CARC and payer, days to payment")
async def analytics(request: Request, settings: SettingsDep, tenant: TenantDep,
                    start: date | None = Query(None, alias="from", description="First date of service (inclusive)"),
                    end: date | None = Query(None, alias="to", description="Last date of service (exclusive)"),
                    ) -> dict[str, Any]:
    what = f"GET {request.url.path}"
    audit = Audit(interaction="search-type", resource_type="ClaimResponse", description=what, failure=_failure(what))
    return await _run(request, settings, tenant, audit, lambda work: billing_analytics(
        work.session, work.fhir, tenant=tenant, start=_day(start), end=_day(end)), readonly=True)


@router.post("/eligibility", summary="Ask the payer about a Coverage's benefits (a 270; the 271 comes back)")
async def eligibility(body: EligibilityIn, request: Request, settings: SettingsDep,
                      tenant: TenantDep) -> dict[str, Any]:
    what = f"POST {request.url.path}"
    audit = Audit(interaction="create", resource_type="CoverageEligibilityRequest", description=what,
                  written_id=lambda result: result.request_id, failure=_failure(what))
    requested = await _run(request, settings, tenant, audit, lambda work: request_eligibility(
        work.session, work.settings, tenant=tenant, coverage=body.coverage, disciplines=body.disciplines,
        provider=body.provider, connector=body.connector))
    return requested.view()

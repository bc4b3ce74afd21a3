"""Admin API of the document intake (``/admin/api/documents``): the received documents that matched
nothing (triage), and matching one by hand to its certification Task, which completes it exactly as
an automatic match does (:mod:`hub.documents.intake`). Every call is audited (:func:`hub.boundary.run`).
The list shows ids, channel, dates, size and the reason only: never the document or its sender."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from hub import boundary
from hub.boundary import Audit, Caller, Work
from hub.deps import SettingsDep, TenantDep, get_clock, require_roles
from hub.documents.intake import match_document, triage_documents
from hub.errors import PROBLEMS
from hub.fhir.router import fhir_base
from hub.jsonbody import JsonBodyRoute

router = APIRouter(prefix="/admin/api/documents", tags=["admin"], dependencies=[Depends(require_roles("admin"))],
                   route_class=JsonBodyRoute, responses=PROBLEMS)
T = TypeVar("T")
ID = r"^[A-Za-z0-9\-.]{1,64}$"


class MatchIn(BaseModel):
    task: str = Field(pattern=ID, description="The id of the certification Task the document answers")


async def _run(request: Request, settings: Any, tenant: str, audit: Audit, work: Callable[[Work], T], *,
               readonly: bool = False) -> T:
    caller = Caller(principal=request.state.principal, address=request.client.host if request.client else None,
                    base_url=fhir_base(request, settings),
                    clock=request.app.dependency_overrides.get(get_clock, get_clock)())
    return await run_in_threadpool(boundary.run, settings, tenant, caller, audit, work, readonly=readonly)


def _failure(what: str) -> Callable[[BaseException], tuple[int, str]]:
    def failure(exc: BaseException) -> tuple[int, str]:
        status = getattr(exc, "status_code", 500)
        return (4 if status < 500 else 8), f"{what} HTTP {status}"

    return failure


@router.get("/triage", summary="Received documents that matched nothing, oldest first")
async def list_triage(request: Request, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    what = f"GET {request.url.path}"
    audit = Audit(interaction="search-type", resource_type="DocumentReference", description=what,
                  failure=_failure(what))
    items = await _run(request, settings, tenant, audit, lambda work: triage_documents(work.fhir), readonly=True)
    return {"items": items}


@router.post("/{document_id}/match", summary="Match a received document to its certification Task by hand")
async def match(body: MatchIn, request: Request, settings: SettingsDep, tenant: TenantDep,
                document_id: str = Path(pattern=ID)) -> dict[str, Any]:
    what = f"POST {request.url.path}"
    audit = Audit(interaction="operation", resource_type="DocumentReference", resource_id=document_id,
                  description=what, failure=_failure(what))
    outcome = await _run(request, settings, tenant, audit,
                         lambda work: match_document(work.fhir, document_id, task_id=body.task))
    return outcome.view()

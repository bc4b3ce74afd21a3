"""Fax vendor webhook endpoint (signed by the vendor; no bearer token)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hub.deps import SettingsDep
from hub.inbound.fax import receive_fax_webhook

router = APIRouter(tags=["inbound"])


@router.post("/inbound/{tenant}/fax/{connector}", status_code=202,
             summary="A fax vendor reports a fax's status or delivers a received fax (vendor-signed)")
async def inbound_fax(tenant: str, connector: str, request: Request, settings: SettingsDep) -> JSONResponse:
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    address = request.client.host if request.client else None
    status, result = await run_in_threadpool(
        lambda: receive_fax_webhook(settings, tenant=tenant, connector=connector, body=body, headers=headers,
                                    url=str(request.url), address=address))
    return JSONResponse(result, status_code=status)

"""Inbound webhook endpoint (HMAC-signed by the partner; no bearer token)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hub.deps import SettingsDep
from hub.sync.inbound_webhook import receive_webhook

router = APIRouter(tags=["inbound"])


@router.post("/inbound/{tenant}/{connector}", status_code=202,
             summary="A partner pushes a FHIR resource (HMAC-SHA256 signed over timestamp, Idempotency-Key "
                     "and body)")
async def inbound(tenant: str, connector: str, request: Request, settings: SettingsDep) -> JSONResponse:
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    address = request.client.host if request.client else None
    status, result = await run_in_threadpool(
        lambda: receive_webhook(settings, tenant=tenant, connector=connector, body=body, headers=headers,
                                address=address))
    return JSONResponse(result, status_code=status)

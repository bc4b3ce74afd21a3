"""Inbound webhook endpoint (HMAC-signed by the partner; no bearer token)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hub.deps import SettingsDep
from hub.sync.inbound_webhook import receive_webhook

router = APIRouter(tags=["inbound"])


@router.post("/inbound/{tenant}/{connector}", status_code=202,
             summary="A partner pushes a FHIR resource (HMAC-SHA256 signed, Idempotency-Key)")
async def inbound(tenant: str, connector: str, request: Request, settings: SettingsDep) -> JSONResponse:
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    result: dict[str, Any] = await run_in_threadpool(
        lambda: receive_webhook(settings, tenant=tenant, connector=connector, body=body, headers=headers))
    status = 422 if result["status"] == "rejected" else (200 if result["duplicate"] else 202)
    return JSONResponse(result, status_code=status)

"""Fax vendor webhook endpoint (signed by the vendor; no bearer token)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hub import faults
from hub.deps import SettingsDep
from hub.inbound.fax import FAULT_POINT, receive_fax_webhook

router = APIRouter(tags=["inbound"])


@router.post("/inbound/{tenant}/fax/{connector}", status_code=202,
             summary="A fax vendor reports a fax's status or delivers a received fax (vendor-signed)")
async def inbound_fax(tenant: str, connector: str, request: Request, settings: SettingsDep) -> JSONResponse:
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    address = request.client.host if request.client else None

    def receive() -> tuple[int, dict[str, Any]]:
        answer = receive_fax_webhook(settings, tenant=tenant, connector=connector, body=body, headers=headers,
                                     url=str(request.url), address=address)
        if answer[0] == 202 and "document" in answer[1]:  # a received fax, committed, not yet answered
            faults.pause(settings, "after", FAULT_POINT)  # test environment only
        return answer

    status, result = await run_in_threadpool(receive)
    return JSONResponse(result, status_code=status)

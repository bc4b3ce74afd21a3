"""Fax vendor webhook endpoint (signed by the vendor; no bearer token)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hub import faults
from hub.deps import SettingsDep
from hub.inbound.fax import FAULT_POINT, receive_fax_webhook
from hub.settings import Settings

router = APIRouter(tags=["inbound"])


def public_url(settings: Settings, request: Request) -> str:
    """The URL the vendor called, as it knows it: behind a proxy the request reaches the hub under
    another host, so with ``HUB_BASE_URL`` set the signed URL is that base + the request's path."""
    if not settings.base_url:
        return str(request.url)
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{settings.base_url}{request.url.path}{query}"


@router.post("/inbound/{tenant}/fax/{connector}", status_code=202,
             summary="A fax vendor reports a fax's status or delivers a received fax (vendor-signed)")
async def inbound_fax(tenant: str, connector: str, request: Request, settings: SettingsDep) -> JSONResponse:
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    address = request.client.host if request.client else None

    def receive() -> tuple[int, dict[str, Any]]:
        answer = receive_fax_webhook(settings, tenant=tenant, connector=connector, body=body, headers=headers,
                                     url=public_url(settings, request), address=address)
        if answer[0] == 202 and "document" in answer[1]:  # a received fax, committed, not yet answered
            faults.pause(settings, "after", FAULT_POINT)  # test environment only
        return answer

    status, result = await run_in_threadpool(receive)
    return JSONResponse(result, status_code=status)

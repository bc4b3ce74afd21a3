"""ASGI middleware: correlation id (``X-Correlation-ID``), carried from request to message to task."""

from __future__ import annotations

import re
import uuid
from typing import Any

from hub.context import correlation_id

HEADER = b"x-correlation-id"
_VALID = re.compile(rb"^[A-Za-z0-9._\-]{1,64}$")


class CorrelationIdMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope.get("headers", []) if k == HEADER), None)
        value = incoming.decode() if incoming and _VALID.match(incoming) else uuid.uuid4().hex
        token = correlation_id.set(value)

        async def send_with_header(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (HEADER, value.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            correlation_id.reset(token)

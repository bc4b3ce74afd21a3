"""ASGI middleware: correlation id (``X-Correlation-ID``), carried from request to message to task."""

from __future__ import annotations

import collections
import json
import re
import time
import uuid
from typing import Any

from hub.broker import Enqueuer
from hub.context import correlation_id
from hub.unit_of_work import using_enqueuer

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


class EnqueuerMiddleware:
    """Every unit of work of a request hands its committed jobs to the application's enqueuer."""

    def __init__(self, app: Any, enqueuer: Enqueuer) -> None:
        self.app = app
        self.enqueuer = enqueuer

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        with using_enqueuer(self.enqueuer):
            await self.app(scope, receive, send)


SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
]
#: the interactive API docs load their own scripts and styles
_DOCS = ("/docs", "/redoc", "/openapi.json")


class SecurityHeadersMiddleware:
    """Hardening headers on every response (the API docs keep a CSP that lets them render)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope.get("path", "").startswith(_DOCS)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS
                         if k not in present and not (docs and k == b"content-security-policy")]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimitMiddleware:
    """Refuse bodies over HUB_MAX_BODY_BYTES on every endpoint (413), also when chunked."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(scope, send, self.limit)
            return
        if declared is not None or scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # no Content-Length (chunked): read up to the limit first, then hand the body on
        chunks, seen, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                await _too_large(scope, send, self.limit)
                return
            more = message.get("more_body", False)
        body = b"".join(chunks)
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(scope: dict[str, Any], send: Any, limit: int) -> None:
    path = scope.get("path", "")
    text = f"The body is larger than the limit of {limit} bytes"
    if path == "/fhir" or path.startswith("/fhir/"):
        body = {"resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "too-costly", "diagnostics": text}]}
        media = b"application/fhir+json; charset=utf-8"
    else:
        body = {"type": "about:blank", "status": 413, "title": text}
        media = b"application/problem+json"
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", media), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


class RateLimitMiddleware:
    """A sliding one-minute window of requests per client: the client of a valid access token, else
    the caller's address.

    An unverified bearer header does not make a caller someone else: keyed by its hash, a password
    guesser (or a memory exhauster) would only need to send a new random header each time. Windows
    that have emptied are dropped, so the table holds the clients of the last minute only.

    Per process: with N API replicas a client gets up to N times the limit; a shared limiter (Redis)
    is the next step when that matters.
    """

    #: how many keys before windows older than a minute are swept
    SWEEP_AT = 10_000

    def __init__(self, app: Any, per_minute: int, identify: Any = None) -> None:
        self.app = app
        self.per_minute = per_minute
        self.identify = identify  # token -> client id, or None when it does not verify
        self.hits: dict[str, collections.deque[float]] = {}

    def _key(self, scope: dict[str, Any]) -> str:
        header = next((v for k, v in scope.get("headers", []) if k == b"authorization"), b"")
        if header[:7].lower() == b"bearer " and self.identify is not None:
            client_id = self.identify(header[7:].strip().decode("latin-1"))
            if client_id:
                return f"c:{client_id}"
        client = scope.get("client") or ("?", 0)
        return f"a:{client[0]}"

    def _sweep(self, now: float) -> None:
        for key in [k for k, window in self.hits.items() if not window or window[-1] < now - 60]:
            del self.hits[key]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.per_minute <= 0 or scope.get("path") in ("/healthz", "/readyz"):
            await self.app(scope, receive, send)
            return
        now = time.monotonic()
        key = self._key(scope)
        window = self.hits.get(key)
        if window is None:
            if len(self.hits) >= self.SWEEP_AT:
                self._sweep(now)
            window = self.hits[key] = collections.deque()
        while window and window[0] < now - 60:
            window.popleft()
        if len(window) >= self.per_minute:
            retry = max(1, int(60 - (now - window[0])) + 1)
            data = json.dumps({"type": "about:blank", "status": 429,
                               "title": f"Rate limit of {self.per_minute} requests a minute reached"}).encode()
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/problem+json"),
                                    (b"retry-after", str(retry).encode())]})
            await send({"type": "http.response.body", "body": data})
            return
        window.append(now)
        await self.app(scope, receive, send)

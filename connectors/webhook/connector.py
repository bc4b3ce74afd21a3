"""The webhook connector: POST the FHIR JSON of each delivery to a partner URL, signed.

Request::

    POST <config.url>
    Content-Type: application/fhir+json          (the delivery's content type)
    Idempotency-Key: <delivery.idempotency_key>   receivers dedupe on it
    X-Correlation-ID: <delivery.correlation_id>
    X-Hub-Event: ServiceRequest.create
    X-Hub-Timestamp: <unix seconds>
    X-Hub-Signature-256: v1=<hex HMAC-SHA256(secret, f"{timestamp}\\n{idempotency_key}\\n".encode() + body)>

Outcome: 2xx -> ``SendResult``; 408/429/5xx, timeouts and connection failures -> ``TransientError``
(``retry_after`` from ``Retry-After``); 401/403 -> ``AuthError``; any other status (redirects are not
followed) -> ``PermanentError``. ``remote_id`` is the ``id`` of a JSON response object, else the
``Location`` header, else None.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any, ClassVar, Literal

import httpx
from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr

from connectors.base import (
    ConnectorConfig,
    ConnectorError,
    Delivery,
    HealthResult,
    SendResult,
    validate_config,
)
from connectors.httputil import (
    error_for_status,
    excerpt,
    ms_since,
    read_capped,
    safe_target,
    shared_ssl_context,
    translate_transport_error,
)
from connectors.webhook.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_header

__all__ = ["WebhookConfig", "WebhookConnector"]

USER_AGENT = "therapy-hub-webhook/1"
_SUCCESS_BODY_LIMIT = 64 * 1024  # read to find a remote id; more is ignored
_ERROR_BODY_LIMIT = 4 * 1024  # read for the 200-character excerpt

_TRANSPORT_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError)


class WebhookConfig(ConnectorConfig):
    url: AnyHttpUrl
    secret: Annotated[SecretStr, Field(min_length=16, description="HMAC-SHA256 signing key")]
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    health_url: AnyHttpUrl | None = None
    health_method: Literal["HEAD", "GET"] = "HEAD"
    verify_tls: bool = True
    proxy_url: AnyHttpUrl | None = None  # explicit; HTTP(S)_PROXY/.netrc from the environment are ignored

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # webhook paths and query strings often embed tokens: show only scheme://host:port in logs
        for name, value in super().__repr_args__():
            if name in ("url", "health_url", "proxy_url") and value is not None:
                value = safe_target(str(value)) + "/..."
            yield name, value


class WebhookConnector:
    """Signed JSON webhooks. One ``httpx.Client`` (connection pool) per instance; call ``close()``."""

    slug: ClassVar[str] = "webhook"
    Config: ClassVar[type[BaseModel]] = WebhookConfig  # typed as in the Connector protocol

    def __init__(
        self,
        config: WebhookConfig | Mapping[str, Any],
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = validate_config(WebhookConfig, config, connector=self.slug)
        self._clock = clock
        self._url = str(self.config.url)
        self._target = safe_target(self._url)
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.config.timeout_seconds),
            follow_redirects=False,
            verify=shared_ssl_context() if self.config.verify_tls else False,
            transport=transport,
            proxy=str(self.config.proxy_url) if self.config.proxy_url else None,
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
        )

    def __repr__(self) -> str:
        return f"WebhookConnector(target={self._target!r})"

    # ------------------------------------------------------------------------------- Sender

    def send(self, delivery: Delivery) -> SendResult:
        timestamp = str(int(self._clock()))
        body = delivery.payload
        headers = {
            "Content-Type": delivery.content_type or "application/fhir+json",
            "Idempotency-Key": delivery.idempotency_key,
            "X-Correlation-ID": delivery.correlation_id,
            "X-Hub-Event": delivery.event,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature_header(self.config.secret, timestamp, body,
                                               idempotency_key=delivery.idempotency_key),
        }
        what = f"webhook POST {self._target}"
        started = time.perf_counter()
        try:
            with self._client.stream("POST", self._url, content=body, headers=headers) as response:
                ok = response.is_success
                data, complete = read_capped(response, _SUCCESS_BODY_LIMIT if ok else _ERROR_BODY_LIMIT)
        except _TRANSPORT_ERRORS as exc:
            raise translate_transport_error(
                exc, what=what, timeout=self.config.timeout_seconds, duration_ms=ms_since(started)
            ) from None
        duration_ms = ms_since(started)
        error = error_for_status(
            response.status_code,
            what=what,
            reason=response.reason_phrase,
            retry_after=response.headers.get("Retry-After"),
            body=data,
            duration_ms=duration_ms,
        )
        if error is not None:
            raise error
        return SendResult(
            status=response.status_code,
            remote_id=_remote_id(response, data if complete else b""),
            detail=f"{what} -> {response.status_code}",
            duration_ms=duration_ms,
        )

    # ------------------------------------------------------------------------ HealthChecker

    def health(self) -> HealthResult:
        url = str(self.config.health_url or self.config.url)
        method = self.config.health_method
        what = f"webhook {method} {safe_target(url)}"
        started = time.perf_counter()
        try:
            with self._client.stream(method, url) as response:
                status = response.status_code
        except _TRANSPORT_ERRORS as exc:
            error: ConnectorError = translate_transport_error(
                exc, what=what, timeout=self.config.timeout_seconds
            )
            return HealthResult(ok=False, detail=error.message, duration_ms=ms_since(started))
        return HealthResult(ok=status < 500, detail=f"{what} -> {status}", duration_ms=ms_since(started))

    # -------------------------------------------------------------------------- lifecycle

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> WebhookConnector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _remote_id(response: httpx.Response, body: bytes) -> str | None:
    if body and "json" in response.headers.get("Content-Type", ""):
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            value = parsed.get("id")
            if isinstance(value, str | int) and not isinstance(value, bool):
                return excerpt(str(value)) or None
    location = response.headers.get("Location")
    return excerpt(location) or None if location else None

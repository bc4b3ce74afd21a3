"""The fax connector: a plan of care sent for certification, faxed to the referrer with a cover sheet.

A route sends certification Tasks (focus the CarePlan, owner the referrer's PractitionerRole with a
``fax`` telecom) to a ``fax`` connector; the delivery carries the Task's references and the plan's
DocumentReferences (``context``), from which :mod:`connectors.fax.document` builds one PDF: the
cover sheet with the return code and a QR code, then the plan. The vendor profile
(:mod:`connectors.fax.profiles`) shapes the HTTP request; ``SendResult.remote_id`` is the vendor's
fax id, by which the vendor's status webhook later finds the delivery: the vendor only queues the fax,
so the result says a confirmation is to follow (``confirm_within_seconds``, from
``status_timeout_minutes``) and the hub keeps the delivery ``awaiting`` until the status arrives.

Errors: 408/429/5xx, timeouts and connection failures -> ``TransientError``; 401/403 -> ``AuthError``;
other 4xx -> ``PermanentError``; a delivery that cannot be faxed (not a Task, no fax number, no
plan PDF) -> ``PermanentError``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, ClassVar, Literal

import httpx
from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr, field_validator

from connectors.base import (
    ConnectorConfig,
    ConnectorError,
    Delivery,
    HealthResult,
    PermanentError,
    SendResult,
    validate_config,
)
from connectors.fax.document import certification_fax, fax_number_of, fax_pdf
from connectors.fax.model import FaxFile, OutboundFax, valid_fax_number
from connectors.fax.profiles import profile
from connectors.fax.profiles.base import Credentials
from connectors.httputil import (
    error_for_status,
    ms_since,
    read_capped,
    safe_target,
    shared_ssl_context,
    translate_transport_error,
)

__all__ = ["FaxConfig", "FaxConnector"]

_BODY_LIMIT = 64 * 1024
_TRANSPORT_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError)


class FaxConfig(ConnectorConfig):
    profile: Literal["phaxio", "documo"]
    base_url: AnyHttpUrl
    api_key: Annotated[SecretStr, Field(min_length=4)]
    api_secret: SecretStr | None = None  # phaxio: HTTP Basic password
    #: the key of the vendor's webhook signatures (phaxio: the callback token; documo: webhook secret)
    webhook_secret: Annotated[SecretStr, Field(min_length=8)]
    sender_fax: str  # the clinic's own number, on the cover sheet
    clinic_name: Annotated[str, Field(min_length=1, max_length=80)]
    #: where the vendor posts status and receive webhooks: the hub's /inbound/{tenant}/fax/{connector}
    callback_url: AnyHttpUrl | None = None
    #: how long the vendor's status webhook may take: a fax not reported delivered by then counts as
    #: failed (retry, then dead letter). 0: the vendor's acceptance is the delivery (no status webhooks)
    status_timeout_minutes: int = Field(default=60, ge=0, le=7 * 24 * 60)
    timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    verify_tls: bool = True

    @field_validator("sender_fax")
    @classmethod
    def _e164(cls, value: str) -> str:
        if not valid_fax_number(value):
            raise ValueError("an E.164 fax number is required")
        return value


class FaxConnector:
    """Faxes through one vendor profile. One ``httpx.Client`` per instance; call ``close()``."""

    slug: ClassVar[str] = "fax"
    Config: ClassVar[type[BaseModel]] = FaxConfig
    context: ClassVar[frozenset[str]] = frozenset({"references", "documents"})

    def __init__(self, config: FaxConfig | Mapping[str, Any], *, transport: httpx.BaseTransport | None = None,
                 today: Callable[[], date] = lambda: datetime.now(UTC).date()) -> None:
        self.config = validate_config(FaxConfig, config, connector=self.slug)
        self.profile = profile(self.config.profile)
        self._today = today
        self._base = str(self.config.base_url)
        self._client = httpx.Client(timeout=httpx.Timeout(self.config.timeout_seconds), follow_redirects=False,
                                    verify=shared_ssl_context() if self.config.verify_tls else False,
                                    transport=transport, trust_env=False)

    def _credentials(self) -> Credentials:
        secret = self.config.api_secret.get_secret_value() if self.config.api_secret else None
        return Credentials(self.config.api_key.get_secret_value(), secret)

    def can_address(self, delivery: Delivery) -> bool:
        """A certification Task whose owner PractitionerRole has an E.164 fax number."""
        return fax_number_of(delivery.payload) is not None

    def send(self, delivery: Delivery) -> SendResult:
        wanted = certification_fax(delivery.payload)
        pdf, pages = fax_pdf(wanted, clinic_name=self.config.clinic_name, clinic_fax=self.config.sender_fax,
                             today=self._today())
        fax = OutboundFax(to=wanted.to, files=(FaxFile(f"{wanted.return_code}.pdf", pdf),),
                          callback_url=str(self.config.callback_url) if self.config.callback_url else None,
                          reference=delivery.idempotency_key)
        request = self.profile.send_request(self._base, fax, self._credentials())
        what = f"fax {self.profile.name} POST {safe_target(request.url)}"
        started = time.perf_counter()
        try:
            with self._client.stream(request.method, request.url, headers=request.headers, data=request.data,
                                     files=request.files) as response:
                body, _ = read_capped(response, _BODY_LIMIT)
        except _TRANSPORT_ERRORS as exc:
            raise translate_transport_error(exc, what=what, timeout=self.config.timeout_seconds,
                                            duration_ms=ms_since(started)) from None
        duration_ms = ms_since(started)
        error = error_for_status(response.status_code, what=what, reason=response.reason_phrase,
                                 retry_after=response.headers.get("Retry-After"), body=body,
                                 duration_ms=duration_ms)
        if error is not None:
            raise error
        fax_id = self.profile.fax_id(body)
        if fax_id is None:
            raise PermanentError(f"{what} -> {response.status_code} without a fax id", status=response.status_code,
                                 duration_ms=duration_ms)
        minutes = self.config.status_timeout_minutes
        return SendResult(status=response.status_code, remote_id=fax_id,
                          detail=f"{what} -> {response.status_code}: fax {fax_id} queued, {pages} pages",
                          duration_ms=duration_ms, confirm_within_seconds=minutes * 60.0 if minutes else None)

    def health(self) -> HealthResult:
        what = f"fax {self.profile.name} GET {safe_target(self._base)}"
        started = time.perf_counter()
        try:
            with self._client.stream("GET", self._base) as response:
                status = response.status_code
        except _TRANSPORT_ERRORS as exc:
            error: ConnectorError = translate_transport_error(exc, what=what, timeout=self.config.timeout_seconds)
            return HealthResult(ok=False, detail=error.message, duration_ms=ms_since(started))
        return HealthResult(ok=status < 500, detail=f"{what} -> {status}", duration_ms=ms_since(started))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> FaxConnector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

"""The ``hep`` connector: a plan of care's home exercises pushed to a HEP vendor as a program.

For a CarePlan delivery (``context``: the resources it references -- its Patient, the ServiceRequests
of its activities -- and the version this vendor was last sent), in this order, each call with an
``Idempotency-Key`` derived from the delivery's key so that a retried delivery repeats nothing:

1. ``POST /v1/patients`` -- ensure the patient (the vendor answers the existing one for a known
   ``external_id``, the hub's Patient id);
2. ``PUT /v1/patients/{id}/programs/{CarePlan id}`` -- the whole program (exercises with name, code,
   sets, reps, hold, load, frequency, instructions, media; :mod:`mappings.hep.program`);
3. ``DELETE .../exercises/{exercise id}`` for every exercise the previous version had and this one
   has not (404: already gone);
4. ``POST /v1/patients/{id}/access-link`` -- the patient's sign-in link, returned as
   ``SendResult.links`` (``rel`` :data:`ACCESS_LINK_REL`) for the hub to store.

``SendResult.remote_id`` is the vendor's program id; ``detail`` names the program version and counts,
never the patient. A draft CarePlan or one without home exercises is not sent (``status`` None,
``detail`` says why). :meth:`HepConnector.verify_webhook` checks the vendor's webhooks
(:mod:`connectors.hep.signature`).

Errors (the :mod:`connectors.base` tree): 401/403 -> ``AuthError``; 404/409/422 and other 4xx ->
``PermanentError`` naming the vendor's error code and field; 408/429/5xx, timeouts and connection
failures -> ``TransientError`` (``retry_after`` from ``Retry-After``); a CarePlan that cannot become a
program -> ``PermanentError`` naming the FHIR path and rule.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, ClassVar
from urllib.parse import quote

import httpx
from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr

from connectors.base import (
    ConnectorConfig,
    ConnectorError,
    Delivery,
    HealthResult,
    IssuedLink,
    PermanentError,
    SendResult,
    validate_config,
)
from connectors.hep.signature import verify_webhook
from connectors.httputil import (
    error_for_status,
    ms_since,
    read_capped,
    safe_target,
    shared_ssl_context,
    translate_transport_error,
)
from mappings.hep.program import ProgramError, ProgramPush, program_push
from mappings.hep.program_codes import HEP_EXERCISE_SYSTEM

__all__ = ["ACCESS_LINK_REL", "HepConfig", "HepConnector"]

ACCESS_LINK_REL = "patient-access"
USER_AGENT = "therapy-hub-hep/1"
_BODY_LIMIT = 256 * 1024
_TRANSPORT_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError)
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.\[\]\-]{0,127}")


class HepConfig(ConnectorConfig):
    base_url: AnyHttpUrl
    api_key: Annotated[SecretStr, Field(min_length=8, description="the vendor's API key (Bearer)")]
    webhook_secret: Annotated[SecretStr, Field(min_length=16, description="key of the vendor's webhook HMAC")]
    #: the code system whose codes are the vendor's exercise codes (``exercises[].code``)
    exercise_code_system: str = HEP_EXERCISE_SYSTEM
    timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    webhook_tolerance_seconds: float = Field(default=300.0, gt=0, le=3600)
    verify_tls: bool = True


def _key(base: str, suffix: str) -> str:
    if len(base) > 180:
        base = hashlib.sha256(base.encode()).hexdigest()
    key = f"{base}:{suffix}"
    return key if len(key) <= 255 else f"{base}:{hashlib.sha256(suffix.encode()).hexdigest()}"


def _digest(body: Mapping[str, Any]) -> str:
    """A short digest of a request body: a retry with the same body repeats the key (the vendor answers
    again what it answered), one with a changed body (the patient moved since) is a new request."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _vendor_reason(body: bytes) -> str:
    """The vendor error's code and field, never its message (it may quote the patient)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return ""
    code, field = error.get("code"), error.get("field")
    parts = [code if isinstance(code, str) and _CODE.fullmatch(code) else ""]
    if isinstance(field, str) and _FIELD.fullmatch(field):
        parts.append(f"field {field}")
    return ", ".join(p for p in parts if p)


class HepConnector:
    """One vendor account. One ``httpx.Client`` per instance; call ``close()``."""

    slug: ClassVar[str] = "hep"
    Config: ClassVar[type[BaseModel]] = HepConfig
    context: ClassVar[frozenset[str]] = frozenset({"references", "previous"})

    def __init__(self, config: HepConfig | Mapping[str, Any], *, transport: httpx.BaseTransport | None = None,
                 today: Callable[[], date] = lambda: datetime.now(UTC).date()) -> None:
        self.config = validate_config(HepConfig, config, connector=self.slug)
        self._today = today
        self._base = str(self.config.base_url).rstrip("/")
        self._target = safe_target(self._base)
        timeout = httpx.Timeout(self.config.timeout_seconds, connect=self.config.connect_timeout_seconds)
        self._client = httpx.Client(
            timeout=timeout, follow_redirects=False, transport=transport, trust_env=False,
            verify=shared_ssl_context() if self.config.verify_tls else False,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json",
                     "Authorization": f"Bearer {self.config.api_key.get_secret_value()}"})

    def __repr__(self) -> str:
        return f"HepConnector(target={self._target!r})"

    # ------------------------------------------------------------------------------- HTTP

    def _call(self, method: str, path: str, *, label: str, key: str | None = None,
              body: Mapping[str, Any] | None = None, missing_ok: bool = False) -> tuple[int, dict[str, Any]]:
        what = f"hep {method} {label} {self._target}"
        headers = {"Idempotency-Key": key} if key else {}
        content = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        if content is not None:
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            with self._client.stream(method, self._base + path, content=content, headers=headers) as response:
                data, complete = read_capped(response, _BODY_LIMIT)
        except _TRANSPORT_ERRORS as exc:
            raise translate_transport_error(exc, what=what, timeout=self.config.timeout_seconds,
                                            duration_ms=ms_since(started)) from None
        duration = ms_since(started)
        status = response.status_code
        if missing_ok and status == 404:
            return status, {}
        error = error_for_status(status, what=what, reason=response.reason_phrase,
                                 retry_after=response.headers.get("Retry-After"), duration_ms=duration)
        if error is not None:
            reason = _vendor_reason(data)
            if reason:
                error.message = f"{error.message}: {reason}"
                error.args = (error.message,)
            raise error
        if status == 204 or not data:
            return status, {}
        try:
            parsed = json.loads(data) if complete else None
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise PermanentError(f"{what} -> {status} without a JSON object", status=status, duration_ms=duration)
        return status, parsed

    @staticmethod
    def _string(answer: Mapping[str, Any], name: str, what: str, status: int) -> str:
        value = answer.get(name)
        if not isinstance(value, str) or not value:
            raise PermanentError(f"hep {what} -> {status} without {name!r}", status=status)
        return value

    # ----------------------------------------------------------------------------- Sender

    def push_of(self, delivery: Delivery) -> ProgramPush:
        """What :meth:`send` would push for ``delivery`` (pure); raises ``PermanentError``."""
        if delivery.resource_type not in (None, "CarePlan"):
            raise PermanentError(f"hep sends CarePlans, not {delivery.resource_type}")
        try:
            return program_push(delivery.payload, delivery.previous, today=self._today(),
                                code_system=self.config.exercise_code_system)
        except ProgramError as exc:
            raise PermanentError(f"hep: the CarePlan cannot become a program: {exc}") from None

    def can_address(self, delivery: Delivery) -> bool:
        """A CarePlan with its Patient in the delivery and home exercises (now or in the previous version)."""
        try:
            push = self.push_of(delivery)
        except (ConnectorError, ValueError):
            return False
        return push.program is not None

    def send(self, delivery: Delivery) -> SendResult:
        started = time.perf_counter()
        push = self.push_of(delivery)
        if push.program is None:
            return SendResult(status=None, remote_id=None, detail=f"hep: nothing sent: {push.skipped}",
                              duration_ms=ms_since(started))
        key = delivery.idempotency_key
        _, patient = self._call("POST", "/v1/patients", label="patient",
                                key=_key(key, f"patient:{_digest(push.patient)}"), body=push.patient)
        patient_id = self._string(patient, "id", "POST patient", 200)
        base = f"/v1/patients/{quote(patient_id, safe='')}"
        program_path = f"{base}/programs/{quote(push.program_external_id, safe='')}"
        status, program = self._call("PUT", program_path, label="program",
                                     key=_key(key, f"program:{_digest(push.program)}"), body=push.program)
        program_id = self._string(program, "id", "PUT program", status)
        version = program.get("version")
        gone = 0
        for exercise_id in push.removed:
            code, _ = self._call("DELETE", f"{program_path}/exercises/{quote(exercise_id, safe='')}",
                                 label="exercise", key=_key(key, f"delete:{exercise_id}"), missing_ok=True)
            gone += code != 404
        _, link = self._call("POST", f"{base}/access-link", label="access-link", key=_key(key, "access-link"),
                             body={})
        url = self._string(link, "url", "POST access-link", 200)
        expires = link.get("expires_at") if isinstance(link.get("expires_at"), str) else None
        count = len(push.program["exercises"])
        detail = (f"hep program {program_id} v{version}: {count} exercise{'s' if count != 1 else ''}"
                  f", {len(push.removed)} removed ({gone} deleted there), access link issued")
        return SendResult(status=status, remote_id=program_id, detail=detail, duration_ms=ms_since(started),
                          links=(IssuedLink(ACCESS_LINK_REL, url, expires),))

    # ---------------------------------------------------------------------------- webhooks

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, *, now: float) -> str:
        """The event id of a webhook signed with this account's secret; raises ``SignatureError``."""
        return verify_webhook(self.config.webhook_secret, headers, body, now=now,
                              tolerance_seconds=self.config.webhook_tolerance_seconds)

    # ------------------------------------------------------------------------ HealthChecker

    def health(self) -> HealthResult:
        started = time.perf_counter()
        try:
            status, answer = self._call("GET", "/v1/health", label="health")
        except ConnectorError as exc:
            return HealthResult(ok=False, detail=exc.message, duration_ms=ms_since(started))
        ok = answer.get("ok") is True
        return HealthResult(ok=ok, detail=f"hep GET health {self._target} -> {status}", duration_ms=ms_since(started))

    # -------------------------------------------------------------------------- lifecycle

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HepConnector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()



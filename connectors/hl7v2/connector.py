"""The ``hl7v2`` connector: FHIR referral status (Task) or referral (ServiceRequest Bundle) -> HL7
v2.5.1 over MLLP to a legacy EMR or referral system, waiting for its acknowledgement.

What is sent (translation in :mod:`mappings.hl7v2.outbound`):

* a ``Task`` (or a Bundle holding one) -> ``RRI^I12`` or the 360X ``OSU^O51`` (``task_message``);
* a Bundle with a therapy ``ServiceRequest`` and no Task -> ``REF^I12``.

MSH-10 (the control id the partner deduplicates on) is derived from the delivery's idempotency
key, so a retried delivery is the same message to the partner.

Outcome: ``AA`` (or ``CA`` in enhanced mode) -> :class:`SendResult`; ``AE``, ``AR``, ``CR`` ->
:class:`PermanentError` with the partner's ERR code, location and text; ``CE``, timeouts,
connection failures, an unreadable or mismatched acknowledgement -> :class:`TransientError`;
a payload that cannot be translated -> :class:`PermanentError`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from connectors.base import (
    ConnectorConfig,
    Delivery,
    HealthResult,
    PermanentError,
    SendResult,
    TransientError,
    validate_config,
)
from connectors.hl7v2.mllp import DEFAULT_MAX_MESSAGE_BYTES, MllpClient, MllpClientError
from mappings.hl7v2 import (
    Hl7Error,
    OutboundHeader,
    UntranslatableResource,
    parse,
    read_ack,
    referral_to_ref_i12,
    task_to_osu_o51,
    task_to_rri_i12,
)

__all__ = ["Hl7v2Config", "Hl7v2Connector", "control_id_for"]

_HD = r"[^|^~\\&\r\n]{0,180}"  # an HD namespace id: no delimiters


class Hl7v2Config(ConnectorConfig):
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300, description="Wait for the ACK")
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    sending_application: str = Field(default="THERAPY_HUB", pattern=_HD)
    sending_facility: str = Field(default="", pattern=_HD)
    receiving_application: str = Field(default="", pattern=_HD)
    receiving_facility: str = Field(default="", pattern=_HD)
    task_message: Literal["RRI^I12", "OSU^O51"] = "RRI^I12"
    processing_id: Literal["P", "T", "D"] = "P"
    accept_ack_type: Literal["", "AL", "NE", "ER", "SU"] = Field(
        default="", description="MSH-15; empty = original mode (application ACK expected)"
    )
    application_ack_type: Literal["", "AL", "NE", "ER", "SU"] = ""
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, ge=1024, le=100 * 1024 * 1024)
    keep_alive: bool = True


def control_id_for(idempotency_key: str) -> str:
    """MSH-10 for a delivery: the key itself when it fits (20 characters, no delimiters), else a hash."""
    if re.fullmatch(r"[A-Za-z0-9.\-_]{1,20}", idempotency_key):
        return idempotency_key
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:20].upper()


class Hl7v2Connector:
    slug: ClassVar[str] = "hl7v2"
    Config: ClassVar[type[BaseModel]] = Hl7v2Config
    #: v2 carries the patient, referrer and location inline (PID, PRD, AIL), and SIU needs the
    #: version an Appointment change replaced to tell a booking from a reschedule
    context: ClassVar[frozenset[str]] = frozenset({"references", "previous"})

    def __init__(
        self,
        config: Hl7v2Config | dict[str, Any],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC).replace(tzinfo=None),
    ) -> None:
        self.config = validate_config(Hl7v2Config, config, connector=self.slug)
        self._clock = clock
        self._target = f"{self.config.host}:{self.config.port}"
        self._client = MllpClient(
            self.config.host,
            self.config.port,
            timeout=self.config.timeout_seconds,
            connect_timeout=self.config.connect_timeout_seconds,
            max_message_bytes=self.config.max_message_bytes,
            keep_alive=self.config.keep_alive,
        )
        self._header = OutboundHeader(
            sending_application=self.config.sending_application,
            sending_facility=self.config.sending_facility,
            receiving_application=self.config.receiving_application,
            receiving_facility=self.config.receiving_facility,
            processing_id=self.config.processing_id,
            accept_ack_type=self.config.accept_ack_type,
            application_ack_type=self.config.application_ack_type,
        )

    def __repr__(self) -> str:
        return f"Hl7v2Connector(target={self._target!r})"

    # ------------------------------------------------------------------------------ translate

    def translate(self, delivery: Delivery) -> tuple[str, str, str]:
        """(message type, control id, message text) for ``delivery``; PermanentError if impossible."""
        try:
            payload = json.loads(delivery.payload)
        except ValueError:
            raise PermanentError("hl7v2: the payload is not JSON") from None
        if not isinstance(payload, dict):
            raise PermanentError("hl7v2: the payload is not a FHIR resource")
        control_id = control_id_for(delivery.idempotency_key)
        now = self._clock()
        types = _resource_types(payload)
        try:
            if "Task" in types:
                builder = task_to_osu_o51 if self.config.task_message == "OSU^O51" else task_to_rri_i12
                text = builder(payload, header=self._header, control_id=control_id, now=now)
                return self.config.task_message, control_id, text
            if "ServiceRequest" in types and payload.get("resourceType") == "Bundle":
                text = referral_to_ref_i12(payload, header=self._header, control_id=control_id, now=now)
                return "REF^I12", control_id, text
        except (UntranslatableResource, Hl7Error) as exc:
            raise PermanentError(f"hl7v2: cannot translate the payload: {exc}") from None
        kind = str(payload.get("resourceType") or "unknown")
        raise PermanentError(f"hl7v2: a {kind} cannot be sent as HL7 v2 (send a Task or a referral Bundle)")

    # --------------------------------------------------------------------------------- Sender

    def send(self, delivery: Delivery) -> SendResult:
        message_type, control_id, text = self.translate(delivery)
        what = f"hl7v2 {message_type} to {self._target}"
        started = time.perf_counter()
        try:
            answer = self._client.exchange(text.encode("utf-8"))
        except MllpClientError as exc:
            raise TransientError(f"{what}: {exc.reason}", duration_ms=_ms_since(started)) from None
        duration_ms = _ms_since(started)
        try:
            ack = read_ack(parse(answer))
        except Hl7Error as exc:
            raise TransientError(
                f"{what}: unreadable acknowledgement ({exc})", duration_ms=duration_ms
            ) from None
        if ack.acknowledged_control_id != control_id:
            self._client.close()  # out of step with the partner: start over on a new connection
            raise TransientError(
                f"{what}: the acknowledgement is for another message", duration_ms=duration_ms
            )
        if ack.accepted:
            return SendResult(
                status=None, remote_id=control_id, detail=f"{what} -> {ack.code}", duration_ms=duration_ms
            )
        if ack.code == "CE":
            raise TransientError(f"{what} -> {ack.describe()}", duration_ms=duration_ms)
        raise PermanentError(f"{what} -> {ack.describe()}", duration_ms=duration_ms)

    # -------------------------------------------------------------------------- HealthChecker

    def health(self) -> HealthResult:
        started = time.perf_counter()
        try:
            self._client.probe()
        except MllpClientError as exc:
            return HealthResult(ok=False, detail=f"hl7v2 {exc.reason}", duration_ms=_ms_since(started))
        return HealthResult(
            ok=True, detail=f"hl7v2 {self._target} accepts connections", duration_ms=_ms_since(started)
        )

    # ------------------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Hl7v2Connector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _resource_types(payload: dict[str, Any]) -> set[str]:
    if payload.get("resourceType") != "Bundle":
        return {str(payload.get("resourceType"))}
    return {
        str(entry["resource"].get("resourceType"))
        for entry in payload.get("entry") or []
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
    }


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)

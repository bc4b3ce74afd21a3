"""The ``hl7v2`` connector: FHIR referral status (Task) or referral (ServiceRequest Bundle) -> HL7
v2.5.1 over MLLP to a legacy EMR or referral system, waiting for its acknowledgement.

What is sent (translation in :mod:`mappings.hl7v2.outbound`):

* a ``Task`` (or a Bundle holding one) -> ``RRI^I12`` or the 360X ``OSU^O51`` (``task_message``);
* a therapy referral ``ServiceRequest`` with its context -> ``REF^I12``;
* an ``Appointment`` -> ``SIU^S12`` when it is booked, ``S13`` rescheduled, ``S14`` changed, ``S15``
  cancelled, ``S26`` no-show (:mod:`mappings.hl7v2.scheduling`; the previous version decides);
* a message the hub already wrote in v2 (``HL7_V2_ER7``, e.g. an enhanced-mode application ACK to
  the sender's listener) -> sent as it is;
* a plan of care ``CarePlan`` or its PDF ``DocumentReference`` -> ``MDM^T02`` (``T08`` for a later
  version, ``T10`` for a new revision) with the summary as text lines and the PDF as an ED
  observation (:mod:`mappings.hl7v2.documents`).

The hub delivers the changed resource first in a ``collection`` Bundle with what it references
(``context``), so PID, PRD, AIP and AIL carry names and identifiers, not just logical ids.

MSH-10 (the control id the partner deduplicates on) is derived from the delivery's idempotency
key, so a retried delivery is the same message to the partner.

Outcome: ``AA`` (or ``CA`` in enhanced mode) -> :class:`SendResult`; ``AE``, ``AR``, ``CR`` ->
:class:`PermanentError` with the ACK code, the partner's ERR-3 code and error location, never its
ERR text (free text, where a partner may echo patient data: :func:`ack_summary`); ``CE``, timeouts,
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
    HL7_V2_ER7,
    ConnectorConfig,
    Delivery,
    HealthResult,
    PermanentError,
    SendResult,
    TransientError,
    validate_config,
)
from connectors.hl7v2.mllp import DEFAULT_MAX_MESSAGE_BYTES, MllpClient, MllpClientError
from connectors.httputil import ms_since
from mappings.hl7v2 import (
    AckResult,
    Hl7Error,
    OutboundHeader,
    UntranslatableResource,
    appointment_to_siu,
    parse,
    plan_to_mdm,
    read_ack,
    read_header,
    referral_to_ref_i12,
    task_to_osu_o51,
    task_to_rri_i12,
)
from mappings.hl7v2.scheduling import BOOKED_STATUSES
from mappings.referral.intake import referral_category

__all__ = ["Hl7v2Config", "Hl7v2Connector", "ack_summary", "control_id_for"]

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
        if delivery.content_type == HL7_V2_ER7:
            return _as_is(delivery.payload)
        payload = _json_object(delivery.payload, "payload")
        previous = _json_object(delivery.previous, "previous version") if delivery.previous else None
        control_id = control_id_for(delivery.idempotency_key)
        now = self._clock()
        kind = _focus_type(payload)
        header = self._header
        try:
            if kind == "Task":
                builder = task_to_osu_o51 if self.config.task_message == "OSU^O51" else task_to_rri_i12
                text = builder(payload, header=header, control_id=control_id, now=now)
                return self.config.task_message, control_id, text
            if kind == "ServiceRequest" and payload.get("resourceType") == "Bundle":
                text = referral_to_ref_i12(payload, header=header, control_id=control_id, now=now)
                return "REF^I12", control_id, text
            if kind == "Appointment":
                event, text = appointment_to_siu(
                    payload, header=header, control_id=control_id, now=now, previous=previous
                )
                return f"SIU^{event}", control_id, text
            if kind in ("CarePlan", "DocumentReference"):
                event, text = plan_to_mdm(payload, header=header, control_id=control_id, now=now)
                return f"MDM^{event}", control_id, text
        except (UntranslatableResource, Hl7Error) as exc:
            raise PermanentError(f"hl7v2: cannot translate the payload: {exc}") from None
        raise PermanentError(
            f"hl7v2: a {kind or 'payload without resourceType'} cannot be sent as HL7 v2 (it sends a referral "
            "ServiceRequest, a Task, an Appointment, a plan of care CarePlan or its DocumentReference)"
        )

    @staticmethod
    def _nothing_to_tell(delivery: Delivery) -> str | None:
        """Why a change is no news to a v2 partner (so not sent, and no dead letter), or None.

        SIU speaks of booked slots only: an Appointment still proposed, pending or waitlisted, or
        cancelled before this partner was told of its booking (``previous`` is what the partner was
        last sent), was never announced. REF^I12 is for referral orders: a plan of care activity
        (a ServiceRequest with intent ``plan``) is not a new referral."""
        if delivery.content_type == HL7_V2_ER7 or delivery.resource_type not in ("Appointment", "ServiceRequest"):
            return None
        try:
            payload = json.loads(delivery.payload)
            previous = json.loads(delivery.previous) if delivery.previous else None
        except ValueError:
            return None  # translate() says what is wrong
        focus = _focus(payload) if isinstance(payload, dict) else None
        if focus and focus.get("resourceType") == "ServiceRequest":
            if focus.get("intent") != "order" or not referral_category(focus):
                return "a ServiceRequest that is not a therapy referral order (e.g. a plan activity) is no REF^I12"
            return None
        if not focus or focus.get("resourceType") != "Appointment":
            return None
        status = focus.get("status")
        before = _focus(previous).get("status") if isinstance(previous, dict) else None
        if status in NOT_BOOKED:
            return f"an Appointment that is {status} is not announced (SIU is for booked slots)"
        if status not in BOOKED_STATUSES and (previous is None or before in NOT_BOOKED):
            return f"an Appointment {status} before this partner heard of its booking was never announced"
        return None

    # --------------------------------------------------------------------------------- Sender

    def send(self, delivery: Delivery) -> SendResult:
        skipped = self._nothing_to_tell(delivery)
        if skipped:
            return SendResult(status=None, remote_id=None, detail=f"hl7v2: not sent, {skipped}", duration_ms=0.0)
        message_type, control_id, text = self.translate(delivery)
        what = f"hl7v2 {message_type} to {self._target}"
        started = time.perf_counter()
        try:
            answer = self._client.exchange(text.encode("utf-8"))
        except MllpClientError as exc:
            raise TransientError(f"{what}: {exc.reason}", duration_ms=ms_since(started)) from None
        duration_ms = ms_since(started)
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
            raise TransientError(f"{what} -> {ack_summary(ack)}", duration_ms=duration_ms)
        raise PermanentError(f"{what} -> {ack_summary(ack)}", duration_ms=duration_ms)

    # -------------------------------------------------------------------------- HealthChecker

    def health(self) -> HealthResult:
        started = time.perf_counter()
        try:
            self._client.probe()
        except MllpClientError as exc:
            return HealthResult(ok=False, detail=f"hl7v2 {exc.reason}", duration_ms=ms_since(started))
        return HealthResult(
            ok=True, detail=f"hl7v2 {self._target} accepts connections", duration_ms=ms_since(started)
        )

    # ------------------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Hl7v2Connector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


NOT_BOOKED = frozenset({"proposed", "pending", "waitlist"})


def _focus(payload: dict[str, Any]) -> dict[str, Any]:
    if payload.get("resourceType") == "Bundle" and payload.get("type") == "collection":
        entries = payload.get("entry") or [{}]
        first = entries[0].get("resource") if isinstance(entries[0], dict) else None
        return first if isinstance(first, dict) else {}
    return payload


def _as_is(raw: bytes) -> tuple[str, str, str]:
    """A message the hub already wrote in v2 (an application ACK): sent unchanged, its own MSH-10 is
    what the partner's acknowledgement must name."""
    try:
        text = raw.decode("utf-8")
        header = read_header(parse(text))
    except (UnicodeDecodeError, Hl7Error) as exc:
        raise PermanentError(f"hl7v2: the message to send is not HL7 v2 ({exc})") from None
    if not header.control_id:
        raise PermanentError("hl7v2: the message to send has no control id (MSH-10)")
    return header.message_type, header.control_id, text


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        raise PermanentError(f"hl7v2: the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise PermanentError(f"hl7v2: the {what} is not a FHIR resource")
    return value


def _focus_type(payload: dict[str, Any]) -> str:
    """The type of what the delivery is about: the resource, or a collection Bundle's first entry (the
    hub's delivery context); in another Bundle the Task, else the ServiceRequest it holds."""
    if payload.get("resourceType") != "Bundle":
        return str(payload.get("resourceType") or "")
    resources = [
        entry["resource"]
        for entry in payload.get("entry") or []
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
    ]
    if payload.get("type") == "collection" and resources:
        return str(resources[0].get("resourceType") or "")
    types = {str(r.get("resourceType")) for r in resources}
    return next((t for t in ("Task", "ServiceRequest") if t in types), "Bundle")


#: an HL7 error code (ERR-3.1, table 0357 or the partner's own): a short token
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,20}")
#: an error location (ERR-2 as read: segment, sequence, field, component, subcomponent)
_LOCATION = re.compile(r"[A-Z][A-Z0-9]{2}(\^[0-9]{1,4}){0,5}")


def ack_summary(ack: AckResult) -> str:
    """What of a refusing acknowledgement goes into the job's last error (shown on the dashboard):
    the ACK code, the ERR-3 error code and the error location, each only when it has the shape of
    one. The ERR and MSA text is left out: a partner may echo patient data there."""
    parts = [ack.code]
    if _ERROR_CODE.fullmatch(ack.error_code or ""):
        parts.append(f"HL7 {ack.error_code}")
    if _LOCATION.fullmatch(ack.error_location or ""):
        parts.append(f"at {ack.error_location}")
    return " ".join(parts)

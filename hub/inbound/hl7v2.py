"""Inbound HL7 v2 (MLLP listener): store first, translate, write, then acknowledge.

:func:`handle_hl7v2` takes REF^I12, OMG^O19 and ADT^A04/A08/A31 (translated by :mod:`mappings.hl7v2`
and written as a FHIR transaction, :mod:`hub.inbound.hl7v2_referrals`) and the answers to referrals
the hub forwarded, RRI^I12 and the 360X OSU^O51, which move the referral Task (referral status
updates, :mod:`hub.inbound.hl7v2_status`). For each message it returns the bytes of the
acknowledgement (:mod:`hub.inbound.hl7v2_acks`):

1. The message is parsed just enough to read its header (MSH-10, the control id). A repeat of a
   control id already received from the same listener (``source``) gets the acknowledgement that
   was sent the first time, and nothing is written (the inbox: unique (tenant, source, external id)).
2. In ONE transaction: the raw message is stored (``record_inbound``, encrypted), translated by
   :mod:`mappings.hl7v2`, written to the FHIR store through the FHIR service (validation, versions,
   the referral Task that a therapy ServiceRequest opens, routing into the outbox), the message
   marked translated, and the acknowledgement recorded as an ``acknowledged`` event.
   A content error (HL7 100-103, or resources the store refuses) rolls back the FHIR writes only:
   the message stays, ``rejected`` with the reason, and the answer is ``AE`` with an ERR; an
   unsupported message type, event, processing id or version is kept the same way and answered
   ``AR``. A message whose header cannot be read is kept as rejected (no control id) and answered.
3. Commit, enqueue the delivery jobs, THEN answer. When the store cannot be written, the answer
   is ``AR`` (HL7 207) and nothing is kept: the sender must send again.

Enhanced mode (MSH-15/16 valued): the answer is the accept acknowledgement (``CA`` once the message
is safely stored, ``CR`` for what the hub refuses outright, ``CE`` when it could not be stored),
and only when MSH-15 asks for it. The application acknowledgement (AA/AE/AR) is recorded in the
message's events and, when MSH-16 asks for it, sent to the sender's own listener: an outbound
message to the ``hl7v2`` connector named by ``ack_connector`` (``hub mllp --ack-connector``), queued
in the same transaction and delivered after commit like any routed change, with MSH-15 ``AL`` so the
partner confirms it. Without a back-channel the message gets a ``deferred`` event that says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connectors.hl7v2.mllp import MllpServer
from hub.fhir.service import FhirService
from hub.inbound.hl7v2_acks import (
    ACK_APPLICATION,
    ack_text,
    earlier_answer,
    internal_error,
    record_ack,
    send_application_ack,
    wire_answer,
)
from hub.inbound.hl7v2_referrals import write_translation
from hub.inbound.hl7v2_status import DEFAULT_REASONS, STATUS_MESSAGES, write_status_update
from hub.kit import utcnow
from hub.security.inbound import InboundPolicy
from hub.services import channel_store
from hub.settings import Settings
from hub.store import repository
from hub.store import sync_repository as repo
from hub.sync.config import SyncConfig
from hub.sync.inbox import Inbox
from hub.sync.outbox import Outbox
from hub.unit_of_work import savepoint, unit_of_work
from mappings.hl7v2 import (
    Header,
    Hl7Error,
    V2Message,
    application_ack_wanted,
    check_supported,
    is_enhanced,
    parse,
    read_header,
    structure_warnings,
    tables,
)
from mappings.hl7v2.errors import DATA_TYPE_ERROR, UNSUPPORTED_VERSION_ID, ErrorLocation, at

__all__ = ["ACK_APPLICATION", "DEFAULT_REASONS", "handle_frame_error", "handle_hl7v2", "run_listener"]

log = logging.getLogger("hub.inbound.hl7v2")

#: tries of a message whose writes collided with a concurrent message's (same resources)
ATTEMPTS = 3


def handle_hl7v2(
    settings: Settings,
    tenant: str,
    raw: bytes,
    source: str,
    *,
    now: datetime | None = None,
    line_endings: str = "normalise",
    ack_connector: str | None = None,
) -> bytes:
    """Store, translate and write one HL7 v2 message; the acknowledgement to send back (may be b"").

    ``ack_connector``: the ``hl7v2`` connector that reaches the sender's own listener, over which an
    enhanced-mode application acknowledgement is sent (see the module docstring)."""
    now = now or utcnow()
    try:
        message = parse(raw, line_endings=line_endings)
        header = read_header(message, required=False)
    except Hl7Error as exc:
        return _store_unreadable(settings, tenant, raw, source, exc, now)
    control_id = header.control_id or None
    if control_id is not None:
        earlier = earlier_answer(settings, tenant, source, control_id)
        if earlier is not None:
            log.info("hub.hl7v2.duplicate", extra={"source": source, "tenant": tenant})
            return earlier
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _process(settings, tenant, raw, source, message, header, control_id, now, ack_connector)
        except IntegrityError:
            # the same control id arrived on another connection at the same moment: answer as it was;
            # else another message created the same resources (same ids) first: do it again
            earlier = earlier_answer(settings, tenant, source, control_id) if control_id else None
            if earlier is not None:
                return earlier
            if attempt == ATTEMPTS:
                return internal_error(header, now, "the message is being processed; send it again")
        except Exception:
            log.exception("hub.hl7v2.store_failed", extra={"source": source, "tenant": tenant})
            return internal_error(header, now, "application internal error; send the message again")
    raise AssertionError("unreachable")


def _process(
    settings: Settings,
    tenant: str,
    raw: bytes,
    source: str,
    message: V2Message,
    header: Header,
    control_id: str | None,
    now: datetime,
    ack_connector: str | None = None,
) -> bytes:
    with unit_of_work(settings) as session:
        repository.ensure_tenant(session, tenant_id=tenant, name=f"Clinic {tenant}", now=now)
        policy = InboundPolicy.for_config(tenant=tenant, source=source, channel="mllp",
                                          config=_listener_config(session, settings, tenant, ack_connector or source))
        fhir, inbox = channel_store(session, settings, tenant, policy, clock=lambda: now)
        row = inbox.record_inbound(
            source=source, external_id=control_id, raw=raw, event=f"hl7v2.{header.message_code or 'unknown'}"
        )
        error: Hl7Error | None = None
        warnings: list[Hl7Error] = []  # segments kept although out of place: ERR severity W in the AA
        part = savepoint(session)
        try:
            full = read_header(message)
            check_supported(full)
            warnings = _version_warnings(full) + structure_warnings(message, full)
            if full.message_type in STATUS_MESSAGES:
                primary, payload = write_status_update(fhir, message, full, now)
            else:
                primary, payload = write_translation(fhir, message, full, now)
            part.commit()
        except Hl7Error as exc:
            part.rollback()
            error, warnings = exc, []
        audit = FhirService(session, tenant=tenant, base_url=settings.fhir_base or "/fhir", clock=lambda: now)
        if error is None:
            resource_type, _, resource_id = primary.partition("/")
            policy.audit(audit, interaction="update" if full.message_type in STATUS_MESSAGES else "transaction",
                         outcome=0, resource_type=resource_type, resource_id=resource_id)
            inbox.mark_translated(row, {"resourceType": resource_type}, resource_id=resource_id,
                                  translated=json.dumps(payload))
            ack_code = "AA"
        else:
            policy.audit(audit, interaction="transaction", outcome=4, description=f"HL7 {error.ack_code}")
            inbox.mark_rejected(row, str(error))
            ack_code = error.ack_code
        text = ack_text(header, ack_code, now, error, warnings)
        record_ack(inbox, row, text, now)
        answer = wire_answer(header, ack_code, now, error, text)
        # a message refused outright gets CR on the wire and, per HL7, no application ACK after it
        if is_enhanced(header) and ack_code != "AR" and application_ack_wanted(header, ack_code == "AA"):
            outbox = Outbox(session, tenant=tenant, settings=settings, clock=lambda: now)
            send_application_ack(inbox, outbox, row, header, ack_code, error, now, ack_connector, warnings)
    log.info(
        "hub.hl7v2.received",
        extra={"source": source, "tenant": tenant, "ack": ack_code, "type": header.message_type},
    )
    return answer


def _version_warnings(header: Header) -> list[Hl7Error]:
    """A later version than 2.5.1 (:data:`mappings.hl7v2.tables.READ_AS_VERSION`) is read as 2.5.1:
    the acknowledgement says so with an ERR of severity W at MSH-12."""
    if header.version not in tables.READ_AS_VERSION:
        return []
    return [Hl7Error(UNSUPPORTED_VERSION_ID, f"HL7 version {header.version} read as {tables.VERSION}",
                     at("MSH", 1, 12), severity="W")]


def _listener_config(session: Session, settings: Settings, tenant: str, name: str) -> dict[str, Any]:
    """The config of the sender's ``hl7v2`` connector (``ack_connector``, else the one named like the
    listener) for its ``inbound_types``; {} (the default policy) when there is none."""
    instance = repo.connector_by_name(session, tenant=tenant, name=name)
    if instance is None or instance.kind != "hl7v2":
        return {}
    return SyncConfig(session, tenant=tenant, settings=settings).connector_config(instance)


def _store_unreadable(
    settings: Settings,
    tenant: str,
    raw: bytes,
    source: str,
    exc: Hl7Error,
    now: datetime,
    header: Header | None = None,
) -> bytes:
    """A message without a readable header: keep it as rejected, answer AR (without MSA-2 when no
    control id could be read)."""
    code = "CR" if is_enhanced(header) else "AR"
    try:
        with unit_of_work(settings) as session:
            repository.ensure_tenant(session, tenant_id=tenant, name=f"Clinic {tenant}", now=now)
            inbox = Inbox(session, tenant=tenant, settings=settings, clock=lambda: now)
            inbox.record_rejected(source=source, event="hl7v2.unreadable", raw=raw, reason=str(exc))
    except Exception:
        log.exception("hub.hl7v2.store_failed", extra={"source": source, "tenant": tenant})
    log.info("hub.hl7v2.unreadable", extra={"source": source, "tenant": tenant, "code": exc.code})
    return ack_text(header, code, now, exc).encode("utf-8")


def handle_frame_error(settings: Settings, tenant: str, partial: bytes, reason: str, source: str) -> bytes:
    """A frame the MLLP listener could not read whole (truncated, oversized): kept as rejected, and
    the ``AR`` to answer when the sender is still connected."""
    error = Hl7Error(DATA_TYPE_ERROR, f"MLLP frame error: {reason}", ErrorLocation("MSH"), ack="AR")
    header = None
    head = partial.split(b"\r", 1)[0]
    if head.startswith(b"MSH"):
        try:
            header = read_header(parse(head), required=False)
        except Hl7Error:
            header = None
    return _store_unreadable(settings, tenant, partial, source, error, utcnow(), header)


def run_listener(
    settings: Settings,
    *,
    tenant: str,
    host: str = "127.0.0.1",
    port: int = 2575,
    source: str | None = None,
    read_timeout: float = 30.0,
    max_message_bytes: int = 10 * 1024 * 1024,
    ready: Any = None,
    ack_connector: str | None = None,
) -> None:
    """Serve MLLP until interrupted; every message goes through :func:`handle_hl7v2` in a thread.

    ``source`` (the inbox key with MSH-10) defaults to ``mllp:<port>``. ``ready(server)`` is called
    once listening (the CLI prints the address).
    """
    name = source or f"mllp:{port}"

    async def handler(raw: bytes) -> bytes:
        return await asyncio.to_thread(handle_hl7v2, settings, tenant, raw, name, ack_connector=ack_connector)

    async def frame_error(partial: bytes, reason: str) -> bytes:
        return await asyncio.to_thread(handle_frame_error, settings, tenant, partial, reason, name)

    async def main() -> None:
        server = MllpServer(
            handler,
            host=host,
            port=port,
            read_timeout=read_timeout,
            max_message_bytes=max_message_bytes,
            on_frame_error=frame_error,
        )
        await server.start()
        if ready is not None:
            ready(server)
        try:
            await server.serve_forever()
        finally:
            await server.close()

    asyncio.run(main())

"""The message store's one writer: every message the hub takes in or makes, and every event of it.

Each intake records through :class:`Inbox`: the MLLP listener (:mod:`hub.inbound.hl7v2`), polling
(:mod:`hub.sync.polling`), the inbound webhook (:mod:`hub.sync.inbound_webhook`), a FHIR REST write
that matches routes (:mod:`hub.sync.outbox`), a refused FHIR write (:mod:`hub.fhir.router`), a raw
message the hub sends (an HL7 v2 application ACK) and a replay (:mod:`hub.sync.actions`). The
delivery engine records the events of its attempts here too. Payloads are encrypted at rest
(:mod:`hub.crypto`); a message is stored before anything else about it can fail.

:func:`upsert_resource` is how the intakes that carry one FHIR resource (polling, inbound webhook)
write it: by business identifier, so that a repeat is an update, not a duplicate.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from hub.context import current_correlation_id
from hub.crypto import cipher_for, decrypt, encrypt
from hub.fhir.events import Change
from hub.kit import utcnow
from hub.settings import Settings
from hub.store.models import Message, MessageEvent
from hub.sync import events as ev

MAX_ERROR = 500


def short_error(text: str) -> str:
    """An error text on one line, at most ``MAX_ERROR`` characters (what messages and jobs keep)."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


def upsert_resource(fhir: Any, resource: dict[str, Any]) -> Any:
    """Create the resource, or update the one with the same business identifier (the WriteResult)."""
    resource_type = resource.get("resourceType")
    identifiers = [i for i in resource.get("identifier") or [] if isinstance(i, dict) and i.get("value")]
    resource = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    if identifiers:
        first = identifiers[0]
        token = f"{first.get('system', '')}|{first['value']}" if first.get("system") else first["value"]
        found = fhir.search(resource_type, [("identifier", token), ("_count", "2")], strict=True)
        matches = [e for e in found.get("entry", []) if e.get("search", {}).get("mode") == "match"]
        if len(matches) == 1:
            existing_id = matches[0]["fullUrl"].rsplit("/", 1)[-1]
            return fhir.update(resource_type, existing_id, {**resource, "id": existing_id})
    return fhir.create(resource_type, resource)


def _correlation_id() -> str:
    return current_correlation_id()


class Inbox:
    """Messages and their events for one tenant, in the caller's transaction."""

    def __init__(
        self,
        session: Session,
        *,
        tenant: str,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.session = session
        self.tenant = tenant
        self.clock = clock
        self.box = cipher_for(settings)

    # ------------------------------------------------------------ events

    def event(
        self,
        message: Message,
        event: str,
        *,
        job_id: int | None = None,
        detail: str | None = None,
        duration_ms: float | None = None,
        attempt: int | None = None,
        at: datetime | None = None,
    ) -> None:
        """Add one event (:mod:`hub.sync.events`) to ``message``'s timeline."""
        self.session.add(
            MessageEvent(
                tenant_id=message.tenant_id,
                message_id=message.id,
                job_id=job_id,
                event=event,
                at=at or self.clock(),
                duration_ms=duration_ms,
                attempt=attempt,
                detail=detail,
            )
        )

    def payload(self, message: Message) -> bytes | None:
        """What a message carries, decrypted: its translation when it has one, else what was received
        (None once retention erased it)."""
        return decrypt(self.box, message.translated_payload or message.raw_payload)

    # ------------------------------------------------------------ partners' messages

    def record_inbound(self, *, source: str, external_id: str | None, raw: bytes | str,
                       event: str = "inbound") -> Message:
        """Store a message received from a partner before anything else can fail (the inbox)."""
        now = self.clock()
        message = Message(
            id=str(uuid.uuid4()),
            tenant_id=self.tenant,
            direction="inbound",
            source=source,
            external_id=external_id,
            event=event,
            correlation_id=_correlation_id(),
            status="received",
            raw_payload=encrypt(self.box, raw),
            created_at=now,
            updated_at=now,
        )
        self.session.add(message)
        self.session.flush()
        self.event(message, ev.RECEIVED, detail=source, at=now)
        return message

    def mark_translated(self, message: Message, resource: dict[str, Any], *, resource_id: str | None = None,
                        translated: str | bytes | None = None) -> None:
        """The message became FHIR that the store holds: its type (and ``resource_id``), and the
        translation itself when it differs from what was received (``translated``, kept encrypted)."""
        now = self.clock()
        message.resource_type = resource.get("resourceType")
        if resource_id is not None:
            message.resource_id = resource_id
        if translated is not None:
            message.translated_payload = encrypt(self.box, translated)
        message.event = f"{message.resource_type}.received"
        message.status = "unrouted" if message.status == "received" else message.status
        message.updated_at = now
        self.event(message, ev.TRANSLATED, detail="FHIR R4 resource stored", at=now)
        self.session.flush()

    def mark_rejected(self, message: Message, reason: str) -> None:
        now = self.clock()
        message.status = "rejected"
        message.error = short_error(reason)
        message.updated_at = now
        self.event(message, ev.REJECTED, detail=message.error, at=now)
        self.session.flush()

    def record_rejected(self, *, source: str, event: str, raw: bytes | str, reason: str) -> Message:
        """Keep a message the hub could not accept, for inspection (its payload encrypted)."""
        now = self.clock()
        message = Message(
            id=str(uuid.uuid4()),
            tenant_id=self.tenant,
            direction="inbound",
            source=source,
            event=event,
            correlation_id=_correlation_id(),
            status="rejected",
            error=short_error(reason),
            raw_payload=encrypt(self.box, raw),
            created_at=now,
            updated_at=now,
        )
        self.session.add(message)
        self.session.flush()
        self.event(message, ev.RECEIVED, detail=source, at=now)
        self.event(message, ev.REJECTED, detail=short_error(reason), at=now)
        self.session.flush()
        return message

    # ------------------------------------------------------------ messages for delivery

    def record_change(self, change: Change, at: datetime) -> Message:
        """A FHIR REST write that routes will deliver: received and translated (it is FHIR R4)."""
        message = Message(
            id=str(uuid.uuid4()),
            tenant_id=self.tenant,
            direction="inbound",
            source="fhir-api",
            event=f"{change.resource_type}.{change.interaction}",
            resource_type=change.resource_type,
            resource_id=change.resource_id,
            resource_version=change.version_id,
            correlation_id=_correlation_id(),
            status="queued",
            # a deletion has no content: its partners get the reference of what was deleted
            raw_payload=encrypt(self.box, change.content if change.content is not None else json.dumps(
                {"resourceType": change.resource_type, "id": change.resource_id})),
            created_at=at,
            updated_at=at,
        )
        self.session.add(message)
        self.session.flush()
        self.event(message, ev.RECEIVED, detail="FHIR REST write", at=at)
        self.event(message, ev.TRANSLATED, detail="validated FHIR R4", at=at)
        return message

    def record_outbound(self, *, event: str, raw: str, reply_to: Message | None, at: datetime) -> Message:
        """A message the hub made in a partner's format (e.g. an HL7 v2 application ACK)."""
        message = Message(
            id=str(uuid.uuid4()),
            tenant_id=self.tenant,
            direction="outbound",
            source=reply_to.source if reply_to is not None else "hub",
            event=event,
            correlation_id=reply_to.correlation_id if reply_to is not None else _correlation_id(),
            status="queued",
            raw_payload=encrypt(self.box, raw),
            created_at=at,
            updated_at=at,
        )
        self.session.add(message)
        self.session.flush()
        detail = f"answer to message {reply_to.id}" if reply_to is not None else "queued by the hub"
        self.event(message, ev.RECEIVED, detail=detail, at=at)
        return message

    def record_replay(self, original: Message, *, resend: bool, at: datetime) -> Message:
        """A new message with the original's payload, linked to it (``replay_of``); both get an event."""
        replay = Message(
            id=str(uuid.uuid4()),
            tenant_id=original.tenant_id,
            direction=original.direction,
            source=original.source,
            event=original.event,
            resource_type=original.resource_type,
            resource_id=original.resource_id,
            resource_version=original.resource_version,
            correlation_id=original.correlation_id,
            status="queued",
            raw_payload=original.raw_payload,
            translated_payload=original.translated_payload,
            replay_of=original.id,
            created_at=at,
            updated_at=at,
        )
        self.session.add(replay)
        self.session.flush()
        how = "resend (new idempotency keys)" if resend else "replay"
        self.event(replay, ev.REPLAYED, detail=f"{how} of {original.id}", at=at)
        self.event(original, ev.REPLAYED, detail=f"replayed as {replay.id}", at=at)
        return replay


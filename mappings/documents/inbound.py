"""An inbound document (a received fax, a Direct attachment) as a FHIR R4 DocumentReference.

The document's bytes are the attachment's ``data`` (base64), with its size and SHA-1 (the hash FHIR
R4 defines for ``Attachment.hash``). The id is derived from the channel and the partner's id of the
message (a fax id, a Direct ``Message-ID``), so a webhook or an SMTP delivery received again lands
on the same resource. Who sent it (a fax number or a Direct address) is kept as an extension with
a ContactPoint: the sender is known before anything says which practitioner it is.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mappings.fhir.ids import deterministic_id

__all__ = ["CHANNEL_SYSTEM", "CONTENT_HASH_SYSTEM", "INTAKE_SYSTEM", "INTAKE_URL", "SENDER_URL", "InboundDocument",
           "inbound_document_id", "inbound_document_reference"]

#: identifier system of an inbound document, per channel: ``{CHANNEL_SYSTEM}/{channel}``
CHANNEL_SYSTEM = "https://therapy-hub.example/sid/inbound-document"
#: extension holding the sender's address (ContactPoint: ``fax`` or ``email`` for Direct)
SENDER_URL = "https://therapy-hub.example/fhir/StructureDefinition/document-sender"
#: extension holding the recipient's address (the clinic's fax number or Direct address)
RECIPIENT_URL = "https://therapy-hub.example/fhir/StructureDefinition/document-recipient"

#: category system of where a received document is in the document intake: ``received`` (not yet
#: looked at), then ``matched``, ``duplicate``, ``triage`` or ``referral`` (a draft referral opened from
#: a known referrer's document) (hub.documents.intake)
INTAKE_SYSTEM = "https://therapy-hub.example/CodeSystem/document-intake"
#: identifier system of the hash of what a received document's pages look like (mappings.documents.barcodes)
CONTENT_HASH_SYSTEM = "https://therapy-hub.example/sid/document-content-hash"
#: extension saying what the document intake found: outcome, reason, the Task, the duplicated document
INTAKE_URL = "https://therapy-hub.example/fhir/StructureDefinition/document-intake"

_CONTACT_SYSTEM = {"fax": "fax", "direct": "email"}
_TITLE = {"fax": "Received fax", "direct": "Direct message attachment"}


@dataclass(frozen=True)
class InboundDocument:
    """One document a channel received. ``content`` never appears in ``repr``."""

    channel: str  # "fax" | "direct"
    source: str  # the connector (or listener) name, as in the message store
    external_id: str  # the partner's id of the message: fax id, Direct Message-ID (+ part number)
    content: bytes = field(repr=False)
    content_type: str
    sender: str | None = field(default=None, repr=False)  # E.164 fax number or Direct address
    recipient: str | None = field(default=None, repr=False)
    title: str | None = field(default=None, repr=False)
    received_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.channel not in _CONTACT_SYSTEM:
            raise ValueError(f"InboundDocument.channel must be one of {sorted(_CONTACT_SYSTEM)}")
        if not isinstance(self.content, bytes) or not self.content:
            raise ValueError("InboundDocument.content must be non-empty bytes")
        if not self.external_id:
            raise ValueError("InboundDocument.external_id is required")


def inbound_document_id(channel: str, source: str, external_id: str) -> str:
    """The DocumentReference id of a received document (the same message -> the same id)."""
    return deterministic_id("DocumentReference", f"{CHANNEL_SYSTEM}/{channel}", external_id, scope=source)


def _contact(channel: str, url: str, value: str) -> dict[str, Any]:
    return {"url": url, "valueContactPoint": {"system": _CONTACT_SYSTEM[channel], "value": value}}


def _instant(moment: datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def inbound_document_reference(document: InboundDocument, *, received_at: datetime) -> dict[str, Any]:
    """The DocumentReference (status ``current``, no subject yet, intake category ``received``)
    holding ``document``."""
    when = _instant(document.received_at or received_at)
    attachment: dict[str, Any] = {
        "contentType": document.content_type,
        "data": base64.b64encode(document.content).decode("ascii"),
        "size": len(document.content),
        "hash": base64.b64encode(hashlib.sha1(document.content, usedforsecurity=False).digest()).decode("ascii"),
        "title": document.title or _TITLE[document.channel],
        "creation": when,
    }
    extensions = []
    if document.sender:
        extensions.append(_contact(document.channel, SENDER_URL, document.sender))
    if document.recipient:
        extensions.append(_contact(document.channel, RECIPIENT_URL, document.recipient))
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": inbound_document_id(document.channel, document.source, document.external_id),
        **({"extension": extensions} if extensions else {}),
        "identifier": [{"system": f"{CHANNEL_SYSTEM}/{document.channel}", "value": document.external_id}],
        "status": "current",
        "type": {"text": _TITLE[document.channel]},
        "category": [{"coding": [{"system": INTAKE_SYSTEM, "code": "received", "display": "Received"}]}],
        "date": when,
        "description": document.title or _TITLE[document.channel],
        "content": [{"attachment": attachment}],
    }
    return resource

"""The Direct message (RFC 5322 + MIME) and its MDNs (RFC 3798). Pure: ids, dates and boundaries passed in.

A message on the wire is the RFC 5322 headers (:func:`headers`) followed by the S/MIME entity
(``application/pkcs7-mime``, :mod:`connectors.direct.smime`). Inside it, signed, is the content:
``multipart/mixed`` with a text part and the IHE XDM zip (:func:`content`).

Direct asks every receiving HISP for a ``processed`` MDN and, with
``Disposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true``, for a
``dispatched`` one when the message reached its destination (or ``failed``). :func:`parse_mdn` reads
the ``multipart/report; report-type=disposition-notification`` content of one; :func:`mdn_content`
makes one (the sandbox HISP answers with it).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from email.utils import format_datetime
from typing import Final

__all__ = [
    "Attachment",
    "DIRECT_OPTIONS",
    "MDN_CONTENT_TYPE",
    "Mdn",
    "boundary_for",
    "content",
    "dsn_content",
    "headers",
    "mdn_content",
    "message_id_for",
    "parse_dsn",
    "parse_mdn",
    "split_headers",
]

DIRECT_OPTIONS: Final = "X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true"
#: the content type of a delivery that is an MDN the hub answers with (a JSON description, see
#: :meth:`connectors.direct.DirectConnector.build_mdn`)
MDN_CONTENT_TYPE: Final = "message/disposition-notification"
_HEADER_SAFE = re.compile(r"[\x20-\x7e]*")
_DISPOSITIONS: Final = frozenset({"processed", "dispatched", "failed", "displayed", "deleted", "denied"})


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


def message_id_for(key: str, domain: str) -> str:
    """The Message-ID of the delivery with idempotency key ``key``: the same on every retry."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{domain}>"


def boundary_for(message_id: str, part: str) -> str:
    return f"=_{part}_{hashlib.sha256((part + message_id).encode()).hexdigest()[:32]}"


def _header_value(value: str) -> str:
    if not _HEADER_SAFE.fullmatch(value):
        raise ValueError("header values must be printable ASCII without line breaks")
    return value


def headers(*, sender: str, recipients: Sequence[str], subject: str, message_id: str, date: datetime,
            request_mdn: bool = True, extra: Sequence[tuple[str, str]] = ()) -> bytes:
    """The RFC 5322 header block (ending with CRLF, without the blank line) of a Direct message."""
    lines = [
        ("From", sender), ("To", ", ".join(recipients)), ("Subject", subject),
        ("Message-ID", message_id), ("Date", format_datetime(date)), ("MIME-Version", "1.0"),
    ]
    if request_mdn:
        lines += [("Disposition-Notification-Options", DIRECT_OPTIONS), ("Disposition-Notification-To", sender)]
    lines += list(extra)
    return b"".join(f"{name}: {_header_value(value)}\r\n".encode() for name, value in lines)


def _b64(data: bytes) -> bytes:
    text = base64.b64encode(data)
    return b"\r\n".join(text[i:i + 76] for i in range(0, len(text), 76)) + b"\r\n"


def content(*, text: str, attachments: Sequence[Attachment], boundary: str) -> bytes:
    """``multipart/mixed``: the text part, then each attachment base64-encoded."""
    marker = f"--{boundary}\r\n".encode()
    body = [
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'.encode(),
        marker, b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        _b64(text.encode()),
    ]
    for attachment in attachments:
        name = _header_value(attachment.filename).replace('"', "")
        body += [
            marker,
            f'Content-Type: {_header_value(attachment.content_type)}; name="{name}"\r\n'.encode(),
            b"Content-Transfer-Encoding: base64\r\n",
            f'Content-Disposition: attachment; filename="{name}"\r\n\r\n'.encode(),
            _b64(attachment.data),
        ]
    body.append(f"--{boundary}--\r\n".encode())
    return b"".join(body)


def split_headers(wire: bytes) -> tuple[Message, bytes]:
    """(the parsed headers, the MIME entity after them: Content-* headers and body) of a received message."""
    parsed = message_from_bytes(wire)
    data = wire.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    end = data.find(b"\r\n\r\n")
    head, body = (data[:end + 2], data[end + 4:]) if end >= 0 else (data, b"")
    kept: list[bytes] = []
    keep = False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if keep:
                kept.append(line)
            continue
        keep = line.lower().startswith((b"content-", b"mime-version"))
        if keep:
            kept.append(line)
    return parsed, b"\r\n".join(kept) + b"\r\n\r\n" + body


def attachments_of(entity: bytes) -> list[Attachment]:
    """The non-text leaf parts of a MIME entity (the plain attachments of a message without XDM)."""
    found: list[Attachment] = []
    for part in message_from_bytes(entity).walk():
        if part.is_multipart():
            continue
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        kind = part.get_content_type()
        if kind == "text/plain" and part.get_filename() is None:
            continue
        found.append(Attachment(part.get_filename() or "attachment", kind, data))
    return found


# --------------------------------------------------------------------------------------------- MDN


@dataclass(frozen=True)
class Mdn:
    original_message_id: str
    disposition: str  # processed, dispatched, failed (displayed, deleted, denied)
    modifiers: tuple[str, ...]  # e.g. ("error",)
    final_recipient: str | None
    final_destination_delivery: bool  # X-DIRECT-FINAL-DESTINATION-DELIVERY on the MDN

    @property
    def failed(self) -> bool:
        return self.disposition in ("failed", "denied", "deleted") or "error" in self.modifiers


def _fields(part: Message) -> dict[str, str]:
    """The ``message/disposition-notification`` fields (a header block as the part's body)."""
    payload = part.get_payload()
    if isinstance(payload, list):  # the email package parses it as a list of header blocks
        values: dict[str, str] = {}
        for block in payload:
            if isinstance(block, Message):
                values.update({k.lower(): str(v) for k, v in block.items()})
        return values
    raw = part.get_payload(decode=True)
    block = message_from_bytes(raw if isinstance(raw, bytes) else str(payload).encode())
    return {k.lower(): str(v) for k, v in block.items()}


def parse_mdn(entity: bytes) -> Mdn | None:
    """The MDN carried by ``entity`` (a ``multipart/report`` MIME entity); None when it is not one."""
    report = message_from_bytes(entity)
    if report.get_content_type() != "multipart/report" or \
            str(report.get_param("report-type") or "").lower() != "disposition-notification":
        return None
    for part in report.walk():
        if part.get_content_type() != "message/disposition-notification":
            continue
        fields = _fields(part)
        original = fields.get("original-message-id", "").strip()
        disposition = fields.get("disposition", "")
        kind = disposition.partition(";")[2].strip().lower()
        disposition_type, _, modifiers = kind.partition("/")
        if not original or disposition_type not in _DISPOSITIONS:
            return None
        final = fields.get("final-recipient")
        return Mdn(
            original_message_id=original,
            disposition=disposition_type,
            modifiers=tuple(m.strip() for m in modifiers.split(",") if m.strip()),
            final_recipient=final.partition(";")[2].strip() if final else None,
            final_destination_delivery="x-direct-final-destination-delivery" in fields,
        )
    return None


def parse_dsn(entity: bytes) -> Mdn | None:
    """A failure DSN (RFC 3464, ``multipart/report; report-type=delivery-status`` with a recipient
    ``Action: failed``) as a ``failed`` :class:`Mdn` (modifier ``dsn``) of the message its returned
    headers name; None for any other entity, or a DSN that reports no failure."""
    report = message_from_bytes(entity)
    if report.get_content_type() != "multipart/report" or \
            str(report.get_param("report-type") or "").lower() != "delivery-status":
        return None
    failed = False
    recipient: str | None = None
    original = ""
    for part in report.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            payload = part.get_payload()
            blocks = payload if isinstance(payload, list) else [message_from_bytes(str(payload).encode())]
            for block in blocks:
                if isinstance(block, Message) and str(block.get("Action") or "").strip().lower() == "failed":
                    failed = True
                    final = str(block.get("Final-Recipient") or "")
                    recipient = final.partition(";")[2].strip() or recipient
        elif kind in ("text/rfc822-headers", "message/rfc822") and not original:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                original = str(payload[0].get("Message-ID") or "").strip()
            else:
                raw = part.get_payload(decode=True)
                headers_ = message_from_bytes(raw if isinstance(raw, bytes) else str(payload).encode())
                original = str(headers_.get("Message-ID") or "").strip()
    if not failed or not original:
        return None
    return Mdn(original_message_id=original, disposition="failed", modifiers=("dsn",),
               final_recipient=recipient, final_destination_delivery=False)


def dsn_content(*, original_message_id: str, final_recipient: str, reporting_mta: str, boundary: str,
                status: str = "5.1.1") -> bytes:
    """A ``multipart/report`` failure DSN entity for ``original_message_id`` (what a HISP sends when
    it could not deliver)."""
    return (
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"Your message could not be delivered to {_header_value(final_recipient)}.\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns;{_header_value(reporting_mta)}\r\n\r\n"
        f"Final-Recipient: rfc822;{final_recipient}\r\nAction: failed\r\nStatus: {_header_value(status)}\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {_header_value(original_message_id)}\r\n\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def mdn_content(*, original_message_id: str, final_recipient: str, reporting_ua: str, disposition: str,
                boundary: str, final_destination: bool = False, failure: str | None = None) -> bytes:
    """A ``multipart/report`` MDN entity for ``original_message_id`` (``disposition``: e.g. processed);
    ``failure``: the ``Failure:`` field of a ``failed`` one (RFC 3798 section 3.2.7)."""
    human = f"Your message was {disposition.split('/')[0]} by {final_recipient}.\r\n"
    fields = [
        ("Reporting-UA", reporting_ua), ("Final-Recipient", f"rfc822;{final_recipient}"),
        ("Original-Message-ID", original_message_id),
        ("Disposition", f"automatic-action/MDN-sent-automatically;{disposition}"),
    ]
    if failure:
        fields.append(("Failure", failure))
    if final_destination:
        fields.append(("X-DIRECT-FINAL-DESTINATION-DELIVERY", ""))
    block = "".join(f"{k}: {_header_value(v)}\r\n" for k, v in fields)
    return (
        f'Content-Type: multipart/report; report-type=disposition-notification; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{human}"
        f"--{boundary}\r\nContent-Type: message/disposition-notification\r\n\r\n{block}\r\n"
        f"--{boundary}--\r\n"
    ).encode()

"""The MDNs the Direct listener answers with (RFC 3798; Direct Applicability Statement and its
Implementation Guide for Delivery Notification).

Which message gets which MDN (:func:`queue_answer`, called by :func:`hub.inbound.direct.receive_direct`
inside the unit of work of the received message):

- decrypted, verified (signer trusted and bound to From), documents stored: a ``processed`` MDN; and
  when the message asked for ``X-DIRECT-FINAL-DESTINATION-DELIVERY`` also a ``dispatched`` MDN
  carrying that field: the documents were handed to the clinic's record (a DocumentReference, and
  the intake), which is this message's final destination, so the hub is the one that can say so;
- decrypted and verified but its content refused (no document, a broken XDM package, a document the
  store refuses): a ``failed`` MDN with a ``Failure:`` field (no detail of the content);
- not decryptable, not signed, or signed by a sender we do not trust (expired, tampered, not bound to
  From): NO MDN. The sender's identity cannot be trusted, an MDN would answer an address we cannot
  vouch for (a forged From turns us into a reflector) and we have no trusted certificate to encrypt
  it to; the SMTP refusal (554 5.7.5) is the answer;
- an MDN or a DSN (any ``multipart/report``): no MDN, never (no loops). Our own MDNs ask for none.

The MDN goes to ``Disposition-Notification-To`` when the certificate that signed the message is bound
to that address, else to ``From`` (an MDN is encrypted to the certificate that signed the message: we
hold no other trusted certificate for the sender).

How it is sent: through the sync engine, like the HL7 v2 application ACKs. In the same transaction
as the received message, :meth:`hub.sync.outbox.Outbox.send_raw` records an outbound message (event
``direct.MDN``, its payload a JSON description of the MDN, encrypted at rest like every payload) and
a delivery job to the listener's own ``direct`` connector: the clinic's HISP, its SMTP settings and
sender identity. After the commit a worker delivers it (:meth:`connectors.direct.DirectConnector.build_mdn`
signs and encrypts it); a HISP outage is retried with backoff and ends as a visible, replayable dead
letter, never a lost MDN. The answer to the HISP does not wait for the MDN. The MDN's Message-ID is
derived from its job's idempotency key, so a retry sends the same MDN.
"""

from __future__ import annotations

import json
from email.message import Message as EmailMessage
from email.utils import getaddresses, parseaddr

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from connectors.direct import smime
from hub.settings import Settings
from hub.store.models import Message
from hub.sync import events as ev
from hub.sync.delivery import DIRECT_MDN_EVENT
from hub.sync.inbox import Inbox
from hub.sync.outbox import Outbox

__all__ = ["FAILURE", "FINAL_DESTINATION_OPTION", "is_report", "mdn_recipient", "queue_answer"]

FINAL_DESTINATION_OPTION = "x-direct-final-destination-delivery"
#: the Failure: field of a failed MDN: says what happened, names nothing of the content
FAILURE = "the message content was refused by the receiving system"


def is_report(content: bytes) -> bool:
    """The verified content is a ``multipart/report`` (an MDN or a DSN, parsed or not): never answered."""
    head = content[:4096].lower()
    return b"multipart/report" in head.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]


def asks_final_destination(headers: EmailMessage) -> bool:
    options = str(headers.get("Disposition-Notification-Options") or "").lower()
    return FINAL_DESTINATION_OPTION in options


def mdn_recipient(headers: EmailMessage, signer: x509.Certificate) -> str | None:
    """Disposition-Notification-To when the signer's certificate is bound to it, else From."""
    from_address = parseaddr(str(headers.get("From") or ""))[1].strip().lower()
    emails, domains = smime.certificate_addresses(signer)
    for _, address in getaddresses([str(v) for v in headers.get_all("Disposition-Notification-To") or []]):
        address = address.strip().lower()
        if address in emails or (not emails and address.rpartition("@")[2] in domains):
            return address
    return from_address or None


def queue_answer(settings: Settings, inbox: Inbox, record: Message, headers: EmailMessage, *,
                 tenant: str, source: str, own_address: str, signer: x509.Certificate, content: bytes,
                 stored: bool) -> int:
    """Queue the MDNs answering a decrypted and verified message ``record`` (``stored``: its documents
    were accepted, else its content was refused); how many were queued. Only for verified messages:
    mail that could not be decrypted or verified gets no MDN (module docstring)."""
    if is_report(content):
        return 0  # an MDN or a DSN: never answered
    recipient = mdn_recipient(headers, signer)
    original = str(headers.get("Message-ID") or "").strip()
    if recipient is None or not original or recipient == own_address.lower():
        inbox.event(record, ev.DEFERRED, detail="no MDN: the message names no sender or Message-ID to answer")
        return 0
    certificate = signer.public_bytes(serialization.Encoding.PEM).decode()
    base: dict[str, object] = {"to": recipient, "original_message_id": original, "recipient_cert_pem": certificate}
    if stored:
        answers: list[dict[str, object]] = [{**base, "disposition": "processed"}]
        if asks_final_destination(headers):
            answers.append({**base, "disposition": "dispatched", "final_destination": True})
    else:
        answers = [{**base, "disposition": "failed", "failure": FAILURE}]
    outbox = Outbox(inbox.session, tenant=tenant, settings=settings)
    for answer in answers:
        outbox.send_raw(connector=source, raw=json.dumps(answer), event=DIRECT_MDN_EVENT, reply_to=record,
                        kind="direct")
    return len(answers)

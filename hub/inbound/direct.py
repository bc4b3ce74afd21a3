"""Inbound Direct (SMTP listener): store the raw message first, decrypt and verify, hand each document
to :func:`hub.documents.inbound.accept_document`, and answer the HISP only after the commit.

The listener belongs to one tenant's ``direct`` connector (``source``, its name): that connector's
config holds the clinic's Direct address, its certificate and key (to decrypt) and the trust anchors
(to verify the sender). For each message (:func:`receive_direct`):

1. A Message-ID already received from this listener is answered ``250`` again, nothing written.
2. In ONE unit of work: the raw message is stored (``record_inbound``, encrypted), decrypted and
   verified (:mod:`connectors.direct.smime`; the signer bound to the From address); each document
   (the XDM package's, else each plain attachment) becomes a DocumentReference through
   ``accept_document``; an MDN (``multipart/report``) is applied to the delivery job whose Message-ID
   it names (:func:`hub.inbound.direct_mdn.apply_mdn`: an event, or back to retry when it failed).
   A message we refuse (not for us, unsigned, untrusted, expired, revoked, tampered) is kept ``rejected``
   with the refusal code and audited. A verified message that is not an MDN or DSN is answered by
   a ``processed`` (and ``dispatched``) MDN, or a ``failed`` one when its content was refused, queued
   in the same transaction as a delivery job (:mod:`hub.inbound.direct_mdn_out`); refused mail gets none.
3. Commit, THEN answer: ``250`` when stored, ``554 5.7.x`` for a refusal, ``451`` when the store
   could not be written (the HISP sends again). After the commit, the unit of work publishes the
   intake of each stored document (``hub.intake_document``): a signed plan completes its certification.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from email.utils import parseaddr
from typing import Any

from aiosmtpd.controller import Controller

from connectors.direct import message, smime, xdm
from hub import faults
from hub.broker import Enqueuer
from hub.documents.inbound import InboundDocument, accept_document
from hub.errors import HubError, describe
from hub.fhir.service import FhirService
from hub.inbound.direct_identity import DirectIdentity, IdentitySource, load_identity
from hub.inbound.direct_mdn import apply_mdn
from hub.inbound.direct_mdn_out import queue_answer
from hub.inbound.direct_smtp import ListenerController, ListenerOptions
from hub.kit import utcnow
from hub.security.inbound import InboundPolicy
from hub.services import fhir_service
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.store.models import Message
from hub.sync.inbox import Inbox
from hub.unit_of_work import savepoint, unit_of_work

__all__ = ["CHANNEL", "FAULT_POINT", "DirectIdentity", "DirectListener", "ListenerOptions", "load_identity",
           "receive_direct", "run_listener"]

CHANNEL = "direct"
#: the test-only fault point of a received message (:mod:`hub.faults`)
FAULT_POINT = "direct-receive"
log = logging.getLogger("hub.inbound.direct")


def _documents(content: bytes) -> list[tuple[str, bytes, str]]:
    """(title, bytes, content type) of each document a verified message carries."""
    found: list[tuple[str, bytes, str]] = []
    for attachment in message.attachments_of(content):
        package = xdm.unpack(attachment.data) if attachment.content_type in (
            "application/zip", "application/x-zip-compressed", "application/octet-stream") else None
        if package is None:
            found.append((attachment.filename, attachment.data, attachment.content_type))
        else:
            found.extend((d.title or d.path.rsplit("/", 1)[-1], d.content, d.mime_type) for d in package)
    return found


def receive_direct(settings: Settings, *, tenant: str, source: str, identity: DirectIdentity, wire: bytes,
                   now: datetime | None = None, address: str | None = None,
                   enqueuer: Enqueuer | None = None) -> tuple[int, str]:
    """(SMTP code, text) for one received message; the answer is given only after the commit.
    ``enqueuer``: where the unit of work publishes the stored documents' intake (default: the broker's)."""
    headers, entity = message.split_headers(wire)
    message_id = str(headers.get("Message-ID") or "").strip() or f"<{hashlib.sha256(wire).hexdigest()}@unknown>"
    from_address = parseaddr(str(headers.get("From") or ""))[1]
    try:
        with unit_of_work(settings, enqueuer=enqueuer) as session:
            if repo.message_by_external_id(session, tenant=tenant, source=source, external_id=message_id):
                return 250, "2.0.0 already received"
            inbox = Inbox(session, tenant=tenant, settings=settings)
            record = inbox.record_inbound(source=source, external_id=message_id, raw=wire, event="direct")
            policy = InboundPolicy(tenant=tenant, source=source, channel=CHANNEL)
            fhir = fhir_service(session, settings, tenant, settings.fhir_base or "/fhir", policy=policy)
            try:
                signed = smime.decrypt(entity, identity.certificate, identity.key)
                verified = smime.verify(signed, identity.trust_roots, moment=now or utcnow(),
                                        from_address=from_address, crls=identity.crls)
            except smime.SmimeError as exc:
                inbox.mark_rejected(record, str(exc))
                policy.audit(fhir, interaction="create", outcome=4, address=address,
                             description=f"Direct message refused: {exc.code}")
                answer = (554, f"5.7.5 message refused: {exc.code}")
            else:
                if verified.others:  # a message with several signers: one was enough, the others are told
                    log.warning("hub.direct.other_signers_refused", extra={
                        "source": source, "tenant": tenant, "codes": [o.code for o in verified.others]})
                mdn = message.parse_mdn(verified.content) or message.parse_dsn(verified.content)
                if mdn is not None:
                    apply_mdn(session, settings, inbox, record, mdn, tenant=tenant, source=source)
                    answer = (250, "2.0.0 MDN received")
                else:
                    answer = _store_documents(fhir, inbox, record, verified.content, policy=policy,
                                              message_id=message_id, source=source, sender=from_address,
                                              recipient=identity.address, address=address)
                    queue_answer(settings, inbox, record, headers, tenant=tenant, source=source,
                                 own_address=identity.address, signer=verified.signer,
                                 content=verified.content, stored=answer[0] == 250)
            session.flush()
            faults.pause(settings, "before", FAULT_POINT)  # test environment only: killed here, uncommitted
    except Exception:  # noqa: BLE001 - the store could not be written: the HISP must send again
        log.exception("hub.direct.store_failed", extra={"source": source, "tenant": tenant})
        return 451, "4.3.0 could not store the message, try again later"
    faults.pause(settings, "after", FAULT_POINT)  # test environment only: committed, not yet answered
    return answer


def _store_documents(fhir: FhirService, inbox: Inbox, record: Message, content: bytes, *,
                     policy: InboundPolicy, message_id: str, source: str, sender: str, recipient: str,
                     address: str | None) -> tuple[int, str]:
    """Each document of a verified message through ``accept_document``; a content problem rolls
    the documents back, keeps the message ``rejected`` and refuses it (the HISP must not retry)."""
    part = savepoint(inbox.session)  # its rollback also forgets the intake asked for its documents
    try:
        documents = _documents(content)
        if not documents:
            raise xdm.XdmError("the message carries no document")
        for index, (title, data, kind) in enumerate(documents, start=1):
            accept_document(fhir, inbox, record, InboundDocument(
                channel=CHANNEL, source=source,
                external_id=message_id if len(documents) == 1 else f"{message_id}#{index}",
                content=data, content_type=kind, sender=sender, recipient=recipient, title=title),
                policy=policy, address=address)
        part.commit()
    except (HubError, xdm.XdmError, ValueError) as exc:
        part.rollback()
        inbox.mark_rejected(record, describe(exc) if isinstance(exc, HubError) else str(exc))
        policy.audit(fhir, interaction="create", outcome=4, address=address,
                     description="Direct message content refused")
        return 554, "5.6.0 message content refused"
    return 250, "2.0.0 stored"


class _Handler:
    def __init__(self, listener: DirectListener) -> None:
        self.listener = listener

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        if not self.listener.options.auth:  # AUTH off: not offered at all
            responses = [r for r in responses if not r[4:].upper().startswith("AUTH")]
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        peer = session.peer[0] if isinstance(session.peer, tuple) else None
        loop = asyncio.get_running_loop()
        code, text = await loop.run_in_executor(None, lambda: self.listener.receive(bytes(envelope.content), peer))
        return f"{code} {text}"


class DirectListener:
    """The SMTP listener of one tenant's Direct connector (``with DirectListener(...) as listener``).

    ``identity``: fixed; None: read from the store for each message (:class:`IdentitySource`: a
    certificate or trust anchor added or removed while it runs is used from the next message on).
    ``options``: allowed client networks, STARTTLS, AUTH (:mod:`hub.inbound.direct_smtp`)."""

    def __init__(self, settings: Settings, *, tenant: str, source: str, identity: DirectIdentity | None = None,
                 host: str = "127.0.0.1", port: int = 0, enqueuer: Enqueuer | None = None,
                 options: ListenerOptions | None = None) -> None:
        self.settings = settings
        self.enqueuer = enqueuer  # None: the Celery producer of the settings' broker
        self.tenant = tenant
        self.source = source
        self.identity = identity
        self.identities = IdentitySource(settings, tenant=tenant, connector=source)
        self.options = options or ListenerOptions()
        self.host = host
        self.port = port
        self._controller: Controller | None = None

    def receive(self, wire: bytes, peer: str | None) -> tuple[int, str]:
        """(SMTP code, text) for one message, with the identity current now."""
        try:
            identity = self.identity or self.identities.current()
        except (LookupError, ValueError):
            log.warning("hub.direct.no_identity", extra={"source": self.source, "tenant": self.tenant})
            return 451, "4.3.5 the receiving Direct address is not configured, try again later"
        return receive_direct(self.settings, tenant=self.tenant, source=self.source, identity=identity, wire=wire,
                              address=peer, enqueuer=self.enqueuer)

    def start(self) -> DirectListener:
        controller = ListenerController(_Handler(self), self.options, hostname=self.host, port=self.port)
        controller.start()
        self._controller = controller
        self.port = controller.port
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> DirectListener:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def run_listener(settings: Settings, *, tenant: str, connector: str, host: str, port: int,
                 ready: Callable[[DirectListener], None] | None = None,
                 options: ListenerOptions | None = None) -> None:
    """``hub direct``: listen for the tenant's ``direct`` connector ``connector`` until interrupted;
    its identity is read from the store per message (checked once here: a connector that cannot
    receive fails at start)."""
    load_identity(settings, tenant=tenant, connector=connector)
    with DirectListener(settings, tenant=tenant, source=connector, host=host, port=port,
                        options=options) as listener:
        if ready is not None:
            ready(listener)
        while True:
            time.sleep(3600)  # until a signal (SIGTERM/SIGINT) ends the process

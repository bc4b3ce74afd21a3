"""Fax vendor webhooks: ``POST /inbound/{tenant}/fax/{connector}`` (status reports and received faxes).

The tenant's ``fax`` connector of that name says which vendor profile speaks
(:mod:`connectors.fax.profiles`) and holds the webhook secret. The signature is checked first, with
the URL the vendor signed (the connector's ``callback_url``, else the hub's public URL of the request:
``HUB_BASE_URL`` + path when it is set, as behind a proxy, else the URL the request came to);
a name that is no enabled fax connector gets the same 401 after the same work (an HMAC with a
stand-in secret), and a refused request stores nothing.

Then, in one unit of work, the raw webhook is stored (:meth:`hub.sync.inbox.Inbox.record_inbound`,
deduped by the vendor's event id: the same webhook twice is applied once and answered ``200``
``duplicate``), and

* a received fax becomes a DocumentReference tied to that message through the one entry for
  received documents, :func:`hub.documents.inbound.accept_document` (channel ``fax``, sender the
  caller's fax number), whose intake (``hub.intake_document``) the unit of work publishes after
  the commit: a signed certification page completes its Task;
* a status report is applied to the delivery job whose accepted attempt the vendor knows by that
  fax id (ADR 0012): ``delivered`` confirms the job ``awaiting`` it, now ``succeeded`` with an
  ``acknowledged`` event (:meth:`hub.sync.engine.DeliveryEngine.confirm`); ``failed`` counts the
  attempt as failed after all, so the job retries per its connector's policy or is dead-lettered
  (:meth:`hub.sync.engine.DeliveryEngine.remote_failure`). A ``delivered`` for a job already
  confirmed changes nothing; one for a job that was sent back to retry meanwhile is only an event.

The vendor gets ``202`` only after the commit; ``409`` for a status of a fax no delivery knows
(yet): kept as ``rejected`` but not as the event's copy, so the vendor's resend is applied. A signed
body that is not the vendor's shape is kept as ``rejected`` (``400``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import ValidationError

from connectors.fax import FaxConfig
from connectors.fax.model import FaxStatus, ReceivedFax
from connectors.fax.profiles import PROFILES, WebhookRefused
from hub import faults
from hub.documents.inbound import InboundDocument, accept_document
from hub.security.inbound import InboundPolicy
from hub.services import fhir_service
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.sync import events as ev
from hub.sync.config import SyncConfig
from hub.sync.engine import DeliveryEngine
from hub.sync.inbound_webhook import SignatureRefused
from hub.sync.inbox import Inbox
from hub.sync.outbox import ORIGIN_KEY
from hub.unit_of_work import unit_of_work

__all__ = ["CHANNEL", "FAULT_POINT", "receive_fax_webhook"]

CHANNEL = "fax"
KIND = "fax"
#: the test-only fault point of a received fax (:mod:`hub.faults`)
FAULT_POINT = "fax-receive"


def _stand_in_secret(settings: Settings, tenant: str, connector: str) -> str:
    seed = f"{settings.secret_key.get_secret_value()}\n{tenant}\n{connector}".encode()
    return hashlib.sha256(b"inbound-fax-stand-in\n" + seed).hexdigest()


def receive_fax_webhook(settings: Settings, *, tenant: str, connector: str, body: bytes, headers: dict[str, str],
                        url: str, address: str | None = None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, answer) for one vendor webhook; raises :class:`SignatureRefused` (401) before
    storing anything. ``headers`` have lower-case names; ``url`` is the URL the request came to."""
    with unit_of_work(settings) as session:
        instance = repo.connector_by_name(session, tenant=tenant, name=connector)
        known = instance is not None and instance.kind == KIND and instance.enabled
        config: dict[str, Any] = {}
        if known and instance is not None:
            config = SyncConfig(session, tenant=tenant, settings=settings).connector_config(instance)
        connector_id = instance.id if known and instance is not None else None
    fax_config: FaxConfig | None = None
    if known:
        try:  # the URL compared as the connector sent it to the vendor (normalised by its model)
            fax_config = FaxConfig.model_validate(config)
        except ValidationError:
            fax_config = None
    profile = PROFILES[fax_config.profile] if fax_config is not None else PROFILES["phaxio"]
    secret = fax_config.webhook_secret.get_secret_value() if fax_config is not None else None
    signed_url = str(fax_config.callback_url) if fax_config is not None and fax_config.callback_url else url
    valid = profile.verify(str(secret or _stand_in_secret(settings, tenant, connector)), signed_url, body, headers)
    if not (fax_config is not None and secret and valid) or connector_id is None:
        raise SignatureRefused("Missing or wrong fax vendor signature, or no such fax connector")
    try:
        event: FaxStatus | ReceivedFax | None = profile.parse_webhook(body, headers)
        error = None
    except (WebhookRefused, ValueError) as exc:
        event, error = None, str(exc)
    with unit_of_work(settings) as session:
        session.info[ORIGIN_KEY] = connector_id  # nothing it causes is routed back to the vendor
        inbox = Inbox(session, tenant=tenant, settings=settings)
        external_id = f"{profile.name}:{event.event_id}" if event is not None else None
        if external_id is not None:
            earlier = repo.message_by_external_id(session, tenant=tenant, source=connector, external_id=external_id)
            if earlier is not None:
                return 200, {"message": earlier.id, "status": earlier.status, "duplicate": True}
        kind = "fax.received" if isinstance(event, ReceivedFax) else "fax.status"
        message = inbox.record_inbound(source=connector, external_id=external_id, raw=body, event=kind)
        if event is None:
            inbox.mark_rejected(message, f"not a {profile.name} webhook: {error}")
            return 400, {"message": message.id, "status": message.status, "duplicate": False,
                         "error": message.error}
        if isinstance(event, ReceivedFax):
            policy = InboundPolicy.for_config(tenant=tenant, source=connector, channel=CHANNEL, config=config)
            fhir = fhir_service(session, settings, tenant, settings.fhir_base or "/fhir", policy=policy)
            document = InboundDocument(channel=CHANNEL, source=connector, external_id=event.fax_id,
                                       content=event.content, content_type=event.content_type,
                                       sender=event.sender, recipient=event.recipient)
            stored = accept_document(fhir, inbox, message, document, policy=policy, address=address)
            session.flush()
            faults.pause(settings, "before", FAULT_POINT)  # test environment only: killed here, uncommitted
            return 202, {"message": message.id, "status": message.status, "duplicate": False,
                         "document": stored.get("id")}
        applied = _apply_status(session, settings, inbox, message, connector_id=connector_id, tenant=tenant,
                                status=event)
        answer = {"message": message.id, "status": message.status, "duplicate": False, "applied": applied}
        return 202 if applied else 409, answer


def _apply_status(session: Any, settings: Settings, inbox: Inbox, message: Any, *, connector_id: int, tenant: str,
                  status: FaxStatus) -> bool:
    job = repo.job_by_remote_id(session, tenant=tenant, connector_id=connector_id, remote_id=status.fax_id)
    if job is None:
        # kept for inspection, but not as the event's first copy: the vendor may report a fax before
        # the attempt that sent it has recorded its fax id; the answer (409) makes it send again
        message.external_id = None
        inbox.mark_rejected(message, "no delivery of this connector has that fax id")
        return False
    sent = repo.message_by_id(session, tenant=tenant, message_id=job.message_id)
    if sent is None:
        inbox.mark_rejected(message, "the delivery's message is gone")
        return False
    pages = f", {status.pages} pages" if status.pages else ""
    engine = DeliveryEngine(session, settings=settings)
    applied = "applied to"
    if status.state == "delivered":
        delivered = f"fax {status.fax_id} delivered{pages}"
        if engine.confirm(job, delivered):
            applied = "confirmed"
        elif job.status == ev.SUCCEEDED:
            applied = "already confirmed: nothing changed for"  # a repeat of the vendor's report
        else:  # sent back to retry (or dead) meanwhile: kept as what the vendor said, the state stays
            applied = f"late ({job.status}): recorded for"
            inbox.event(sent, ev.ACKNOWLEDGED, job_id=job.id, attempt=job.attempts,
                        detail=f"{delivered}, reported after the job was {job.status}; its state is unchanged")
    elif status.state == "failed":
        code = f" (vendor code {status.vendor_code})" if status.vendor_code else ""
        engine.remote_failure(job, f"fax {status.fax_id} failed: {status.reason or 'no reason given'}{code}")
    message.status = "unrouted"  # stored and applied; nothing to route
    inbox.event(message, ev.TRANSLATED, detail=f"fax status {status.state} {applied} job {job.id}")
    session.flush()
    return True

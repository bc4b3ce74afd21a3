"""Signed webhooks from partners: ``POST /inbound/{tenant}/{connector}`` with a FHIR resource.

The request must carry an ``Idempotency-Key``, ``X-Hub-Timestamp`` and ``X-Hub-Signature-256``
(scheme ``v1`` of :mod:`connectors.webhook.signing`: HMAC-SHA256 over timestamp, key and body, with
the secret of the tenant's ``webhook`` connector of that name) and a timestamp within five minutes
(replay window). The key is signed, so the same signed request sent again is a repeat of the same
key (acknowledged again without writing: the inbox), never a new message.

A connector name that does not exist, is no webhook or is disabled gets the same 401 as a wrong
signature, after the same work (an HMAC with a stand-in secret): "not yours" and "not there" look
alike. Refused requests store nothing (unauthenticated input must not fill the store).

The raw body is stored before anything else can fail; the resource is upserted by business
identifier in the same transaction, under the connector's :class:`hub.security.inbound.InboundPolicy`
(its ``inbound_types``; never AuditEvent or Provenance), with an AuditEvent whose agent is the
connector. The sender gets ``202`` only after commit. A body that is kept but not written is
``rejected`` with the reason: ``400`` when it is not JSON (or nested too deeply), ``403`` for a type
the connector may not write, ``422`` when the resource is not valid.
"""

from __future__ import annotations

import hashlib
from typing import Any

from connectors.webhook.signing import verify_signature
from hub.errors import BadRequest, HubError, describe
from hub.security.inbound import InboundPolicy, InboundRefused
from hub.services import channel_store
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.sync.config import SyncConfig
from hub.sync.inbox import upsert_resource
from hub.sync.outbox import ORIGIN_KEY
from hub.unit_of_work import savepoint, unit_of_work
from mappings.fhir import jsonio

TOLERANCE_SECONDS = 300
CHANNEL = "webhook"


class SignatureRefused(HubError):
    status_code = 401
    code = "security"
    title = "Signature refused"


def _stand_in_secret(settings: Settings, tenant: str, connector: str) -> bytes:
    """A secret no partner has, for names that are not an enabled webhook (same work as a real check)."""
    seed = f"{settings.secret_key.get_secret_value()}\n{tenant}\n{connector}".encode()
    return hashlib.sha256(b"inbound-webhook-stand-in\n" + seed).digest()


def receive_webhook(settings: Settings, *, tenant: str, connector: str, body: bytes,
                    headers: dict[str, str], now: float | None = None,
                    address: str | None = None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, answer) for one push; raises :class:`SignatureRefused` (401) before storing anything."""
    with unit_of_work(settings) as session:
        instance = repo.connector_by_name(session, tenant=tenant, name=connector)
        known = instance is not None and instance.kind == "webhook" and instance.enabled
        config: dict[str, Any] = {}
        if known and instance is not None:
            config = SyncConfig(session, tenant=tenant, settings=settings).connector_config(instance)
        secret = config.get("secret") if known else None
        connector_id = instance.id if known and instance is not None else None
    key = headers.get("idempotency-key")
    valid = verify_signature(secret or _stand_in_secret(settings, tenant, connector),
                             headers.get("x-hub-timestamp"), body, headers.get("x-hub-signature-256"),
                             TOLERANCE_SECONDS, now, idempotency_key=key)
    if not (known and secret and valid) or key is None:
        raise SignatureRefused("Missing, wrong or stale X-Hub-Signature-256 (v1 over X-Hub-Timestamp, "
                               "Idempotency-Key and body), or no such inbound webhook")
    with unit_of_work(settings) as session:
        session.info[ORIGIN_KEY] = connector_id  # not routed back to the partner that sent it
        policy = InboundPolicy.for_config(tenant=tenant, source=connector, channel=CHANNEL, config=config)
        fhir, inbox = channel_store(session, settings, tenant, policy)
        earlier = repo.message_by_external_id(session, tenant=tenant, source=connector, external_id=key)
        if earlier is not None:
            return 200, {"message": earlier.id, "status": earlier.status, "duplicate": True}
        message = inbox.record_inbound(source=connector, external_id=key, raw=body)
        status = 202
        resource_type: str | None = None
        part = savepoint(session)
        try:
            resource = jsonio.loads(body)
            if not isinstance(resource, dict):
                raise BadRequest("The body must be a FHIR resource")
            if isinstance(resource.get("resourceType"), str):
                resource_type = resource["resourceType"]
            written = upsert_resource(fhir, resource)
            part.commit()
            inbox.mark_translated(message, resource)
            policy.audit(fhir, interaction="create" if written.status == 201 else "update", outcome=0,
                         resource_type=written.stored.resource_type, resource_id=written.stored.id,
                         address=address)
        except (HubError, jsonio.InvalidJson) as exc:
            part.rollback()
            inbox.mark_rejected(message, describe(exc))
            status = 400 if isinstance(exc, jsonio.InvalidJson) else 403 if isinstance(exc, InboundRefused) else 422
            policy.audit(fhir, interaction="create", outcome=4, resource_type=resource_type, address=address,
                         description=f"HTTP {status} {getattr(exc, 'code', 'structure')}")
        result = {"message": message.id, "status": message.status, "duplicate": False,
                  **({"error": message.error} if message.status == "rejected" else {})}
    return status, result

"""Signed webhooks from partners: ``POST /inbound/{tenant}/{connector}`` with a FHIR resource.

The request must carry ``X-Hub-Timestamp`` and ``X-Hub-Signature-256`` (HMAC-SHA256 over
``"{timestamp}." + body`` with the secret of the tenant's ``webhook`` connector of that name), a
timestamp within five minutes (replay window), and an ``Idempotency-Key`` (a replayed key is
acknowledged again without writing: the inbox). The raw body is stored before anything else can
fail; the resource is upserted by business identifier in the same transaction; the sender gets
``202`` only after commit. Bad signatures are refused without storing anything (unauthenticated
input must not fill the store).
"""

from __future__ import annotations

from typing import Any

from hub.errors import BadRequest, HubError, NotFound, describe
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.store.db import transaction
from hub.sync.enqueue import enqueue_committed
from hub.sync.polling import _upsert
from hub.sync.service import ORIGIN_KEY, SyncService
from mappings.fhir import jsonio

TOLERANCE_SECONDS = 300


class SignatureRefused(HubError):
    status_code = 401
    code = "security"
    title = "Signature refused"


def receive_webhook(settings: Settings, *, tenant: str, connector: str, body: bytes,
                    headers: dict[str, str], now: float | None = None) -> dict[str, Any]:
    from connectors.webhook.signing import verify_signature
    from hub.services import fhir_service

    with transaction(settings.database_url) as session:
        instance = repo.connector_by_name(session, tenant=tenant, name=connector)
        if instance is None or instance.kind != "webhook" or not instance.enabled:
            raise NotFound("No inbound webhook here")
        secret = SyncService(session, tenant=tenant, settings=settings).connector_config(instance).get("secret")
        connector_id = instance.id
    if not secret or not verify_signature(secret, headers.get("x-hub-timestamp"), body,
                                          headers.get("x-hub-signature-256"), TOLERANCE_SECONDS, now):
        raise SignatureRefused("Missing, wrong or stale X-Hub-Signature-256 / X-Hub-Timestamp")
    key = headers.get("idempotency-key")
    if not key or len(key) > 255:
        raise BadRequest("An Idempotency-Key header (at most 255 characters) is required")
    with transaction(settings.database_url) as session:
        session.info[ORIGIN_KEY] = connector_id  # not routed back to the partner that sent it
        service = SyncService(session, tenant=tenant, settings=settings)
        earlier = repo.message_by_external_id(session, tenant=tenant, source=connector, external_id=key)
        if earlier is not None:
            return {"message": earlier.id, "status": earlier.status, "duplicate": True}
        message = service.record_inbound(source=connector, external_id=key, raw=body)
        savepoint = session.begin_nested()
        try:
            resource = jsonio.loads(body)
            if not isinstance(resource, dict):
                raise BadRequest("The body must be a FHIR resource")
            _upsert(fhir_service(session, settings, tenant, settings.fhir_base or "/fhir"), resource)
            savepoint.commit()
            service.mark_translated(message, resource)
        except (HubError, jsonio.InvalidJson) as exc:
            savepoint.rollback()
            reason = describe(exc)
            service.mark_rejected(message, reason)
        result = {"message": message.id, "status": message.status, "duplicate": False,
                  **({"error": message.error} if message.status == "rejected" else {})}
    enqueue_committed(settings, session)
    return result

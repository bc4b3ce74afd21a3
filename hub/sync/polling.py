"""Polling: pull changes from a partner through its connector's ``poll(cursor)``.

One poll = fetch a batch outside any transaction, then ONE transaction that stores every item as an
inbound message (deduplicated by (connector, external id): the inbox), writes the FHIR resources it
carries into the store (upsert by business identifier), and advances the cursor. If anything fails
before commit, the cursor stays where it was and the batch is fetched again next time; the inbox
makes that repeat harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from hub.errors import HubError, describe
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.store.db import transaction
from hub.sync import events as ev
from hub.sync.enqueue import enqueue_committed
from hub.sync.service import ORIGIN_KEY, SyncService
from mappings.fhir import jsonio

log = logging.getLogger("hub.sync.polling")


@dataclass(frozen=True, slots=True)
class PollReport:
    connector: str
    fetched: int
    stored: int
    duplicates: int
    rejected: int
    cursor: str | None


def _upsert(fhir: Any, resource: dict[str, Any]) -> None:
    """Create the resource, or update the one with the same business identifier."""
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
            fhir.update(resource_type, existing_id, {**resource, "id": existing_id})
            return
    fhir.create(resource_type, resource)


def poll_connector(settings: Settings, connector_id: int, *, limit: int = 200) -> PollReport | None:
    """Poll one connector instance once; None when it cannot poll."""
    from connectors import registry
    from connectors.base import ConnectorError, supports_polling
    from hub.services import fhir_service

    with transaction(settings.database_url) as session:
        instance = repo.connector_by_id(session, connector_id=connector_id)
        if instance is None or not instance.enabled:
            return None
        service = SyncService(session, tenant=instance.tenant_id, settings=settings)
        tenant, name, kind = instance.tenant_id, instance.name, instance.kind
        config = service.connector_config(instance)
        cursor_row = repo.get_cursor(session, tenant=tenant, connector_id=connector_id)
        cursor = cursor_row.value if cursor_row else None
    connector = registry.create(kind, config)
    try:
        if not supports_polling(connector):
            return None
        try:
            batch = connector.poll(cursor, limit)
        except ConnectorError as exc:
            log.warning("hub.poll.failed", extra={"connector": name, "error": str(exc)})
            raise
    finally:
        connector.close()

    stored = duplicates = rejected = 0
    with transaction(settings.database_url) as session:
        session.info[ORIGIN_KEY] = connector_id  # changes made here are not routed back to their source
        service = SyncService(session, tenant=tenant, settings=settings)
        fhir = fhir_service(session, settings, tenant, settings.fhir_base or "/fhir")
        for item in batch.items:
            if repo.message_by_external_id(session, tenant=tenant, source=name, external_id=item.external_id):
                duplicates += 1
                continue
            message = service.record_inbound(source=name, external_id=item.external_id, raw=item.payload)
            savepoint = session.begin_nested()
            try:
                resource = jsonio.loads(item.payload)
                if not isinstance(resource, dict):
                    raise HubError("payload is not a FHIR resource")
                _upsert(fhir, resource)
                savepoint.commit()
                service.mark_translated(message, resource)
                stored += 1
            except (HubError, jsonio.InvalidJson) as exc:
                savepoint.rollback()
                reason = describe(exc)
                service.mark_rejected(message, reason)
                rejected += 1
        repo.set_cursor(session, tenant=tenant, connector_id=connector_id, value=batch.next_cursor,
                        now=service.clock())
    enqueue_committed(settings, session)
    report = PollReport(name, len(batch.items), stored, duplicates, rejected, batch.next_cursor)
    log.info("hub.poll.done", extra={"connector": name, "fetched": report.fetched, "stored": stored,
                                      "duplicates": duplicates, "rejected": rejected})
    return report


def poll_named(settings: Settings, tenant: str, name: str) -> dict[str, Any]:
    """Poll the connector ``name`` of ``tenant`` once (admin API, CLI); errors become a clear result."""
    from connectors.base import ConnectorError

    with transaction(settings.database_url) as session:
        connector_id = SyncService(session, tenant=tenant, settings=settings).get_connector(name).id
    try:
        report = poll_connector(settings, connector_id)
    except ConnectorError as exc:
        return {"connector": name, "ok": False, "error": str(exc)}
    if report is None:
        return {"connector": name, "ok": False, "error": "this connector cannot poll (or is disabled)"}
    return {"connector": name, "ok": True, "fetched": report.fetched, "stored": report.stored,
            "duplicates": report.duplicates, "rejected": report.rejected}


def pollable_connectors(settings: Settings) -> list[int]:
    from connectors import registry
    from connectors.base import Poller

    with transaction(settings.database_url) as session:
        instances = [(c.id, c.kind) for c in repo.all_enabled_connectors(session)]
    out = []
    for connector_id, kind in instances:
        try:
            cls = registry.get(kind)
        except Exception:
            continue
        if callable(getattr(cls, "poll", None)) or issubclass(cls, Poller):  # type: ignore[misc]
            out.append(connector_id)
    return out


__all__ = ["PollReport", "poll_connector", "pollable_connectors", "ev"]

"""Polling: pull changes from a partner through its connector's ``poll(cursor)``.

One poll = fetch a batch outside any transaction, then ONE transaction that stores every item as an
inbound message (deduplicated by (connector, external id): the inbox), writes the FHIR resources it
carries into the store (upsert by business identifier), and advances the cursor. If anything fails
before commit, the cursor stays where it was and the batch is fetched again next time; the inbox
makes that repeat harmless.

Before a polled resource is written, its references are brought back to hub ids
(:func:`resolve_references`): a partner that keeps its own ids (``fhir_emr``) sends a Reference with
a ``type`` and the target's business ``identifier`` instead of its id; the hub looks the identifier
up in its store and, when exactly one resource carries it, sets ``reference`` to that resource's hub
id. Otherwise the reference stays logical (no ``reference`` string): an id of the partner is never
stored as if it were one of the hub's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from connectors import registry
from connectors.base import ConnectorError, Poller, supports_polling
from hub.errors import HubError, describe
from hub.security.inbound import InboundPolicy
from hub.services import channel_store
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.sync import events as ev
from hub.sync.config import SyncConfig
from hub.sync.inbox import upsert_resource
from hub.sync.outbox import ORIGIN_KEY
from hub.unit_of_work import savepoint, unit_of_work
from mappings.fhir import jsonio

log = logging.getLogger("hub.sync.polling")

#: the identifier system under which a hub id travels (``connectors.fhir_emr`` keys resources
#: without a business identifier by it): its value is the hub id itself
HUB_ID_SYSTEM = "urn:therapy-hub:id"

_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_RELATIVE = re.compile(r"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")


@dataclass(frozen=True, slots=True)
class PollReport:
    connector: str
    fetched: int
    stored: int
    duplicates: int
    rejected: int
    cursor: str | None
    #: the hub's own writes coming back (SendResult.written): skipped, nothing stored
    echoes: int = 0


def resolve_references(
    resource: Any,
    *,
    find: Callable[[str, str, str], list[str]],
    exists: Callable[[str, str], bool],
    hub_id_systems: Collection[str] = (HUB_ID_SYSTEM,),
) -> Any:
    """A copy of ``resource`` whose identifier-carrying References point at hub ids where possible.

    A Reference is considered when it has an ``identifier`` with a ``system`` and a ``value`` and a
    type (its ``type``, else the type of its relative ``reference``). ``find(type, system, value)``
    returns the hub ids of the resources of that type carrying the identifier; ``exists(type, id)``
    says whether the hub holds that resource. In order:

    * the system is one of ``hub_id_systems`` and the hub holds ``<type>/<value>``: that is the target;
    * else exactly one resource found by the identifier: that one;
    * else none: ``reference`` removed, ``type`` set (a logical reference). The ``reference`` it came
      with is never kept: it is the partner's id, and the hub's resource of that id is another one.

    ``identifier``, ``display`` and the rest of the Reference are kept. References without an
    identifier, and everything inside ``contained``, are left as they are.
    """
    if isinstance(resource, list):
        return [resolve_references(item, find=find, exists=exists, hub_id_systems=hub_id_systems)
                for item in resource]
    if not isinstance(resource, dict):
        return resource
    target = _identified_target(resource)
    if target is not None:
        return _resolved(resource, *target, find=find, exists=exists, hub_id_systems=hub_id_systems)
    return {key: value if key in ("contained", "text")
            else resolve_references(value, find=find, exists=exists, hub_id_systems=hub_id_systems)
            for key, value in resource.items()}


def _identified_target(reference: dict[str, Any]) -> tuple[str, str, str] | None:
    """(type, identifier system, value) of a Reference that can be looked up by identifier."""
    identifier = reference.get("identifier")
    if not isinstance(identifier, dict) or "resourceType" in reference:  # e.g. QuestionnaireResponse
        return None
    system, value = identifier.get("system"), identifier.get("value")
    if not (isinstance(system, str) and system and isinstance(value, str) and value):
        return None
    kind = reference.get("type")
    literal = reference.get("reference")
    parsed = _RELATIVE.fullmatch(literal) if isinstance(literal, str) else None
    if isinstance(kind, str) and _TYPE.fullmatch(kind):
        return kind, system, value
    if parsed is not None:
        return parsed[1], system, value
    return None


def _resolved(reference: dict[str, Any], kind: str, system: str, value: str, *,
              find: Callable[[str, str, str], list[str]], exists: Callable[[str, str], bool],
              hub_id_systems: Collection[str]) -> dict[str, Any]:
    hub_id: str | None = None
    if system in hub_id_systems and _ID.fullmatch(value) and exists(kind, value):
        hub_id = value
    if hub_id is None:
        found = find(kind, system, value)
        if len(found) == 1:
            hub_id = found[0]
    # no fallback to the literal ``reference`` it came with: that id is the partner's, and a hub
    # resource that happens to have the same id (numeric ids collide easily) is someone else
    out = {k: v for k, v in reference.items() if k != "reference"}
    if hub_id is None:
        out["type"] = kind
        return out
    return {"reference": f"{kind}/{hub_id}", **out}


def _store_lookups(fhir: Any) -> tuple[Callable[[str, str, str], list[str]], Callable[[str, str], bool]]:
    """``find`` and ``exists`` for :func:`resolve_references` over the hub's store (memoized: one
    resource's references often name one target several times)."""
    found: dict[tuple[str, str, str], list[str]] = {}
    held: dict[tuple[str, str], bool] = {}

    def find(kind: str, system: str, value: str) -> list[str]:
        key = (kind, system, value)
        if key not in found:
            token = f"{_escape_token(system)}|{_escape_token(value)}"
            try:
                bundle = fhir.search(kind, [("identifier", token), ("_count", "2")], strict=True)
            except HubError:
                found[key] = []  # a type or parameter the store does not support: nothing to point at
            else:
                found[key] = [e["fullUrl"].rsplit("/", 1)[-1] for e in bundle.get("entry", [])
                              if e.get("search", {}).get("mode") == "match"]
        return found[key]

    def exists(kind: str, resource_id: str) -> bool:
        key = (kind, resource_id)
        if key not in held:
            try:
                fhir.read(kind, resource_id)
            except HubError:
                held[key] = False
            else:
                held[key] = True
        return held[key]

    return find, exists


def _escape_token(text: str) -> str:
    """Escape a token part for the store's search (``\\``, ``,``, ``$``; its first ``|`` splits)."""
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("$", "\\$")


def poll_connector(settings: Settings, connector_id: int, *, limit: int = 200) -> PollReport | None:
    """Poll one connector instance once; None when it cannot poll."""
    with unit_of_work(settings) as session:
        instance = repo.connector_by_id(session, connector_id=connector_id)
        if instance is None or not instance.enabled:
            return None
        tenant, name, kind = instance.tenant_id, instance.name, instance.kind
        config = SyncConfig(session, tenant=tenant, settings=settings).connector_config(instance)
        cursor_row = repo.get_cursor(session, tenant=tenant, connector_id=connector_id)
        cursor = cursor_row.value if cursor_row else None
    connector = registry.create(kind, config)
    hub_id_systems = {HUB_ID_SYSTEM}
    own_system = getattr(getattr(connector, "config", None), "hub_identifier_system", None)
    if isinstance(own_system, str) and own_system:
        hub_id_systems.add(own_system)  # a connector that names hub ids under its own system
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

    stored = duplicates = rejected = echoes = 0
    with unit_of_work(settings) as session:
        session.info[ORIGIN_KEY] = connector_id  # changes made here are not routed back to their source
        # what the partner sends is written under its connector's inbound policy, and audited
        policy = InboundPolicy.for_config(tenant=tenant, source=name, channel="poll", config=config)
        fhir, inbox = channel_store(session, settings, tenant, policy)
        own = repo.written_among(session, connector_id=connector_id,
                                 external_ids=[item.external_id for item in batch.items])
        for item in batch.items:
            if item.external_id in own:
                echoes += 1
                continue
            if repo.message_by_external_id(session, tenant=tenant, source=name, external_id=item.external_id):
                duplicates += 1
                continue
            message = inbox.record_inbound(source=name, external_id=item.external_id, raw=item.payload)
            part = savepoint(session)
            try:
                resource = jsonio.loads(item.payload)
                if not isinstance(resource, dict):
                    raise HubError("payload is not a FHIR resource")
                find, exists = _store_lookups(fhir)
                resource = resolve_references(resource, find=find, exists=exists, hub_id_systems=hub_id_systems)
                written = upsert_resource(fhir, resource)
                part.commit()
                inbox.mark_translated(message, resource)
                policy.audit(fhir, interaction="create" if written.status == 201 else "update", outcome=0,
                             resource_type=written.stored.resource_type, resource_id=written.stored.id)
                stored += 1
            except (HubError, jsonio.InvalidJson) as exc:
                part.rollback()
                reason = describe(exc)
                inbox.mark_rejected(message, reason)
                policy.audit(fhir, interaction="create", outcome=4,
                             description=f"{getattr(exc, 'status_code', 400)} {getattr(exc, 'code', 'structure')}")
                rejected += 1
        repo.set_cursor(session, tenant=tenant, connector_id=connector_id, value=batch.next_cursor,
                        now=inbox.clock())
    report = PollReport(name, len(batch.items), stored, duplicates, rejected, batch.next_cursor, echoes)
    # an idle feed polled every minute is not news: INFO only when the poll brought something
    log.log(logging.INFO if report.fetched else logging.DEBUG, "hub.poll.done",
            extra={"connector": name, "fetched": report.fetched, "stored": stored, "duplicates": duplicates,
                   "rejected": rejected, "echoes": echoes})
    return report


def poll_named(settings: Settings, tenant: str, name: str) -> dict[str, Any]:
    """Poll the connector ``name`` of ``tenant`` once (admin API, CLI); errors become a clear result."""
    with unit_of_work(settings) as session:
        connector_id = SyncConfig(session, tenant=tenant, settings=settings).get_connector(name).id
    try:
        report = poll_connector(settings, connector_id)
    except ConnectorError as exc:
        return {"connector": name, "ok": False, "error": str(exc)}
    if report is None:
        return {"connector": name, "ok": False, "error": "this connector cannot poll (or is disabled)"}
    return {"connector": name, "ok": True, "fetched": report.fetched, "stored": report.stored,
            "duplicates": report.duplicates, "rejected": report.rejected, "echoes": report.echoes}


def pollable_connectors(settings: Settings) -> list[int]:
    with unit_of_work(settings) as session:
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


__all__ = ["HUB_ID_SYSTEM", "PollReport", "poll_connector", "pollable_connectors", "resolve_references", "ev"]

"""Fallback chains (ADR 0011): a route names an ordered list of connectors ("the referrer's Direct
address, else fax"); a delivery goes to the first of them that can address it.

The choice is made when the change is routed (:meth:`hub.sync.outbox.Outbox.on_change`), on the
changed resource with what it references (context ``references``) as the store holds them then,
by each connector's :meth:`connectors.base.Addresser.can_address`. When the chosen connector
dead-letters the job, the engine moves on to the next connector of the chain that can address it
(:func:`next_in_chain`), with a new job that points at the dead one (``replay_of``): delivered, it
resolves that dead letter. A chain none of whose connectors can address the delivery gets one job,
for its first connector, dead-lettered at once with the reason (:data:`UNADDRESSABLE`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from connectors import registry
from connectors.base import ConnectorError, Delivery, can_address
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.store.models import Route
from hub.sync.config import SyncConfig
from hub.sync.context import with_references

__all__ = ["UNADDRESSABLE", "chain_of", "choose", "is_chain", "next_in_chain"]

UNADDRESSABLE = "no connector of the route's fallback chain can address this delivery"


def chain_of(route: Route) -> list[int]:
    """The connector ids of ``route``, in order: its own, then its fallbacks."""
    rest = [int(part) for part in (route.fallback or "").split(",") if part.strip()]
    return [route.connector_id, *rest]


def is_chain(route: Route) -> bool:
    return bool(route.fallback)


def _addresses(session: Session, *, tenant: str, settings: Settings, connector_id: int,
               delivery: Delivery) -> tuple[bool, str]:
    """(whether the connector can address the delivery, its name for the reasons)."""
    instance = repo.connector_by_id(session, connector_id=connector_id)
    if instance is None or instance.tenant_id != tenant:
        return False, str(connector_id)
    config = SyncConfig(session, tenant=tenant, settings=settings).connector_config(instance)
    try:
        connector = registry.create(instance.kind, config)
    except ConnectorError:
        return False, instance.name  # a broken config cannot address anything; its error shows on /connectors
    try:
        answer = can_address(connector, delivery)
    finally:
        close = getattr(connector, "close", None)
        if callable(close):
            close()
    return answer is not False, instance.name


def choose(session: Session, *, tenant: str, settings: Settings, chain: Sequence[int],
           resource: dict[str, Any] | None, event: str, after: int | None = None) -> tuple[int | None, list[str]]:
    """The first connector of ``chain`` (after ``after``, when given) that can address a delivery of
    ``resource``; None when none can. Also the names of those that were passed over."""
    candidates = list(chain)
    if after is not None:
        candidates = candidates[candidates.index(after) + 1:] if after in candidates else []
    if not candidates:
        return None, []
    if resource is None:  # a delete: no addressee to look at, the first one takes it
        return candidates[0], []
    payload = with_references(session, tenant=tenant, base=settings.fhir_base,
                              payload=json.dumps(resource, separators=(",", ":")).encode("utf-8"))
    delivery = Delivery(payload=payload, content_type="application/fhir+json", idempotency_key="address-check",
                        correlation_id="address-check", resource_type=resource.get("resourceType"),
                        resource_id=str(resource.get("id") or "") or None, event=event[:255])
    passed: list[str] = []
    for connector_id in candidates:
        ok, name = _addresses(session, tenant=tenant, settings=settings, connector_id=connector_id,
                              delivery=delivery)
        if ok:
            return connector_id, passed
        passed.append(name)
    return None, passed


def next_in_chain(session: Session, *, tenant: str, settings: Settings, route_id: int | None,
                  connector_id: int, resource: dict[str, Any] | None,
                  event: str) -> tuple[Route | None, int | None, list[str]]:
    """After ``connector_id`` dead-lettered a job of route ``route_id``: the route and the next
    connector of its chain that can address the delivery (None when there is none, or no chain)."""
    route = repo.route_by_id(session, tenant=tenant, route_id=route_id) if route_id is not None else None
    if route is None or not is_chain(route):
        return route, None, []
    chosen, passed = choose(session, tenant=tenant, settings=settings, chain=chain_of(route), resource=resource,
                            event=event, after=connector_id)
    return route, chosen, passed

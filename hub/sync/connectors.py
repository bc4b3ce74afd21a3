"""Connector instances at run time: health checks (``hub connectors test``, admin API)."""

from __future__ import annotations

from typing import Any

from connectors import registry
from connectors.base import ConnectorError
from hub.errors import NotFound
from hub.settings import Settings
from hub.sync.config import SyncConfig
from hub.unit_of_work import unit_of_work


def check_health(settings: Settings, tenant: str, name: str) -> dict[str, Any]:
    with unit_of_work(settings) as session:
        service = SyncConfig(session, tenant=tenant, settings=settings)
        instance = service.get_connector(name)
        kind = instance.kind
        config = service.connector_config(instance)
    try:
        connector = registry.create(kind, config)
    except ConnectorError as exc:
        return {"name": name, "ok": False, "detail": str(exc), "duration_ms": 0.0}
    except KeyError:
        raise NotFound(f"Connector kind {kind!r} is not installed") from None
    try:
        result = connector.health()
        return {"name": name, "ok": result.ok, "detail": result.detail, "duration_ms": round(result.duration_ms, 2)}
    except ConnectorError as exc:
        return {"name": name, "ok": False, "detail": str(exc), "duration_ms": 0.0}
    finally:
        if hasattr(connector, "close"):
            connector.close()

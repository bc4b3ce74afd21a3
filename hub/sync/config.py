"""Configuration of the sync engine: connector instances (their config encrypted at rest) and the
routes that decide which connectors receive which FHIR changes (``hub routes load``, admin API,
dashboard). A route's FHIRPath filter is checked when it is saved (:func:`check_fhirpath`), so a
filter that could never match is refused instead of silently routing nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from connectors import registry
from connectors.base import Addresser, ConnectorError
from hub.crypto import cipher_for, decrypt, encrypt
from hub.errors import BadRequest, Conflict, NotFound
from hub.kit import utcnow
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.store.models import ConnectorInstance, Route
from hub.sync.direct_certs import DirectCerts

#: most connectors in one route's fallback chain
MAX_CHAIN = 5


def addresses(kind: str) -> bool:
    """Whether connectors of ``kind`` say if they can address a delivery (:class:`Addresser`)."""
    try:
        cls = registry.get(kind)
    except ConnectorError:
        return False
    return isinstance(cls, type) and issubclass(cls, Addresser)


class _RaiseOnSyntaxError:
    """ANTLR error listener: fhirpathpy's own parser silently recovers from syntax errors."""

    def syntaxError(self, recognizer: Any, offending: Any, line: int, column: int, msg: str, e: Any) -> None:  # noqa: N802
        raise ValueError(f"column {column + 1}: {msg}")

    def reportAmbiguity(self, *args: Any) -> None:  # noqa: N802
        pass

    def reportAttemptingFullContext(self, *args: Any) -> None:  # noqa: N802
        pass

    def reportContextSensitivity(self, *args: Any) -> None:  # noqa: N802
        pass


def check_fhirpath(expression: str, resource_type: str = "*") -> None:
    """Refuse a filter that does not parse, or that fails even on an empty resource (unknown
    function, undefined %variable): it could never match."""
    from antlr4 import CommonTokenStream, InputStream
    from fhirpathpy import evaluate
    from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
    from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

    try:
        lexer = FHIRPathLexer(InputStream(expression))
        lexer.removeErrorListeners()
        lexer.addErrorListener(_RaiseOnSyntaxError())
        parser = FHIRPathParser(CommonTokenStream(lexer))
        parser.removeErrorListeners()
        parser.addErrorListener(_RaiseOnSyntaxError())
        parser.entireExpression()  # the whole text, up to EOF
        evaluate({"resourceType": resource_type if resource_type != "*" else "Resource"}, expression, [])
    except Exception as exc:
        raise BadRequest(f"The route filter is not valid FHIRPath: {str(exc).splitlines()[0][:200]}") from None


class SyncConfig:
    """Connectors and routes of one tenant, in the caller's transaction."""

    def __init__(
        self,
        session: Session,
        *,
        tenant: str,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.session = session
        self.tenant = tenant
        self.clock = clock
        self.settings = settings
        self.box = cipher_for(settings)

    def add_connector(
        self,
        *,
        name: str,
        kind: str,
        config: dict[str, Any],
        max_attempts: int = 8,
        timeout_seconds: float = 10.0,
        backoff_base_seconds: float = 2.0,
        backoff_max_seconds: float = 600.0,
        enabled: bool = True,
        replace: bool = False,
    ) -> ConnectorInstance:
        try:
            registry.validate_config(kind, config)
        except ConnectorError as exc:
            raise BadRequest(str(exc)) from None
        now = self.clock()
        existing = repo.connector_by_name(self.session, tenant=self.tenant, name=name)
        if existing is not None and not replace:
            raise Conflict(f"A connector named {name!r} exists already")
        instance = existing or ConnectorInstance(tenant_id=self.tenant, name=name, created_at=now)
        instance.kind = kind
        instance.config = encrypt(self.box, json.dumps(config)) or ""
        instance.enabled = enabled
        instance.max_attempts = max_attempts
        instance.timeout_seconds = timeout_seconds
        instance.backoff_base_seconds = backoff_base_seconds
        instance.backoff_max_seconds = backoff_max_seconds
        instance.updated_at = now
        if existing is None:
            self.session.add(instance)
        self.session.flush()
        return instance

    def connector_config(self, instance: ConnectorInstance) -> dict[str, Any]:
        """The instance's config, decrypted; a ``direct`` one completed with the tenant's stored Direct
        certificates where it has none (:mod:`hub.sync.direct_certs`)."""
        config: dict[str, Any] = json.loads(decrypt(self.box, instance.config) or b"{}")
        if instance.kind == "direct":
            config = DirectCerts(self.session, tenant=instance.tenant_id, settings=self.settings,
                                 clock=self.clock).fill_direct_config(config)
        return config

    def get_connector(self, name: str) -> ConnectorInstance:
        instance = repo.connector_by_name(self.session, tenant=self.tenant, name=name)
        if instance is None:
            raise NotFound(f"No connector named {name!r}")
        return instance

    def add_route(
        self,
        *,
        name: str,
        resource_type: str,
        connector: str,
        interactions: str = "create,update",
        filter: str | None = None,
        enabled: bool = True,
        replace: bool = False,
        fallback: Sequence[str] = (),
    ) -> Route:
        """A route to ``connector``; with ``fallback`` (connector names), a fallback chain: the first
        of ``connector``, ``*fallback`` that can address a delivery takes it (ADR 0011)."""
        instance = self.get_connector(connector)
        chain = self._chain(connector, fallback)
        if filter:
            check_fhirpath(filter, resource_type)
        allowed = {"create", "update", "delete", "*"}
        if not {i.strip() for i in interactions.split(",")} <= allowed:
            raise BadRequest("interactions is a comma list of create, update, delete (or *)")
        existing = repo.route_by_name(self.session, tenant=self.tenant, name=name)
        if existing is not None and not replace:
            raise Conflict(f"A route named {name!r} exists already")
        route = existing or Route(tenant_id=self.tenant, name=name, created_at=self.clock())
        route.resource_type = resource_type
        route.interactions = interactions
        route.filter = filter or None
        route.connector_id = instance.id
        route.fallback = ",".join(str(c.id) for c in chain[1:]) or None
        route.enabled = enabled
        if existing is None:
            self.session.add(route)
        self.session.flush()
        return route

    def _chain(self, connector: str, fallback: Sequence[str]) -> list[ConnectorInstance]:
        """The connectors of a fallback chain, validated: known, each once, and every one but the last
        able to say whether it can address a delivery (else the ones after it would never be used)."""
        if isinstance(fallback, str) or not all(isinstance(name, str) and name for name in fallback):
            raise BadRequest("fallback is a list of connector names")
        names = [connector, *fallback]
        if len(names) > MAX_CHAIN:
            raise BadRequest(f"A fallback chain holds at most {MAX_CHAIN} connectors")
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise BadRequest(f"A fallback chain names each connector once (twice: {', '.join(twice)})")
        chain = [self.get_connector(name) for name in names]
        for instance in chain[:-1] if len(chain) > 1 else []:
            if not addresses(instance.kind):
                raise BadRequest(f"Connector {instance.name!r} ({instance.kind}) cannot say whether it can address "
                                 "a delivery: it can only be the last of a fallback chain")
        return chain

    def delete_route(self, route_id: int) -> None:
        route = repo.route_by_id(self.session, tenant=self.tenant, route_id=route_id)
        if route is None:
            raise NotFound(f"No route {route_id}")
        self.session.delete(route)
        self.session.flush()

    def rename_route(self, route_id: int, name: str) -> Route:
        """Give a route a new name (it keeps its id); another route's name is a conflict."""
        route = repo.route_by_id(self.session, tenant=self.tenant, route_id=route_id)
        if route is None:
            raise NotFound(f"No route {route_id}")
        other = repo.route_by_name(self.session, tenant=self.tenant, name=name)
        if other is not None and other.id != route.id:
            raise Conflict(f"A route named {name!r} exists already")
        route.name = name
        self.session.flush()
        return route

    def load_config(self, document: dict[str, Any]) -> tuple[int, int]:
        """Upsert connectors and routes from a parsed YAML/JSON document (see docs/routes.example.yaml)."""
        if not isinstance(document, dict):
            raise BadRequest("The routes file must be a mapping with 'connectors' and/or 'routes'")
        connectors = document.get("connectors") or []
        routes = document.get("routes") or []
        for index, item in enumerate(connectors):
            if not isinstance(item, dict) or "name" not in item or "kind" not in item:
                raise BadRequest(f"connectors[{index}] needs name and kind")
            options = {k: item[k] for k in ("max_attempts", "timeout_seconds", "backoff_base_seconds",
                                            "backoff_max_seconds", "enabled") if k in item}
            self.add_connector(name=item["name"], kind=item["kind"], config=item.get("config") or {},
                               replace=True, **options)
        for index, item in enumerate(routes):
            if not isinstance(item, dict) or not {"name", "resource_type", "connector"} <= set(item):
                raise BadRequest(f"routes[{index}] needs name, resource_type and connector")
            interactions = item.get("interactions", "create,update")
            if isinstance(interactions, list):
                interactions = ",".join(interactions)
            connector, fallback = item["connector"], item.get("fallback") or []
            if isinstance(connector, list):  # connector: [direct-hisp, fax-vendor] is a fallback chain too
                if fallback or not connector:
                    raise BadRequest(f"routes[{index}]: a connector list is the whole chain (no fallback beside it)")
                connector, fallback = connector[0], connector[1:]
            if not isinstance(connector, str) or not isinstance(fallback, list):
                raise BadRequest(f"routes[{index}]: connector is a name (or a list of names), fallback a list of names")
            try:
                self.add_route(name=item["name"], resource_type=item["resource_type"], connector=connector,
                               interactions=interactions, filter=item.get("filter"),
                               enabled=item.get("enabled", True), replace=True, fallback=fallback)
            except BadRequest as exc:
                raise BadRequest(f"routes[{index}]: {exc}") from None
        return len(connectors), len(routes)

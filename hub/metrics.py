"""``GET /metrics``: the hub's health in the Prometheus text format.

What an operator alerts on, read from the database at scrape time (so every API replica and every
worker agrees, and nothing is lost when a process restarts):

=========================================  ==============================================================
``therapy_hub_delivery_jobs``              delivery jobs by tenant, connector and status (``dead`` =
                                           dead letters waiting for a human; ``pending``/``retrying`` =
                                           the backlog; ``awaiting`` = sent, the partner's confirmation
                                           still to come)
``therapy_hub_dead_letters``               dead letters by tenant, connector and ``state``: ``outstanding``
                                           (alert on these) or ``resolved`` (a replay was delivered, or an
                                           operator discarded it)
``therapy_hub_backlog_oldest_seconds``     age of the oldest open job per connector (a stuck partner)
``therapy_hub_last_delivery_timestamp``    Unix time of the last successful delivery per connector
``therapy_hub_connector_enabled``          1 when the connector is enabled, 0 when paused
``therapy_hub_messages_24h``               messages created in the last 24 hours by direction and status
                                           (``rejected`` = refused input kept for inspection)
``therapy_hub_billing_claims``             claims by tenant and billing status (every status, zeros included:
                                           ``blocked`` = held by the scrubber, ``denied``, ``payer_rejected``)
``therapy_hub_billing_charge_cents``       the sum of their charges in cents, by tenant and status
``therapy_hub_billing_paid_cents``         the sum the payers paid on them in cents, by tenant and status
``therapy_hub_http_requests_total``        requests served by this process by method, route and status
``therapy_hub_http_request_seconds``       their latency (histogram), by method and route
=========================================  ==============================================================

Who may scrape: an administrator's bearer token (its own tenant's series only), or the
``HUB_METRICS_TOKEN`` a Prometheus ``authorization`` block sends (every tenant, and the HTTP series).
Labels hold tenant and connector names, statuses and route templates, never patient data (no claim,
patient control number or payer in the billing series either).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.deps import SettingsDep, current_principal
from hub.kit import utcnow
from hub.settings import Settings
from hub.store.billing_views import claim_totals
from hub.store.models import ConnectorInstance, DeliveryJob, Message
from hub.sync import events as ev
from hub.unit_of_work import unit_of_work

__all__ = ["HttpMetricsMiddleware", "StoreCollector", "router"]

router = APIRouter(tags=["operations"])

#: HTTP series of this process (not per tenant: only the operator's token sees them)
HTTP_REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter("therapy_hub_http_requests", "HTTP requests served by this process",
                   ["method", "route", "status"], registry=HTTP_REGISTRY)
LATENCY = Histogram("therapy_hub_http_request_seconds", "HTTP request latency in this process",
                    ["method", "route"], registry=HTTP_REGISTRY,
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))


class StoreCollector(Collector):
    """The database-backed series, for one tenant or (``tenant=None``) all of them."""

    def __init__(self, session: Session, *, tenant: str | None, now: datetime) -> None:
        self.session, self.tenant, self.now = session, tenant, now

    def _where(self, model: type) -> list:  # type: ignore[type-arg]
        return [model.tenant_id == self.tenant] if self.tenant is not None else []  # type: ignore[attr-defined]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        connectors = {
            c.id: c for c in self.session.scalars(select(ConnectorInstance).where(*self._where(ConnectorInstance)))
        }
        enabled = GaugeMetricFamily("therapy_hub_connector_enabled", "1 when the connector is enabled",
                                    labels=["tenant", "connector", "kind"])
        for c in connectors.values():
            enabled.add_metric([c.tenant_id, c.name, c.kind], 1.0 if c.enabled else 0.0)
        yield enabled

        jobs = GaugeMetricFamily("therapy_hub_delivery_jobs", "Delivery jobs by status",
                                 labels=["tenant", "connector", "status"])
        counted = self.session.execute(
            select(DeliveryJob.connector_id, DeliveryJob.status, func.count())
            .where(*self._where(DeliveryJob)).group_by(DeliveryJob.connector_id, DeliveryJob.status)
        )
        seen: set[tuple[int, str]] = set()
        for connector_id, status, count in counted:
            if connector_id in connectors:
                seen.add((connector_id, status))
                jobs.add_metric([connectors[connector_id].tenant_id, connectors[connector_id].name, status], count)
        for connector_id, c in connectors.items():  # zeros too, so that alerts see a series go to 0
            for status in ev.JOB_STATUSES:
                if (connector_id, status) not in seen:
                    jobs.add_metric([c.tenant_id, c.name, status], 0.0)
        yield jobs

        dead = GaugeMetricFamily("therapy_hub_dead_letters",
                                 "Dead letters: outstanding (waiting for a human) or resolved (replayed or discarded)",
                                 labels=["tenant", "connector", "state"])
        by_state = {
            (connector_id, bool(resolved)): count
            for connector_id, resolved, count in self.session.execute(
                select(DeliveryJob.connector_id, DeliveryJob.resolved_at.is_not(None), func.count())
                .where(DeliveryJob.status == ev.DEAD, *self._where(DeliveryJob))
                .group_by(DeliveryJob.connector_id, DeliveryJob.resolved_at.is_not(None))
            )
        }
        for connector_id, c in connectors.items():  # both states for every connector, zeros included
            for state, resolved in (("outstanding", False), ("resolved", True)):
                dead.add_metric([c.tenant_id, c.name, state], by_state.get((connector_id, resolved), 0))
        yield dead

        oldest = GaugeMetricFamily("therapy_hub_backlog_oldest_seconds", "Age of the oldest open delivery job",
                                   labels=["tenant", "connector"])
        open_since = self.session.execute(
            select(DeliveryJob.connector_id, func.min(DeliveryJob.created_at))
            .where(DeliveryJob.status.in_(ev.OPEN_JOB_STATUSES), *self._where(DeliveryJob))
            .group_by(DeliveryJob.connector_id)
        )
        ages = {connector_id: since for connector_id, since in open_since}
        for connector_id, c in connectors.items():
            since = ages.get(connector_id)
            oldest.add_metric([c.tenant_id, c.name], max(0.0, (self.now - since).total_seconds()) if since else 0.0)
        yield oldest

        last = GaugeMetricFamily("therapy_hub_last_delivery_timestamp",
                                 "Unix time of the last successful delivery", labels=["tenant", "connector"])
        finished = self.session.execute(
            select(DeliveryJob.connector_id, func.max(DeliveryJob.finished_at))
            .where(DeliveryJob.status == ev.SUCCEEDED, *self._where(DeliveryJob))
            .group_by(DeliveryJob.connector_id)
        )
        for connector_id, at in finished:
            if connector_id in connectors and at is not None:
                c = connectors[connector_id]
                last.add_metric([c.tenant_id, c.name], (at - datetime(1970, 1, 1)).total_seconds())
        yield last

        messages = GaugeMetricFamily("therapy_hub_messages_24h", "Messages created in the last 24 hours",
                                     labels=["tenant", "direction", "status"])
        recent = self.session.execute(
            select(Message.tenant_id, Message.direction, Message.status, func.count())
            .where(Message.created_at >= self.now - timedelta(hours=24), *self._where(Message))
            .group_by(Message.tenant_id, Message.direction, Message.status)
        )
        for tenant, direction, status, count in recent:
            messages.add_metric([tenant, direction, status], count)
        yield messages

        yield from self._billing()

    def _billing(self) -> Iterator[GaugeMetricFamily]:
        claims = GaugeMetricFamily("therapy_hub_billing_claims", "Claims by billing status",
                                   labels=["tenant", "status"])
        charge = GaugeMetricFamily("therapy_hub_billing_charge_cents",
                                   "Charges of the claims by billing status, in cents", labels=["tenant", "status"])
        paid = GaugeMetricFamily("therapy_hub_billing_paid_cents", "Paid on the claims by billing status, in cents",
                                 labels=["tenant", "status"])
        for tenant, totals in claim_totals(self.session, tenant=self.tenant).items():
            for status, t in totals.by_status.items():  # every status, zeros included
                claims.add_metric([tenant, status], t.count)
                charge.add_metric([tenant, status], t.charge_cents)
                paid.add_metric([tenant, status], t.paid_cents)
        yield claims
        yield charge
        yield paid


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _scope(request: Request, settings: Settings) -> tuple[str | None, bool]:
    """(tenant to show, None = all; whether the HTTP series are shown). Raises Unauthorized/Forbidden."""
    expected = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    presented = _bearer(request)
    if expected and presented and hmac.compare_digest(presented.encode(), expected.encode()):
        return None, True
    principal = current_principal(request, settings)
    principal.require_role("admin")
    return (None, True) if settings.auth_disabled else (principal.tenant, False)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, settings: SettingsDep) -> Response:
    tenant, with_http = await run_in_threadpool(_scope, request, settings)  # may read the store

    def render() -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        with unit_of_work(settings) as session:
            registry.register(StoreCollector(session, tenant=tenant, now=utcnow()))
            body = generate_latest(registry)
        return body + (generate_latest(HTTP_REGISTRY) if with_http else b"")

    return Response(await run_in_threadpool(render), media_type=CONTENT_TYPE_LATEST)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetricsMiddleware:
    """Counts and times every HTTP request by its route template (``/fhir/{resource_type}/{resource_id}``,
    never the ids themselves: a label per patient would be PHI and unbounded)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_status(message: dict) -> None:  # type: ignore[type-arg]
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)  # type: ignore[arg-type]
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            method = method if method in _METHODS else "OTHER"  # a client chooses it: bound the label
            REQUESTS.labels(method, template, str(status["code"])).inc()
            LATENCY.labels(method, template).observe(time.perf_counter() - started)


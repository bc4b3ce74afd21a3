"""Admin API (JSON, ``/admin/api``): messages, jobs, dead letters, retry and replay, connectors
with health, routes. Thin: each endpoint calls one service in one transaction."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import yaml
from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, Field, SecretStr
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from hub import boundary
from hub.admin.schemas import (
    BulkReplayOut,
    ConnectorOut,
    DirectCertOut,
    DirectCrlOut,
    HealthCheckOut,
    ImportOut,
    JobOut,
    JobPage,
    MessageDetail,
    MessagePage,
    PollOut,
    RouteOut,
)
from hub.boundary import Audit, Caller
from hub.deps import PrincipalDep, SettingsDep, TenantDep, require_roles
from hub.errors import PROBLEMS, BadRequest
from hub.jsonbody import JsonBodyRoute
from hub.settings import Settings
from hub.sync.actions import SyncActions
from hub.sync.admin import AdminViews, route_view
from hub.sync.config import SyncConfig
from hub.sync.connectors import check_health
from hub.sync.direct_certs import DirectCerts, certificate_view
from hub.sync.direct_crls import DirectCrls, crl_view
from hub.sync.polling import poll_named
from hub.unit_of_work import unit_of_work

router = APIRouter(prefix="/admin/api", tags=["admin"], dependencies=[Depends(require_roles("admin"))],
                   route_class=JsonBodyRoute, responses=PROBLEMS)
T = TypeVar("T")
MAX_INT = 2**31 - 1  # ids and offsets are database integers: larger values are 400, not an overflow
JobId = Annotated[int, Path(ge=1, le=MAX_INT)]
RouteId = Annotated[int, Path(ge=1, le=MAX_INT)]
# The views leave out the fields that do not apply (a job's next attempt once it is done): so does the answer.
LEAN: dict[str, Any] = {"response_model_exclude_unset": True}


async def run(settings: Settings, work: Callable[[Session], T]) -> T:
    def job() -> T:
        with unit_of_work(settings) as session:
            return work(session)

    return await run_in_threadpool(job)


class ConnectorIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    kind: str = Field(min_length=1, max_length=64)
    config: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    max_attempts: int = Field(default=8, ge=1, le=100)
    timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    backoff_base_seconds: float = Field(default=2.0, gt=0, le=3600)
    backoff_max_seconds: float = Field(default=600.0, gt=0, le=86400)


class RouteIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    resource_type: str = Field(min_length=1, max_length=64)
    connector: str
    fallback: list[str] = Field(default_factory=list, max_length=4,
                                description="connectors tried after `connector`, in order: the first "
                                            "that can address a delivery takes it (a fallback chain)")
    interactions: list[Literal["create", "update", "delete", "*"]] = Field(default_factory=lambda: ["create", "update"])
    filter: str | None = Field(default=None, description="FHIRPath that must evaluate to true")
    enabled: bool = True


class ReplayIn(BaseModel):
    message_ids: list[str] = Field(default_factory=list)
    dead_letters_of: str | None = Field(default=None, description="Replay every dead letter of this connector")
    all_dead_letters: bool = False


# ------------------------------------------------------------------ messages


@router.get("/messages", response_model=MessagePage, **LEAN, summary="Messages, newest first")
async def list_messages(
    settings: SettingsDep,
    tenant: TenantDep,
    status: str | None = None,
    connector: str | None = None,
    correlation_id: str | None = None,
    resource_type: str | None = None,
    resource: str | None = Query(None, max_length=200, description="Type/id: the messages about one resource"),
    version: int | None = Query(None, ge=1, le=MAX_INT, description="With resource: one version of it"),
    source: str | None = Query(None, max_length=100,
                               description='Exact match: the messages from one source ("fhir-api", a connector name)'),
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=MAX_INT),
) -> dict[str, Any]:
    def naive(value: datetime | None) -> datetime | None:
        try:
            return value.astimezone(UTC).replace(tzinfo=None) if value and value.tzinfo else value
        except OverflowError:  # 9999-12-31T23:59:59-14:00 is in the year 10000
            raise BadRequest("since and until must be dates between the years 1 and 9999") from None

    return await run(
        settings,
        lambda s: AdminViews(s, tenant=tenant).messages(
            status=status, connector=connector, correlation_id=correlation_id, resource_type=resource_type,
            resource=resource, version=version, source=source, since=naive(since), until=naive(until), limit=limit,
            offset=offset,
        ),
    )


@router.get("/messages/{message_id}", response_model=MessageDetail, **LEAN,
            summary="A message with its events and delivery jobs")
async def get_message(message_id: str, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    return await run(settings, lambda s: AdminViews(s, tenant=tenant).message(message_id))


@router.post("/messages/{message_id}/replay", response_model=MessageDetail, **LEAN,
             status_code=201, summary="Replay a message (a new, linked message)")
async def replay_message(message_id: str, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        replay = SyncActions(session, tenant=tenant, settings=settings).replay_message(message_id)
        session.flush()
        return AdminViews(session, tenant=tenant).message(replay.id)

    return await run(settings, work)


@router.post("/messages/{message_id}/resend", response_model=MessageDetail, **LEAN, status_code=201,
             summary="Resend a message with new idempotency keys (partners do not dedupe it)")
async def resend_message(message_id: str, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        replay = SyncActions(session, tenant=tenant, settings=settings).replay_message(message_id, resend=True)
        session.flush()
        return AdminViews(session, tenant=tenant).message(replay.id)

    return await run(settings, work)


@router.post("/replay", response_model=BulkReplayOut, **LEAN,
             summary="Bulk replay: listed messages, or the dead letters of a connector")
async def bulk_replay(body: ReplayIn, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    if not body.message_ids and not body.dead_letters_of and not body.all_dead_letters:
        raise BadRequest("Give message_ids, dead_letters_of or all_dead_letters")

    def work(session: Session) -> dict[str, Any]:
        service = SyncActions(session, tenant=tenant, settings=settings)
        replays = [service.replay_message(m) for m in body.message_ids]
        if body.dead_letters_of or body.all_dead_letters:
            replays += service.replay_dead(connector=body.dead_letters_of)
        return {"replayed": [{"id": r.id, "replay_of": r.replay_of} for r in replays]}

    return await run(settings, work)


# ------------------------------------------------------------------ jobs


@router.get("/jobs", response_model=JobPage, **LEAN, summary="Delivery jobs, newest first")
async def list_jobs(
    settings: SettingsDep,
    tenant: TenantDep,
    status: str | None = None,
    connector: str | None = None,
    message: str | None = Query(None, max_length=36, description="Jobs of this message id"),
    idempotency_key: str | None = Query(None, max_length=100, description="Jobs that sent this key"),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=MAX_INT),
) -> dict[str, Any]:
    return await run(
        settings,
        lambda s: AdminViews(s, tenant=tenant).jobs(status=status, connector=connector, message=message,
                                                    idempotency_key=idempotency_key, limit=limit, offset=offset),
    )


@router.get("/dead-letters", response_model=JobPage, **LEAN,
            summary="Dead-lettered jobs: outstanding ones (default), resolved ones or all")
async def dead_letters(
    settings: SettingsDep,
    tenant: TenantDep,
    connector: str | None = None,
    state: Literal["outstanding", "resolved", "all"] = Query(
        "outstanding", description="resolved: a replay of it was delivered; outstanding: not yet"),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=MAX_INT),
) -> dict[str, Any]:
    return await run(
        settings,
        lambda s: AdminViews(s, tenant=tenant).jobs(dead=state, connector=connector, limit=limit, offset=offset),
    )


@router.get("/jobs/{job_id}", response_model=JobOut, **LEAN,
            summary="A delivery job (why it is queued: next attempt, last error)")
async def get_job(job_id: JobId, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    return await run(settings, lambda s: AdminViews(s, tenant=tenant).job(job_id))


@router.post("/jobs/{job_id}/retry", response_model=JobOut, **LEAN, summary="Retry a dead or retrying job now")
async def retry_job(job_id: JobId, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        SyncActions(session, tenant=tenant, settings=settings).retry_job(job_id)
        return AdminViews(session, tenant=tenant).job(job_id)

    return await run(settings, work)


class DiscardIn(BaseModel):
    reason: str = Field(min_length=1, max_length=300,
                        description="Why it will never be delivered (kept in the message's events)")


@router.post("/jobs/{job_id}/discard", response_model=JobOut, **LEAN,
             summary="Discard a dead letter: never deliver it, stop holding later jobs")
async def discard_job(job_id: JobId, body: DiscardIn, settings: SettingsDep,
                      principal: PrincipalDep) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        SyncActions(session, tenant=principal.tenant, settings=settings).discard_job(
            job_id, reason=body.reason, actor=principal.client_id)
        return AdminViews(session, tenant=principal.tenant).job(job_id)

    return await run(settings, work)


# ------------------------------------------------------------------ connectors


@router.get("/connectors", response_model=list[ConnectorOut], **LEAN,
            summary="Connectors with health (backlog, last success/error, error rates)")
async def list_connectors(settings: SettingsDep, tenant: TenantDep) -> list[dict[str, Any]]:
    return await run(settings, lambda s: AdminViews(s, tenant=tenant).connectors())


@router.get("/connectors/{name}", response_model=ConnectorOut, **LEAN, summary="A connector with its health")
async def get_connector(name: str, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    return await run(settings, lambda s: AdminViews(s, tenant=tenant).connector(name))


@router.put("/connectors/{name}", response_model=ConnectorOut, **LEAN,
            summary="Create or replace a connector (secrets are stored encrypted)")
async def put_connector(name: str, body: ConnectorIn, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    if body.name != name:
        raise BadRequest("The name in the body must match the URL")

    def work(session: Session) -> dict[str, Any]:
        SyncConfig(session, tenant=tenant, settings=settings).add_connector(
            name=body.name, kind=body.kind, config=body.config, enabled=body.enabled,
            max_attempts=body.max_attempts, timeout_seconds=body.timeout_seconds,
            backoff_base_seconds=body.backoff_base_seconds, backoff_max_seconds=body.backoff_max_seconds,
            replace=True,
        )
        return AdminViews(session, tenant=tenant).connector(name)

    return await run(settings, work)


@router.post("/connectors/{name}/test", response_model=HealthCheckOut, **LEAN,
             summary="Run the connector's health check against its partner")
async def test_connector(name: str, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    return await run_in_threadpool(check_health, settings, tenant, name)


@router.post("/connectors/{name}/poll", response_model=PollOut, **LEAN,
             summary="Poll a connector now (what beat does on its schedule)")
async def poll_connector_now(name: str, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    return await run_in_threadpool(poll_named, settings, tenant, name)


# ------------------------------------------------------------------ routes


@router.get("/routes", response_model=list[RouteOut], **LEAN, summary="Routes")
async def list_routes(settings: SettingsDep, tenant: TenantDep) -> list[dict[str, Any]]:
    return await run(settings, lambda s: AdminViews(s, tenant=tenant).routes())


@router.post("/routes", response_model=RouteOut, **LEAN, status_code=201, summary="Create a route")
async def create_route(body: RouteIn, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    return await run(settings, lambda s: _save_route(s, settings, tenant, body, replace=False))


@router.get("/routes/{route_id}", response_model=RouteOut, **LEAN, summary="A route")
async def get_route(route_id: RouteId, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    return await run(settings, lambda s: AdminViews(s, tenant=tenant).route(route_id))


@router.put("/routes/{route_id}", response_model=RouteOut, **LEAN, summary="Replace a route")
async def put_route(route_id: RouteId, body: RouteIn, settings: SettingsDep,
                    tenant: TenantDep) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        current = AdminViews(session, tenant=tenant).route(route_id)
        if current["name"] != body.name:  # rename in place: the route keeps its id
            SyncConfig(session, tenant=tenant, settings=settings).rename_route(route_id, body.name)
        return _save_route(session, settings, tenant, body, replace=True)

    return await run(settings, work)


@router.delete("/routes/{route_id}", status_code=204, summary="Delete a route")
async def delete_route(route_id: RouteId, settings: SettingsDep, tenant: TenantDep) -> None:
    await run(settings, lambda s: SyncConfig(s, tenant=tenant, settings=settings).delete_route(route_id))


@router.post("/routes/import", response_model=ImportOut, **LEAN,
             summary="Load connectors and routes from a YAML document (upsert by name)")
async def import_routes(
    settings: SettingsDep, tenant: TenantDep, body: str = Body(..., media_type="application/yaml")
) -> dict[str, int]:
    try:
        document = yaml.safe_load(body)
    except yaml.YAMLError:
        raise BadRequest("The body is not valid YAML") from None

    def work(session: Session) -> dict[str, int]:
        connectors, routes = SyncConfig(session, tenant=tenant, settings=settings).load_config(document)
        return {"connectors": connectors, "routes": routes}

    return await run(settings, work)


def _save_route(session: Session, settings: Settings, tenant: str, body: RouteIn, *, replace: bool) -> dict[str, Any]:
    route = SyncConfig(session, tenant=tenant, settings=settings).add_route(
        name=body.name, resource_type=body.resource_type, connector=body.connector,
        interactions=",".join(body.interactions), filter=body.filter, enabled=body.enabled, replace=replace,
        fallback=body.fallback,
    )
    return route_view(route, AdminViews(session, tenant=tenant).connector_names())


class DirectCertIn(BaseModel):
    address: str = Field(min_length=3, max_length=254, description="Direct address")
    cert: str = Field(min_length=1, max_length=100_000, description="PEM, or base64 of DER")
    key: SecretStr | None = Field(default=None, description="PEM, or base64 of DER; never returned")
    trust_anchor: bool = False
    replace: bool = Field(default=False, description="Remove the address's other entries of the same kind "
                          "(certificates, or trust anchors); without it the old ones stay in use until they expire")


def _file_bytes(text: str) -> bytes:
    if "-----BEGIN" in text:
        return text.encode()
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise BadRequest("cert, key and crl must be PEM or base64 of DER") from None


@router.get("/direct/certs", response_model=list[DirectCertOut], summary="Direct certificates and trust anchors")
async def list_direct_certs(settings: SettingsDep, tenant: TenantDep,
                            address: str | None = Query(default=None, max_length=254)) -> list[dict[str, Any]]:
    return await run(settings, lambda s: [certificate_view(r) for r in DirectCerts(
        s, tenant=tenant, settings=settings).list(address=address)])


@router.post("/direct/certs", response_model=DirectCertOut, status_code=201,
             summary="Add a Direct certificate (with its key, stored encrypted) or a trust anchor")
async def add_direct_cert(body: DirectCertIn, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    cert = _file_bytes(body.cert)
    key = _file_bytes(body.key.get_secret_value()) if body.key is not None else None
    return await run(settings, lambda s: certificate_view(DirectCerts(s, tenant=tenant, settings=settings).add(
        address=body.address, cert=cert, key=key, trust_anchor=body.trust_anchor, replace=body.replace)))


@router.delete("/direct/certs/{entry_id}", response_model=DirectCertOut,
               summary="Remove a Direct certificate or trust anchor (the listener and connectors stop using it)")
async def remove_direct_cert(request: Request, settings: SettingsDep, tenant: TenantDep,
                             entry_id: JobId) -> dict[str, Any]:
    what = f"DELETE {request.url.path}"

    def failure(exc: BaseException) -> tuple[int, str]:
        status = getattr(exc, "status_code", 500)
        return (4 if status < 500 else 8), f"{what} HTTP {status}"

    caller = Caller(principal=request.state.principal, address=request.client.host if request.client else None,
                    base_url=settings.fhir_base or "/fhir")
    audit = Audit(interaction="delete", description=what, failure=failure)
    return await run_in_threadpool(boundary.run, settings, tenant, caller, audit, lambda work: certificate_view(
        DirectCerts(work.session, tenant=tenant, settings=settings).remove_id(entry_id)))


class DirectCrlIn(BaseModel):
    crl: str = Field(min_length=1, max_length=5_000_000, description="PEM, or base64 of DER")


@router.get("/direct/crls", response_model=list[DirectCrlOut], summary="Certificate revocation lists for Direct")
async def list_direct_crls(settings: SettingsDep, tenant: TenantDep) -> list[dict[str, Any]]:
    return await run(settings, lambda s: [crl_view(r) for r in DirectCrls(s, tenant=tenant).list()])


@router.post("/direct/crls", response_model=DirectCrlOut, status_code=201,
             summary="Add a CRL of a stored trust anchor or intermediate (an expired one is kept and "
                     "reported: expired is true)")
async def add_direct_crl(body: DirectCrlIn, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    data = _file_bytes(body.crl)

    def work(session: Session) -> dict[str, Any]:
        added = DirectCrls(session, tenant=tenant).add(data)
        return {**crl_view(added.row), "superseded": list(added.superseded)}

    return await run(settings, work)


@router.delete("/direct/crls/{entry_id}", response_model=DirectCrlOut,
               summary="Remove a CRL (its issuer's certificates are checked soft-fail again)")
async def remove_direct_crl(request: Request, settings: SettingsDep, tenant: TenantDep,
                            entry_id: JobId) -> dict[str, Any]:
    what = f"DELETE {request.url.path}"

    def failure(exc: BaseException) -> tuple[int, str]:
        status = getattr(exc, "status_code", 500)
        return (4 if status < 500 else 8), f"{what} HTTP {status}"

    caller = Caller(principal=request.state.principal, address=request.client.host if request.client else None,
                    base_url=settings.fhir_base or "/fhir")
    audit = Audit(interaction="delete", description=what, failure=failure)
    return await run_in_threadpool(boundary.run, settings, tenant, caller, audit, lambda work: crl_view(
        DirectCrls(work.session, tenant=tenant).remove_id(entry_id)))

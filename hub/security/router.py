"""``POST /auth/token``: OAuth2 client credentials (client_secret or a SMART Backend Services
client_assertion JWT) -> a bearer access token with SMART v2 scopes.
``/admin/api/clients``: register, list and revoke clients (administrators)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from hub.deps import SettingsDep, TenantDep, get_clock, require_roles
from hub.errors import PROBLEMS, OAuthErrorOut, documented
from hub.jsonbody import JsonBodyRoute
from hub.security.clients import AuthFailed, ClientService
from hub.settings import Settings
from hub.unit_of_work import unit_of_work

router = APIRouter(tags=["auth"], route_class=JsonBodyRoute)


def token_audiences(request: Request, settings: Settings) -> list[str]:
    """What a client assertion's ``aud`` must name: the configured token endpoint URL(s); only in
    development and tests, with none configured, the URL this request came to (its Host header)."""
    configured = settings.assertion_audiences
    if configured:
        return configured
    if settings.environment not in ("development", "test"):  # the settings refuse this; never trust Host
        raise RuntimeError("no token audience configured")
    return [f"{str(request.base_url).rstrip('/')}/auth/token"]


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, secret = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return client_id, secret


class TokenOut(BaseModel):
    """An access token (RFC 6749 section 5.1)."""

    access_token: str
    token_type: str = Field(examples=["bearer"])
    expires_in: int
    scope: str


class ClientCreatedOut(BaseModel):
    client_id: str
    client_secret: str | None = Field(description="Shown only this once; none for a key-only client")
    role: str
    scopes: str


class ClientOut(BaseModel):
    client_id: str
    name: str
    tenant: str
    role: str
    scopes: str
    fhir_user: str | None
    auth: str = Field(description="secret, key or both")
    revoked: bool


class RevokedOut(BaseModel):
    client_id: str
    status: str = Field(examples=["revoked"])


TOKEN_ERRORS = documented(OAuthErrorOut, "application/json", (400, 401))


@router.post("/auth/token", summary="OAuth2 token endpoint (client_credentials; SMART Backend Services)",
             response_model=None, responses={200: {"model": TokenOut}, **TOKEN_ERRORS})
async def token(request: Request, settings: SettingsDep) -> JSONResponse:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    clock = request.app.dependency_overrides.get(get_clock, get_clock)()
    audiences = token_audiences(request, settings)
    basic = _basic(request)

    def work() -> dict[str, Any]:
        with unit_of_work(settings) as session:
            return ClientService(session, settings=settings, now=clock()).token(form, audiences=audiences, basic=basic)

    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    try:
        body = await run_in_threadpool(work)
    except AuthFailed as exc:
        if exc.status_code == 401 and basic is not None:  # RFC 6749 §5.2: challenge with the scheme used
            headers["WWW-Authenticate"] = 'Basic realm="therapy-hub"'
        return JSONResponse({"error": exc.error, "error_description": exc.description},
                            status_code=exc.status_code, headers=headers)
    return JSONResponse(body, headers=headers)


class ClientIn(BaseModel):
    """A client to register. Its id is generated (``<label>-<random>``): ids are unique across all
    tenants, so letting a tenant's admin choose one would tell it, and let it take, other tenants' ids."""

    model_config = ConfigDict(extra="forbid")  # a client_id sent anyway is refused, not silently replaced

    name: str = Field(min_length=1, max_length=200)
    role: str = Field(pattern="^(admin|clinic|referrer|system)$")
    scopes: str | None = Field(default=None, description="SMART v2 scopes; default depends on the role")
    public_key: str | None = Field(default=None, description="PEM public key for client_assertion (RS384/ES384)")
    fhir_user: str | None = Field(default=None, description="PractitionerRole/<id> for a referrer")
    label: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]{1,40}$",
                              description="Put in front of the generated client id (default: the role)")
    with_secret: bool = True


admin = [Depends(require_roles("admin"))]


@router.post("/admin/api/clients", status_code=201, dependencies=admin, response_model=ClientCreatedOut,
             responses=PROBLEMS, summary="Register a client; the secret is shown once")
async def add_client(body: ClientIn, request: Request, settings: SettingsDep, tenant: TenantDep) -> dict[str, Any]:
    clock = request.app.dependency_overrides.get(get_clock, get_clock)()

    def work() -> dict[str, Any]:
        with unit_of_work(settings) as session:
            new = ClientService(session, settings=settings, now=clock()).add(tenant=tenant, **body.model_dump())
            return {"client_id": new.client_id, "client_secret": new.client_secret, "role": new.role,
                    "scopes": new.scopes}

    return await run_in_threadpool(work)


@router.get("/admin/api/clients", dependencies=admin, response_model=list[ClientOut], responses=PROBLEMS,
            summary="Clients of this tenant (no secrets)")
async def list_clients(request: Request, settings: SettingsDep, tenant: TenantDep) -> list[dict[str, Any]]:
    clock = request.app.dependency_overrides.get(get_clock, get_clock)()

    def work() -> list[dict[str, Any]]:
        with unit_of_work(settings) as session:
            return ClientService(session, settings=settings, now=clock()).list(tenant=tenant)

    return await run_in_threadpool(work)


@router.post("/admin/api/clients/{client_id}/revoke", dependencies=admin, response_model=RevokedOut,
             responses=PROBLEMS, summary="Revoke a client")
async def revoke_client(client_id: str, request: Request, settings: SettingsDep, tenant: TenantDep) -> dict[str, str]:
    clock = request.app.dependency_overrides.get(get_clock, get_clock)()

    def work() -> None:
        with unit_of_work(settings) as session:
            ClientService(session, settings=settings, now=clock()).revoke(client_id, tenant=tenant)

    await run_in_threadpool(work)
    return {"client_id": client_id, "status": "revoked"}

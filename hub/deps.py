"""FastAPI dependencies: settings, the caller, its tenant, the clock (the unit of work is :mod:`hub.unit_of_work`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from hub.kit import utcnow
from hub.security import tokens
from hub.security.principal import DEVELOPMENT, Principal, Unauthorized
from hub.settings import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]


def current_principal(request: Request, settings: SettingsDep) -> Principal:
    """The caller, from ``Authorization: Bearer <token>`` (see /auth/token)."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    if settings.auth_disabled:
        principal = Principal.of(DEVELOPMENT.client_id, settings.default_tenant, "admin", DEVELOPMENT.scope, None)
    else:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Send a bearer token: Authorization: Bearer <access_token> (from POST /auth/token)")
        clock = request.app.dependency_overrides.get(get_clock, get_clock)()  # the clock that issued it
        try:
            claims = tokens.verify(
                token.strip(), secrets=[settings.secret_key.get_secret_value(), *settings.previous_keys],
                now=clock(),
            )
            tokens.refuse_revoked(settings.database_url, claims.client_id)
        except tokens.TokenError as exc:
            raise Unauthorized(str(exc), invalid_token=True) from None
        principal = Principal.of(claims.client_id, claims.tenant, claims.role, claims.scope, claims.fhir_user)
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def current_tenant(principal: PrincipalDep) -> str:
    """The caller's tenant (clinic organisation): every query is scoped to it."""
    return principal.tenant


TenantDep = Annotated[str, Depends(current_tenant)]


def require_roles(*roles: str) -> Callable[..., Principal]:
    def check(principal: PrincipalDep) -> Principal:
        principal.require_role(*roles)
        return principal

    return check


def get_clock() -> Callable[[], datetime]:
    """The clock of the request (naive UTC). Tests override this dependency to inject time."""
    return utcnow


ClockDep = Annotated[Callable[[], datetime], Depends(get_clock)]

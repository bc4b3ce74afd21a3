"""Who is calling: the principal of a request, from its bearer token (or the development flag)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.errors import HubError
from hub.security.scopes import Scope, allows, parse_scopes


class Unauthorized(HubError):
    status_code = 401
    code = "login"
    title = "Authentication required"

    def __init__(self, diagnostics: str, *, invalid_token: bool = False) -> None:
        # RFC 6750 §3.1: no error code when no token was sent; invalid_token when one was refused
        challenge = 'Bearer realm="therapy-hub"' + (
            ', error="invalid_token", error_description="' + diagnostics.replace('"', "'") + '"'
            if invalid_token else "")
        super().__init__(diagnostics, headers={"WWW-Authenticate": challenge})


class Forbidden(HubError):
    status_code = 403
    code = "forbidden"
    title = "Forbidden"


@dataclass(frozen=True)
class Principal:
    client_id: str
    tenant: str
    role: str  # admin | clinic | referrer | system
    scope: str
    fhir_user: str | None = None
    scopes: list[Scope] = field(default_factory=list)

    @classmethod
    def of(cls, client_id: str, tenant: str, role: str, scope: str, fhir_user: str | None) -> Principal:
        return cls(client_id, tenant, role, scope, fhir_user, parse_scopes(scope))

    def can(self, resource_type: str, permission: str) -> bool:
        return allows(self.scopes, resource_type, permission)

    def require(self, resource_type: str, permission: str) -> None:
        if not self.can(resource_type, permission):
            names = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
            raise Forbidden(f"The token's scopes do not allow {names[permission]} on {resource_type}")

    def require_role(self, *roles: str) -> None:
        if self.role not in roles:
            raise Forbidden(f"This needs one of the roles: {', '.join(roles)}")


DEVELOPMENT = Principal.of("development", "", "admin", "system/*.cruds", None)

"""OAuth2 clients: registration (CLI, admin API), authentication, token issuance.

Client ids are one namespace for the whole hub (the token endpoint finds a client by its id alone),
so a tenant's administrator never chooses one: ids are generated, ``<label>-<16 hex digits>``, the
label (default: the role) being the caller's only say. No id a caller can ask for can collide with
another tenant's, and registering never answers "exists already". Only the operator's own tools (the
CLI, the demo, the local admin of a fresh install) may register an exact id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy import delete, event, select
from sqlalchemy.orm import Session

from hub.errors import BadRequest, Conflict, HubError, NotFound
from hub.security import revocation, tokens
from hub.security.scopes import invalid_scopes, narrow
from hub.settings import Settings
from hub.store.models import Client, UsedAssertion
from hub.store.repository import ensure_tenant

ROLES = ("admin", "clinic", "referrer", "system")
DEFAULT_SCOPES = {
    "admin": "system/*.cruds",
    "clinic": "system/*.cruds",
    "referrer": "user/*.rs user/ServiceRequest.cruds user/Task.rs",
    "system": "system/*.rs",
}
TOKEN_LIFETIME = timedelta(minutes=15)
#: what a caller may put in front of a generated client id
LABEL = re.compile(r"[A-Za-z0-9_.\-]{1,40}")


class AuthFailed(HubError):
    """OAuth2 error response (RFC 6749 §5.2)."""

    status_code = 401
    code = "login"
    title = "Authentication failed"

    def __init__(self, error: str, description: str, status: int = 401) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status_code = status


def _scrypt(secret: bytes, salt: bytes) -> bytes:
    """The (deliberately slow) hash of client secrets; every secret check runs it exactly once."""
    return hashlib.scrypt(secret, salt=salt, n=2**14, r=8, p=1, dklen=32)


def _hash_secret(secret: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = _scrypt(secret.encode(), salt)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


#: checked instead when there is no stored hash to check against (unknown, revoked or secretless
#: client): every failure costs one scrypt, so response times do not tell which client ids exist.
#: It matches no secret: the result of that check is ignored.
_DUMMY_HASH = "scrypt$" + base64.b64encode(b"therapy-hub/none").decode() + "$" + base64.b64encode(bytes(32)).decode()


def _check_secret(secret: str, stored: str) -> bool:
    try:
        _, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    expected = _hash_secret(secret, base64.b64decode(salt_b64)).split("$")[2]
    return hmac.compare_digest(expected, digest_b64)


@dataclass(frozen=True, slots=True)
class NewClient:
    client_id: str
    client_secret: str | None
    role: str
    scopes: str


class ClientService:
    def __init__(self, session: Session, *, settings: Settings, now: datetime) -> None:
        self.session = session
        self.settings = settings
        self.now = now

    # ------------------------------------------------------------ registration

    def add(self, *, tenant: str, name: str, role: str, scopes: str | None = None,
            public_key: str | None = None, fhir_user: str | None = None, label: str | None = None,
            client_id: str | None = None, with_secret: bool = True) -> NewClient:
        """Register a client. Its id is generated from ``label`` (default: the role); ``client_id``
        (an exact id, refused if taken) is for the operator's tools only, never for a tenant's admin."""
        if role not in ROLES:
            raise BadRequest(f"role must be one of {', '.join(ROLES)}")
        scopes = scopes or DEFAULT_SCOPES[role]
        bad = invalid_scopes(scopes)
        if bad:
            raise BadRequest(f"not SMART scopes: {' '.join(bad)[:200]}")
        if role == "referrer" and not (fhir_user or "").startswith(("PractitionerRole/", "Practitioner/")):
            raise BadRequest("a referrer client needs fhir_user = PractitionerRole/<id> (the referring physician)")
        if public_key:
            try:
                load_pem_public_key(public_key.encode())
            except ValueError:
                raise BadRequest("public_key is not a PEM public key") from None
        ensure_tenant(self.session, tenant_id=tenant, name=f"Clinic {tenant}", now=self.now)
        if label is not None and not LABEL.fullmatch(label):
            raise BadRequest("label must be 1-40 letters, digits, '.', '_' or '-'")
        if client_id is not None:
            if self._taken(client_id):
                raise Conflict(f"client {client_id} exists already")
        else:
            client_id = self._generated_id(label or role)
        secret = secrets.token_urlsafe(32) if with_secret else None
        self.session.add(Client(
            tenant_id=tenant, client_id=client_id, name=name, role=role, scopes=scopes,
            secret_hash=_hash_secret(secret) if secret else None, public_key=public_key, fhir_user=fhir_user,
            created_at=self.now,
        ))
        self.session.flush()
        self._forget_on_commit(client_id)
        return NewClient(client_id, secret, role, scopes)

    def _taken(self, client_id: str) -> bool:
        return self.session.scalar(select(Client.id).where(Client.client_id == client_id)) is not None

    def _generated_id(self, label: str) -> str:
        """``<label>-<64 random bits>``, drawn again in the (astronomically unlikely) case it is taken
        (e.g. by an exact id the operator chose): the caller never learns of another client."""
        while True:
            client_id = f"{label}-{secrets.token_hex(8)}"
            if not self._taken(client_id):
                return client_id

    def list(self, *, tenant: str | None = None) -> list[dict[str, Any]]:
        stmt = select(Client).order_by(Client.client_id)
        if tenant:
            stmt = stmt.where(Client.tenant_id == tenant)
        return [
            {"client_id": c.client_id, "name": c.name, "tenant": c.tenant_id, "role": c.role, "scopes": c.scopes,
             "fhir_user": c.fhir_user, "auth": ("secret" if c.secret_hash else "") + (
                 " key" if c.public_key else ""), "revoked": c.revoked_at is not None}
            for c in self.session.scalars(stmt)
        ]

    def revoke(self, client_id: str, *, tenant: str | None = None) -> None:
        client = self.session.scalar(select(Client).where(Client.client_id == client_id))
        if client is None or (tenant and client.tenant_id != tenant):
            raise NotFound(f"no client {client_id}")
        client.revoked_at = self.now
        self.session.flush()
        self._forget_on_commit(client_id)

    def _forget_on_commit(self, client_id: str) -> None:
        """Once this transaction commits, this process's cached revocation state of the client is
        dropped: its access tokens are checked against the store on their next request."""
        event.listen(self.session, "after_commit", lambda _session: revocation.forget(client_id), once=True)

    # ------------------------------------------------------------ token endpoint

    def token(self, form: dict[str, str], *, audiences: list[str], basic: tuple[str, str] | None) -> dict[str, Any]:
        """``audiences``: the token endpoint URLs a client assertion's ``aud`` may name."""
        if form.get("grant_type") != "client_credentials":
            raise AuthFailed("unsupported_grant_type", "only grant_type=client_credentials is supported", 400)
        if form.get("client_assertion"):
            if form.get("client_assertion_type") != tokens.ASSERTION_TYPE:
                raise AuthFailed("invalid_request", f"client_assertion_type must be {tokens.ASSERTION_TYPE}", 400)
            client = self._by_assertion(form["client_assertion"], audiences)
        else:
            client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
            client = self._active(client_id)
            stored = client.secret_hash if client is not None and client.secret_hash else None
            matches = _check_secret(secret, stored or _DUMMY_HASH)  # one scrypt whichever way it fails
            if client is None or stored is None or not matches:
                raise AuthFailed("invalid_client", "client authentication failed")
        return self._grant(client, form.get("scope", ""))

    def operator_token(self, client_id: str, *, scope: str = "") -> dict[str, Any]:
        """An access token for an active client, issued to an operator of this store (``hub token``),
        who needs no client authentication: they hold the store and HUB_SECRET_KEY already."""
        return self._grant(self._client(client_id), scope)

    def _grant(self, client: Client, requested: str) -> dict[str, Any]:
        scope = narrow(requested, client.scopes)
        if requested and not scope:
            raise AuthFailed("invalid_scope", "none of the requested scopes is granted to this client", 400)
        access_token, expires_in = tokens.issue(
            secret=self.settings.secret_key.get_secret_value(), client_id=client.client_id, tenant=client.tenant_id,
            role=client.role, scope=scope, fhir_user=client.fhir_user, now=self.now, lifetime=TOKEN_LIFETIME,
        )
        return {"access_token": access_token, "token_type": "bearer", "expires_in": expires_in, "scope": scope}

    def _active(self, client_id: str) -> Client | None:
        """The client, unless it is unknown or revoked."""
        client = self.session.scalar(select(Client).where(Client.client_id == client_id)) if client_id else None
        return None if client is None or client.revoked_at is not None else client

    def _client(self, client_id: str) -> Client:
        client = self._active(client_id)
        if client is None:
            raise AuthFailed("invalid_client", "client authentication failed")
        return client

    def _by_assertion(self, assertion: str, audiences: list[str]) -> Client:
        try:
            client = self._client(tokens.assertion_subject(assertion))
            if not client.public_key:
                raise AuthFailed("invalid_client", "this client has no registered public key")
            jti, expires = tokens.verify_assertion(
                assertion, public_key_pem=client.public_key, client_id=client.client_id, audiences=audiences,
                now=self.now,
            )
        except tokens.TokenError as exc:
            raise AuthFailed("invalid_client", str(exc)) from None
        self.session.execute(delete(UsedAssertion).where(UsedAssertion.expires_at < self.now))
        if self.session.get(UsedAssertion, jti) is not None:
            raise AuthFailed("invalid_client", "client_assertion jti was already used (replay)")
        self.session.add(UsedAssertion(jti=jti, client_id=client.client_id, expires_at=expires))
        self.session.flush()
        return client

    def ensure_local_admin(self, tenant: str) -> NewClient | None:
        """The local admin client of a fresh install; its secret is returned once, when created."""
        exists = self.session.scalar(select(Client.id).where(Client.client_id == "local-admin"))
        if exists is not None:
            return None
        return self.add(tenant=tenant, name="Local administrator", role="admin", client_id="local-admin")

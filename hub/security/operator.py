"""Access tokens for the operator at the command line (``hub token``), minted from the store by the
same code as ``POST /auth/token``: same signing key, lifetime, scopes and revocation."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from hub.errors import HubError
from hub.security.clients import AuthFailed, ClientService
from hub.settings import Settings
from hub.unit_of_work import unit_of_work

LOCAL_ADMIN = "local-admin"


class TokenRefused(HubError):
    """No token: the message says why (never echoing a secret)."""

    status_code = 400
    code = "login"
    title = "No token"


def mint(settings: Settings, *, now: Any, client_id: str | None = None, secret: str | None = None,
         scope: str = "") -> dict[str, Any]:
    """The token response (``access_token``, ``expires_in``, ``scope``) for ``client_id`` authenticated
    by ``secret``, or, with neither, for the local admin client that ``hub serve`` creates on a fresh
    store (outside production only: there, every token is asked for with a client's credentials)."""


    if client_id is None and settings.environment == "production":
        raise TokenRefused("HUB_ENVIRONMENT=production: name a client with --client and give its secret")
    try:
        with unit_of_work(settings) as session:
            service = ClientService(session, settings=settings, now=now)
            if client_id is None:
                local = next((c for c in service.list() if c["client_id"] == LOCAL_ADMIN), None)
                if local is None:
                    raise TokenRefused(f"the store has no {LOCAL_ADMIN} client yet: start the hub once "
                                       "('hub serve' creates it), or name a client with --client")
                if local["revoked"]:
                    raise TokenRefused(f"{LOCAL_ADMIN} is revoked: name another client with --client")
                return service.operator_token(LOCAL_ADMIN, scope=scope)
            form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret or ""}
            if scope:
                form["scope"] = scope
            # a secret, never an assertion, is checked here: the audiences only matter to assertions
            return service.token(form, audiences=settings.assertion_audiences, basic=None)
    except AuthFailed as exc:
        raise TokenRefused(f"{exc.error}: {exc.description}") from None
    except SQLAlchemyError:
        raise TokenRefused("the store is not reachable or not migrated (see 'hub db upgrade')") from None

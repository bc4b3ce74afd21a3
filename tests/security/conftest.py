"""Security test helpers: clients registered directly through :class:`ClientService` (as the CLI
does), access tokens obtained through ``POST /auth/token`` (as a partner would)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from hub.app import create_app
from hub.kit import utcnow
from hub.security.clients import ClientService, NewClient
from hub.settings import Settings
from hub.unit_of_work import unit_of_work
from mappings.fhir.ids import deterministic_id
from mappings.referral.intake import NPI_SYSTEM

SECRET_KEY = "security-tests-secret-key-0123456789abcdef"
FHIR = {"Content-Type": "application/fhir+json"}


def secured(settings: Settings, **update: Any) -> Settings:
    """The test settings with authentication on (the shared fixture enables the development flag).

    The embedded broker is replaced by kombu's in-memory transport and rate limiting is off, so
    that the many requests of these tests stay fast and independent of each other."""
    return settings.model_copy(
        update={
            "auth_disabled": False,
            "secret_key": SecretStr(SECRET_KEY),
            "rate_limit_per_minute": 0,
            "broker_url": "memory://",
            **update,
        }
    )


def role_of(npi: str) -> str:
    """The referring physician's PractitionerRole, as referral intake names it."""
    return f"PractitionerRole/{deterministic_id('PractitionerRole', NPI_SYSTEM, npi)}"


def add_client(
    settings: Settings, tenant: str, role: str, *, now: datetime | None = None, **options: Any
) -> NewClient:
    """Register a client directly in the store (the CLI's way)."""
    with unit_of_work(settings) as session:
        return ClientService(session, settings=settings, now=now or utcnow()).add(
            tenant=tenant, name=f"{role} of {tenant}", role=role, **options
        )


def revoke_client(settings: Settings, client_id: str) -> None:
    with unit_of_work(settings) as session:
        ClientService(session, settings=settings, now=utcnow()).revoke(client_id)


def token_response(api: TestClient, client: NewClient, scope: str | None = None) -> Any:
    form = {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_secret": client.client_secret or "",
    }
    if scope is not None:
        form["scope"] = scope
    return api.post("/auth/token", data=form)


def get_token(api: TestClient, client: NewClient, scope: str | None = None) -> str:
    response = token_response(api, client, scope)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auth_settings(settings: Settings) -> Settings:
    return secured(settings)


@pytest.fixture
def api(auth_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(auth_settings), base_url="http://testserver") as test_client:
        yield test_client

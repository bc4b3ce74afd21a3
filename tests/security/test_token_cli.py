"""`hub token`: one command that prints an access token the running hub accepts."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hub.app import create_app, ensure_default_tenant
from hub.security.clients import ClientService
from hub.settings import Settings
from hub.store.migrate import upgrade
from hub.unit_of_work import unit_of_work

HUB = str(Path(sys.executable).with_name("hub"))
KEY = "token-cli-test-key-0123456789abcdef"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@pytest.fixture
def store(tmp_path: Path) -> Settings:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}", secret_key=KEY, environment="development")
    upgrade(settings.database_url)
    return settings


def _local_admin(settings: Settings) -> None:
    """What `hub serve` does on a fresh store."""
    ensure_default_tenant(settings)
    with unit_of_work(settings) as session:
        assert ClientService(session, settings=settings, now=_now()).ensure_local_admin(settings.default_tenant)


def _hub_token(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    base |= {"HUB_DATABASE_URL": settings.database_url, "HUB_SECRET_KEY": KEY,
             "HUB_ENVIRONMENT": settings.environment, **env}
    return subprocess.run([HUB, "token", *args], env=base, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def _status(settings: Settings, token: str, path: str = "/admin/api/connectors") -> int:
    with TestClient(create_app(settings)) as api:
        return api.get(path, headers={"Authorization": f"Bearer {token}"}).status_code


def test_hub_token_prints_only_a_local_admin_token_the_hub_accepts(store: Settings) -> None:
    _local_admin(store)
    done = _hub_token(store)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert done.stdout == token + "\n" and token.count(".") == 2  # one JWT, nothing else: $(hub token) works
    assert _status(store, token) == 200
    with TestClient(create_app(store)) as api:
        created = api.post("/fhir/Patient", json={"resourceType": "Patient"},
                           headers={"Authorization": f"Bearer {token}"})
    assert created.status_code == 201


def test_a_token_of_a_named_client_needs_its_secret(store: Settings) -> None:
    ensure_default_tenant(store)
    with unit_of_work(store) as session:
        new = ClientService(session, settings=store, now=_now()).add(
            tenant=store.default_tenant, name="Riverside", role="system", scopes="system/Patient.rs",
            client_id="riverside")
    assert new.client_secret
    good = _hub_token(store, "--client", "riverside", HUB_CLIENT_SECRET=new.client_secret)
    assert good.returncode == 0, good.stderr
    assert _status(store, good.stdout.strip(), "/fhir/Patient") == 200
    assert _status(store, good.stdout.strip()) == 403  # a system client is no administrator
    bad = _hub_token(store, "--client", "riverside", "--secret", "not-the-secret")
    assert bad.returncode == 2 and bad.stdout == ""
    assert "invalid_client" in bad.stderr and "not-the-secret" not in bad.stderr


def test_a_scope_narrows_the_token(store: Settings) -> None:
    _local_admin(store)
    done = _hub_token(store, "--scope", "system/Patient.rs")
    assert done.returncode == 0, done.stderr
    with TestClient(create_app(store)) as api:
        headers = {"Authorization": f"Bearer {done.stdout.strip()}"}
        assert api.get("/fhir/Patient", headers=headers).status_code == 200
        assert api.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=headers).status_code == 403


def test_before_the_first_start_it_says_what_to_do(store: Settings) -> None:
    done = _hub_token(store)
    assert done.returncode == 2 and done.stdout == ""
    assert "no local-admin client yet" in done.stderr and "hub serve" in done.stderr


def test_a_revoked_local_admin_gets_no_token(store: Settings) -> None:
    _local_admin(store)
    with unit_of_work(store) as session:
        ClientService(session, settings=store, now=_now()).revoke("local-admin")
    done = _hub_token(store)
    assert done.returncode == 2 and done.stdout == "" and "revoked" in done.stderr


def test_production_asks_for_a_clients_credentials(store: Settings) -> None:
    _local_admin(store)
    done = _hub_token(store, HUB_ENVIRONMENT="production", HUB_BASE_URL="https://hub.example.org")
    assert done.returncode == 2 and done.stdout == ""
    assert "--client" in done.stderr


def test_a_configuration_error_is_one_clear_line(store: Settings) -> None:
    done = _hub_token(store, HUB_ENVIRONMENT="production")  # production without HUB_BASE_URL is refused
    assert done.returncode == 2 and done.stdout == ""
    assert "error: configuration:" in done.stderr and "HUB_BASE_URL" in done.stderr
    assert "Traceback" not in done.stderr and KEY not in done.stderr

"""Revoking a client stops the access tokens it already holds (not only new ones), and client
authentication costs one scrypt whether the client id exists or not."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from hub.app import create_app
from hub.kit import utcnow
from hub.security import clients as client_module
from hub.security import revocation, tokens
from hub.settings import Settings
from hub.store.db import transaction
from hub.store.models import Client, Resource
from hub.unit_of_work import unit_of_work
from tests.security.conftest import SECRET_KEY, add_client, bearer, get_token, revoke_client, token_response
from tests.security.test_tokens import fhir_401, oauth_error, problem_401

HUB = str(Path(sys.executable).with_name("hub"))
ADMIN = "/admin/api"


class Monotonic:
    """An injectable ``time.monotonic``: the revocation cache's TTL passes only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks(monkeypatch: pytest.MonkeyPatch) -> Monotonic:
    """A fresh revocation cache (5 s TTL) on a clock that stands still until advanced."""
    clock = Monotonic()
    monkeypatch.setattr(revocation, "CACHE", revocation.RevocationCache(ttl=5.0, clock=clock))
    return clock


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The client ids whose revocation state was read from the store, in order."""
    seen: list[str] = []
    real = revocation.revoked_in_store

    def counting(database_url: str, client_id: str) -> bool:
        seen.append(client_id)
        return real(database_url, client_id)

    monkeypatch.setattr(revocation, "revoked_in_store", counting)
    return seen


def audit_events(settings: Settings) -> int:
    with transaction(settings.database_url) as session:
        return int(session.scalar(
            select(func.count()).select_from(Resource).where(Resource.resource_type == "AuditEvent")
        ) or 0)


def refused_as_revoked(api: TestClient, token: str) -> None:
    """The answer to a revoked token: the 401 ``invalid_token`` of any refused token, on every API."""
    response = api.get("/fhir/Patient", headers=bearer(token))
    assert "revoked" in fhir_401(response)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert token not in response.text and token not in response.headers["www-authenticate"]
    assert "revoked" in problem_401(api.get(f"{ADMIN}/messages", headers=bearer(token))).lower()
    assert "revoked" in problem_401(api.get("/referrals", headers=bearer(token))).lower()


# ---------------------------------------------------------------- tokens of a revoked client


def test_revoking_through_the_admin_api_stops_issued_tokens_at_once(
    api: TestClient, auth_settings: Settings, ticks: Monotonic, lookups: list[str]
) -> None:
    admin = add_client(auth_settings, "clinic-a", "admin")
    leaked = add_client(auth_settings, "clinic-a", "clinic")
    other = add_client(auth_settings, "clinic-a", "clinic")
    admin_token, leaked_token, other_token = (get_token(api, c) for c in (admin, leaked, other))
    for _ in range(3):
        assert api.get("/fhir/Patient", headers=bearer(leaked_token)).status_code == 200
        assert api.get("/fhir/Patient", headers=bearer(other_token)).status_code == 200
    # the steady state asks the store once per client and TTL, not once per request
    assert lookups.count(leaked.client_id) == 1 and lookups.count(other.client_id) == 1

    revoked = api.post(f"{ADMIN}/clients/{leaked.client_id}/revoke", headers=bearer(admin_token))
    assert revoked.status_code == 200, revoked.text
    audited = audit_events(auth_settings)
    # the clock stands still: the cached "not revoked" would still be fresh, yet the next request is refused
    refused_as_revoked(api, leaked_token)
    assert audit_events(auth_settings) == audited  # audited as any refused token: not at all
    expired = tokens.issue(secret=SECRET_KEY, client_id=other.client_id, tenant="clinic-a", role="clinic",
                           scope="system/*.cruds", fhir_user=None, now=utcnow() - timedelta(hours=1),
                           lifetime=timedelta(minutes=15))[0]
    assert "expired" in fhir_401(api.get("/fhir/Patient", headers=bearer(expired)))
    assert audit_events(auth_settings) == audited

    assert api.get("/fhir/Patient", headers=bearer(other_token)).status_code == 200
    assert api.get(f"{ADMIN}/clients", headers=bearer(admin_token)).status_code == 200
    description = oauth_error(token_response(api, leaked), 401, "invalid_client")
    assert leaked.client_secret and leaked.client_secret not in description
    listed = {c["client_id"]: c for c in api.get(f"{ADMIN}/clients", headers=bearer(admin_token)).json()}
    assert listed[leaked.client_id]["revoked"] is True and listed[other.client_id]["revoked"] is False


def test_revoking_through_the_cli_function_stops_issued_tokens_at_once(
    api: TestClient, auth_settings: Settings, ticks: Monotonic, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub import cli
    from hub import settings as settings_module

    leaked = add_client(auth_settings, "clinic-a", "system")
    other = add_client(auth_settings, "clinic-a", "system")
    leaked_token, other_token = get_token(api, leaked), get_token(api, other)
    assert api.get("/fhir/Patient", headers=bearer(leaked_token)).status_code == 200
    monkeypatch.setattr(settings_module, "get_settings", lambda: auth_settings)
    cli.clients_revoke(client_id=leaked.client_id, tenant="clinic-a")
    refused_as_revoked(api, leaked_token)
    assert api.get("/fhir/Patient", headers=bearer(other_token)).status_code == 200
    oauth_error(token_response(api, leaked), 401, "invalid_client")


def test_a_revocation_by_another_process_is_seen_within_the_ttl(
    api: TestClient, auth_settings: Settings, ticks: Monotonic
) -> None:
    """``hub clients revoke`` against a running server: that process cannot reach this one's cache,
    so the revocation is seen once the cached state is older than the TTL (here: the clock moves)."""
    leaked = add_client(auth_settings, "clinic-a", "clinic")
    other = add_client(auth_settings, "clinic-a", "clinic")
    leaked_token, other_token = get_token(api, leaked), get_token(api, other)
    assert api.get("/fhir/Patient", headers=bearer(leaked_token)).status_code == 200
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    result = subprocess.run(
        [HUB, "clients", "revoke", leaked.client_id, "--tenant", "clinic-a"],
        env={**env, "HUB_DATABASE_URL": auth_settings.database_url},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    ticks.now += 4.9  # still within the TTL: the cached state is trusted
    assert api.get("/fhir/Patient", headers=bearer(leaked_token)).status_code == 200
    ticks.now += 0.1  # the TTL has passed: asked again, and refused
    refused_as_revoked(api, leaked_token)
    assert api.get("/fhir/Patient", headers=bearer(other_token)).status_code == 200
    oauth_error(token_response(api, leaked), 401, "invalid_client")


def test_with_a_ttl_of_zero_every_request_asks_the_store(
    api: TestClient, auth_settings: Settings, monkeypatch: pytest.MonkeyPatch, lookups: list[str]
) -> None:
    monkeypatch.setattr(revocation, "CACHE", revocation.RevocationCache(ttl=0))
    client = add_client(auth_settings, "clinic-a", "clinic")
    token = get_token(api, client)
    assert api.get("/fhir/Patient", headers=bearer(token)).status_code == 200
    assert api.get("/fhir/Patient", headers=bearer(token)).status_code == 200
    assert lookups == [client.client_id, client.client_id]
    with unit_of_work(auth_settings) as session:  # as another process would: no hook in this one
        session.execute(update(Client).where(Client.client_id == client.client_id).values(revoked_at=utcnow()))
    refused_as_revoked(api, token)


def test_a_token_of_an_unregistered_client_is_refused(api: TestClient, ticks: Monotonic) -> None:
    forged = tokens.issue(secret=SECRET_KEY, client_id="never-registered", tenant="clinic-a", role="admin",
                          scope="system/*.cruds", fhir_user=None, now=utcnow(), lifetime=timedelta(minutes=15))[0]
    refused_as_revoked(api, forged)


def test_tenant_role_and_scope_still_come_from_the_token(
    api: TestClient, auth_settings: Settings, ticks: Monotonic
) -> None:
    """Only the revocation state is looked up: what the token may do is what it says."""
    admin = add_client(auth_settings, "clinic-a", "admin")
    b_system = add_client(auth_settings, "clinic-b", "system")

    def signed(**claims: Any) -> str:
        values = {"tenant": "clinic-a", "role": "admin", "scope": "system/*.cruds", **claims}
        return tokens.issue(secret=SECRET_KEY, client_id=admin.client_id, fhir_user=None, now=utcnow(),
                            lifetime=timedelta(minutes=15), **values)[0]

    listed = api.get(f"{ADMIN}/clients", headers=bearer(signed()))
    assert listed.status_code == 200 and admin.client_id in {c["client_id"] for c in listed.json()}
    other_tenant = api.get(f"{ADMIN}/clients", headers=bearer(signed(tenant="clinic-b"))).json()
    assert {c["client_id"] for c in other_tenant} == {b_system.client_id}
    assert api.get(f"{ADMIN}/clients", headers=bearer(signed(role="clinic"))).status_code == 403
    narrowed = get_token(api, admin, scope="system/Patient.rs")
    assert api.get("/fhir/Patient", headers=bearer(narrowed)).status_code == 200
    assert api.post("/fhir/Patient", json={"resourceType": "Patient"},
                    headers={**bearer(narrowed), "Content-Type": "application/fhir+json"}).status_code == 403


def test_a_client_registered_again_under_a_revoked_id_is_not_stale(
    auth_settings: Settings, ticks: Monotonic
) -> None:
    """Registering a client drops what this process cached about its id (e.g. a fresh store)."""
    revocation.CACHE.is_revoked(auth_settings.database_url, "reused-id", lambda: True)
    client = add_client(auth_settings, "clinic-a", "clinic", client_id="reused-id")
    with TestClient(create_app(auth_settings), base_url="http://testserver") as api:
        assert api.get("/fhir/Patient", headers=bearer(get_token(api, client))).status_code == 200


# ---------------------------------------------------------------- the cache itself


def test_the_cache_trusts_an_entry_for_the_ttl_and_forgets_on_demand() -> None:
    clock = Monotonic()
    cache = revocation.RevocationCache(ttl=5.0, clock=clock)
    answers = iter([False, True, False, True])
    asked: list[str] = []

    def lookup() -> bool:
        asked.append("x")
        return next(answers)

    assert cache.is_revoked("db", "c1", lookup) is False
    clock.now += 4.99
    assert cache.is_revoked("db", "c1", lookup) is False and len(asked) == 1
    clock.now += 0.01
    assert cache.is_revoked("db", "c1", lookup) is True and len(asked) == 2
    cache.forget("c1")
    assert cache.is_revoked("db", "c1", lookup) is False and len(asked) == 3
    assert cache.is_revoked("another-db", "c1", lookup) is True and len(asked) == 4  # per database


def test_a_lookup_racing_a_revocation_does_not_cache_its_stale_answer() -> None:
    cache = revocation.RevocationCache(ttl=60.0, clock=Monotonic())

    def stale_lookup() -> bool:
        cache.forget("c1")  # the revocation commits while the store is being read
        return False

    assert cache.is_revoked("db", "c1", stale_lookup) is False
    assert cache.is_revoked("db", "c1", lambda: True) is True  # asked again, not served the stale answer


def test_the_cache_is_bounded() -> None:
    cache = revocation.RevocationCache(ttl=60.0, clock=Monotonic(), max_entries=3)
    for n in range(10):
        cache.is_revoked("db", f"c{n}", lambda: False)
    assert len(cache._entries) <= 3


# ---------------------------------------------------------------- client enumeration


@pytest.fixture
def scrypt_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    calls: list[int] = []
    real = client_module._scrypt

    def counting(secret: bytes, salt: bytes) -> bytes:
        calls.append(1)
        return real(secret, salt)

    monkeypatch.setattr(client_module, "_scrypt", counting)
    yield calls


def test_every_secret_check_costs_one_scrypt_whether_the_client_exists_or_not(
    api: TestClient, auth_settings: Settings, scrypt_calls: list[int]
) -> None:
    known = add_client(auth_settings, "clinic-a", "clinic")
    revoked = add_client(auth_settings, "clinic-a", "clinic")
    revoke_client(auth_settings, revoked.client_id)
    secretless = add_client(auth_settings, "clinic-a", "system", with_secret=False)
    grant = {"grant_type": "client_credentials"}
    cases = {
        "wrong secret": {"client_id": known.client_id, "client_secret": "not-the-secret"},
        "unknown client": {"client_id": "no-such-client", "client_secret": "not-the-secret"},
        "revoked client": {"client_id": revoked.client_id, "client_secret": revoked.client_secret or ""},
        "secretless client": {"client_id": secretless.client_id, "client_secret": "anything"},
        "no client id": {},
    }
    bodies = set()
    for case, form in cases.items():
        scrypt_calls.clear()
        response = api.post("/auth/token", data={**grant, **form})
        oauth_error(response, 401, "invalid_client")
        bodies.add(response.text)
        assert len(scrypt_calls) == 1, case
    assert len(bodies) == 1  # one answer for all: nothing tells an unknown id from a wrong secret
    scrypt_calls.clear()
    assert token_response(api, known).status_code == 200
    assert len(scrypt_calls) == 1


def test_the_dummy_hash_matches_no_secret() -> None:
    assert not client_module._check_secret("", client_module._DUMMY_HASH)
    assert not client_module._check_secret("therapy-hub/none", client_module._DUMMY_HASH)

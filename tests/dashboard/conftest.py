"""Dashboard test helpers: an app with authentication on and an injectable clock, sign-in through the
form as a browser does it, and a second app on the same store (development flag, same secret key)
that writes the data the pages show."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from hub.app import create_app
from hub.deps import get_clock
from hub.kit import utcnow
from hub.security.clients import NewClient
from hub.settings import Settings
from hub.sync.config import SyncConfig
from hub.unit_of_work import unit_of_work
from sandboxes.webhook import SandboxReceiver
from tests.security.conftest import add_client, secured

WEBHOOK_SECRET = "dashboard-sandbox-secret-0123456789"
TENANT = "default"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Clock:
    """The app's clock: real time at the start, moved on by the tests."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def sign_in(web: TestClient, client_id: str, secret: str) -> httpx.Response:
    """Fill in the sign-in form (with the token of the form just fetched); the answer is not followed."""
    form = web.get("/dashboard/signin")
    assert form.status_code == 200, form.text
    return web.post("/dashboard/signin", follow_redirects=False,
                    data={"csrf": csrf_of(form.text), "client_id": client_id, "client_secret": secret})


def signed_in(web: TestClient, client: NewClient) -> str:
    """Sign in and return the session's CSRF token (from the overview page)."""
    response = sign_in(web, client.client_id, client.client_secret or "")
    assert response.status_code == 303 and response.headers["location"] == "/dashboard", response.text
    page = web.get("/dashboard")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


@pytest.fixture
def auth_settings(settings: Settings) -> Settings:
    return secured(settings)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def web_client(settings: Settings, clock: Clock | None = None, base_url: str = "http://testserver") -> TestClient:
    app = create_app(settings)
    if clock is not None:
        app.dependency_overrides[get_clock] = lambda: clock
    return TestClient(app, base_url=base_url)


@pytest.fixture
def web(auth_settings: Settings, clock: Clock) -> Iterator[TestClient]:
    """A browser on the dashboard (authentication on)."""
    with web_client(auth_settings, clock) as client:
        yield client


@pytest.fixture
def api(auth_settings: Settings) -> Iterator[TestClient]:
    """The hub's API on the same store, for writing test data (development flag, same secret key)."""
    with web_client(auth_settings.model_copy(update={"auth_disabled": True})) as client:
        yield client


@pytest.fixture
def admin(auth_settings: Settings, web: TestClient) -> NewClient:
    return add_client(auth_settings, TENANT, "admin")


@pytest.fixture
def receiver() -> Iterator[SandboxReceiver]:
    with SandboxReceiver(secret=WEBHOOK_SECRET) as sandbox:
        yield sandbox


def add_webhook(settings: Settings, name: str, url: str, tenant: str = TENANT, **options: Any) -> None:
    values = {"max_attempts": 3, "timeout_seconds": 2.0, "backoff_base_seconds": 1.0, "backoff_max_seconds": 60.0}
    with unit_of_work(settings) as session:
        SyncConfig(session, tenant=tenant, settings=settings).add_connector(
            name=name, kind="webhook", config={"url": url, "secret": WEBHOOK_SECRET}, **{**values, **options})


def add_route(settings: Settings, name: str, resource_type: str, connector: str, tenant: str = TENANT) -> None:
    with unit_of_work(settings) as session:
        SyncConfig(session, tenant=tenant, settings=settings).add_route(
            name=name, resource_type=resource_type, connector=connector)

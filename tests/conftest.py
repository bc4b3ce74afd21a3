"""Shared fixtures: the store on SQLite and on PostgreSQL, and an API client for each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from hub.app import create_app
from hub.settings import Settings
from hub.store.db import engine_for
from hub.store.migrate import upgrade
from hub.store.models import Base
from tests.pg import fresh_database, postgres_server

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session", params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated, empty store (one per backend per test process)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'hub.db'}"
        upgrade(url)
        yield url
        return
    admin = request.getfixturevalue("postgres_admin_url")
    with fresh_database(admin) as raw:
        upgrade(raw)
        yield raw


def _truncate(url: str) -> None:
    engine = engine_for(url)
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def settings(db_url: str) -> Iterator[Settings]:
    _truncate(db_url)
    # most tests exercise behaviour, not access: the explicit development flag; tests/security enable auth
    yield Settings(database_url=db_url, environment="test", base_url="", max_body_bytes=64 * 1024, auth_disabled=True,
                   rate_limit_per_minute=0)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://testserver") as test_client:
        yield test_client

"""The Alembic migrations build the same schema as the models, and go down and up again."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from hub.store import migrate
from hub.store.db import engine_for
from hub.store.models import Base


def test_migrated_schema_matches_models(db_url: str) -> None:
    with engine_for(db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_downgrade_to_base_and_upgrade_again(db_url: str) -> None:
    try:
        migrate.downgrade(db_url, "base")
        assert "resources" not in inspect(engine_for(db_url)).get_table_names()
    finally:
        migrate.upgrade(db_url)
    assert migrate.current(db_url) == migrate.head()
    assert {"resources", "resource_versions", "search_tokens", "tenants"} <= set(
        inspect(engine_for(db_url)).get_table_names()
    )


def test_every_table_carries_a_tenant() -> None:
    for table in Base.metadata.sorted_tables:
        # used_assertions: a global replay cache of jti; signin_failures: counted before anyone is
        # signed in, by client id and address, so before the tenant is known
        if table.name in ("tenants", "used_assertions", "signin_failures"):
            continue
        assert "tenant_id" in table.c, f"{table.name} has no tenant_id"

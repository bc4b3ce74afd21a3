"""`hub clients` and `hub secrets rotate` through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from hub.settings import Settings
from hub.store.db import transaction
from hub.store.models import ConnectorInstance
from hub.sync.config import SyncConfig

HUB = str(Path(sys.executable).with_name("hub"))


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HUB, *args], env=env, capture_output=True, text=True, timeout=120)


def test_clients_add_list_revoke_and_token(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HUB_")}, "HUB_DATABASE_URL": url}
    assert _run(env, "db", "upgrade").returncode == 0
    added = _run(env, "clients", "add", "Riverside EMR", "--role", "system", "--scopes", "system/Patient.rs",
                 "--client-id", "riverside")
    assert added.returncode == 0, added.stderr
    secret = added.stdout.split("client_secret", 1)[1].split()[0]
    listed = _run(env, "clients", "list")
    assert "riverside" in listed.stdout and secret not in listed.stdout
    bad = _run(env, "clients", "add", "x", "--role", "referrer")
    assert bad.returncode == 2 and "fhir_user" in bad.stderr
    assert _run(env, "clients", "revoke", "riverside").returncode == 0
    assert "yes" in _run(env, "clients", "list").stdout


def test_secrets_rotate_re_encrypts_with_the_new_key(tmp_path: Path) -> None:
    from hub.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'hub.db'}"
    upgrade(url)
    old = Settings(database_url=url, secret_key="old-key-0123456789abcdef")
    with transaction(url) as session:
        from datetime import datetime

        from hub.store.repository import ensure_tenant

        ensure_tenant(session, tenant_id="default", name="c", now=datetime(2026, 1, 1))
        SyncConfig(session, tenant="default", settings=old).add_connector(
            name="emr", kind="webhook", config={"url": "http://127.0.0.1:9/x", "secret": "partner-secret-0123456789"})
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HUB_")}, "HUB_DATABASE_URL": url,
           "HUB_SECRET_KEY": "new-key-0123456789abcdef", "HUB_SECRET_KEY_PREVIOUS": "old-key-0123456789abcdef"}
    result = _run(env, "secrets", "rotate")
    assert result.returncode == 0, result.stderr
    assert "1 connector" in result.stdout
    new_only = Settings(database_url=url, secret_key="new-key-0123456789abcdef")
    with transaction(url) as session:
        instance = session.scalars(select(ConnectorInstance)).one()
        config = SyncConfig(session, tenant="default", settings=new_only).connector_config(instance)
        assert config["secret"] == "partner-secret-0123456789"
        assert "partner-secret" not in instance.config

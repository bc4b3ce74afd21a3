"""The CLI and the API ``client`` on one store: the CLI reads its settings from the HUB_* environment."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from hub.settings import Settings, get_settings


@contextmanager
def cli_environment(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI's settings are ``settings`` (through the environment, with the settings cache cleared)."""
    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_BROKER_URL", settings.broker_url)
    monkeypatch.setenv("HUB_ENVIRONMENT", "test")
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key.get_secret_value())
    monkeypatch.setenv("HUB_SECRET_KEY_PREVIOUS", settings.secret_key_previous)
    monkeypatch.setenv("HUB_DEFAULT_TENANT", settings.default_tenant)
    get_settings.cache_clear()
    try:
        yield
    finally:
        get_settings.cache_clear()

"""The connector registry: discovery from entry points, config validation, failing fast."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import ClassVar

import pytest
from pydantic import BaseModel

from connectors import registry
from connectors.base import ConfigError, Connector, Delivery, HealthResult, SendResult
from connectors.registry import GROUP, ConnectorRegistry, RegistryError
from connectors.webhook import WebhookConfig, WebhookConnector
from sandboxes.webhook import SandboxReceiver
from tests.connectors.conftest import SECRET, make_delivery

WEBHOOK = "connectors.webhook:WebhookConnector"


def ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=GROUP)


class EchoConfig(BaseModel):
    greeting: str = "hi"


class EchoConnector:
    """A stand-in plugin that claims the slug "webhook" (to provoke a duplicate)."""

    slug: ClassVar[str] = "webhook"
    Config: ClassVar[type[BaseModel]] = EchoConfig

    def __init__(self, config: EchoConfig) -> None:
        self.config = config

    def send(self, delivery: Delivery) -> SendResult:
        return SendResult(status=None, remote_id=None, detail="echo", duration_ms=0.0)

    def health(self) -> HealthResult:
        return HealthResult(ok=True, detail="echo", duration_ms=0.0)

    def close(self) -> None:
        pass


class NoSlug:
    Config = EchoConfig


NOT_A_CLASS = object()


def test_installed_entry_points_register_the_webhook_connector() -> None:
    registry.default_registry.cache_clear()
    assert "webhook" in registry.available()
    assert registry.get("webhook") is WebhookConnector


def test_create_from_a_dict_and_send(sandbox: SandboxReceiver) -> None:
    connector = registry.create("webhook", {"url": sandbox.url, "secret": SECRET, "timeout_seconds": 3})
    try:
        assert isinstance(connector, WebhookConnector) and isinstance(connector, Connector)
        assert isinstance(connector.config, WebhookConfig) and connector.config.timeout_seconds == 3
        assert connector.send(make_delivery()).status == 200
    finally:
        connector.close()
    assert sandbox.deliveries[0].signature_valid


def test_config_defaults() -> None:
    config = registry.validate_config("webhook", {"url": "https://partner.example/hook", "secret": SECRET})
    assert isinstance(config, WebhookConfig)
    assert config.timeout_seconds == 10 and config.health_url is None and config.verify_tls
    assert SECRET not in repr(config) and SECRET not in str(config.model_dump())


def test_bad_config_names_fields_never_values() -> None:
    bad = {
        "url": "ftp//not-a-url-value",
        "secret": "short-Secret",
        "timeout_seconds": -5,
        "colour": "blue-ish",
    }
    with pytest.raises(ConfigError) as caught:
        registry.create("webhook", bad)
    error = caught.value
    assert set(error.fields) == {"url", "secret", "timeout_seconds", "colour"}
    message = str(error)
    for field in ("url", "secret", "timeout_seconds", "colour"):
        assert field in message
    for value in ("ftp//not-a-url-value", "short-Secret", "-5", "blue-ish", "12"):  # 12 = len(secret)
        assert value not in message
    assert error.__cause__ is None and error.__context__ is None


def test_missing_config_fields() -> None:
    with pytest.raises(ConfigError) as caught:
        registry.create("webhook", {})
    assert set(caught.value.fields) == {"url", "secret"}
    assert "missing" in str(caught.value)


def test_unknown_slug_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown connector 'carrier_pigeon'"):
        registry.get("carrier_pigeon")


def test_registry_from_given_entry_points() -> None:
    reg = ConnectorRegistry([ep("webhook", WEBHOOK)])
    assert reg.available() == ["webhook"] and "webhook" in reg and len(reg) == 1
    assert list(reg) == ["webhook"]


def test_the_same_registration_seen_twice_is_not_a_duplicate() -> None:
    reg = ConnectorRegistry([ep("webhook", WEBHOOK), ep("webhook", WEBHOOK)])
    assert reg.available() == ["webhook"]


def test_duplicate_slugs_fail_fast() -> None:
    with pytest.raises(RegistryError, match="duplicate connector slug 'webhook'"):
        ConnectorRegistry([ep("webhook", WEBHOOK), ep("webhook", f"{__name__}:EchoConnector")])


def test_entry_point_name_must_match_the_class_slug() -> None:
    with pytest.raises(RegistryError, match="slug is 'webhook', not 'hook'"):
        ConnectorRegistry([ep("hook", WEBHOOK)])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (ep("ghost", "connectors.no_such_module:Ghost"), "cannot be loaded"),
        (ep("ghost", f"{__name__}:NoSuchName"), "cannot be loaded"),
        (ep("not_a_class", f"{__name__}:NOT_A_CLASS"), "is not a class"),
        (ep("noslug", f"{__name__}:NoSlug"), "slug is None"),
        (ep("Bad-Name", WEBHOOK), "must match"),
    ],
)
def test_broken_entry_points_fail_fast(entry: EntryPoint, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        ConnectorRegistry([entry])


def test_a_plugin_registry_creates_its_own_config() -> None:
    reg = ConnectorRegistry([ep("webhook", f"{__name__}:EchoConnector")])
    connector = reg.create("webhook", {"greeting": "hello"})
    assert isinstance(connector, EchoConnector) and connector.config.greeting == "hello"

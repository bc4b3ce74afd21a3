"""Fixtures for connector tests: a real sandbox receiver on 127.0.0.1 and connector factories."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from connectors.base import Delivery
from connectors.webhook import WebhookConfig, WebhookConnector
from sandboxes.webhook import SandboxReceiver

SECRET = "test-webhook-secret-0123456789"
PAYLOAD = json.dumps({"resourceType": "ServiceRequest", "id": "sr-1", "status": "active"}).encode()


@pytest.fixture
def sandbox() -> Iterator[SandboxReceiver]:
    with SandboxReceiver(port=0, secret=SECRET) as receiver:
        yield receiver


def make_delivery(key: str = "job-1", payload: bytes = PAYLOAD, **overrides: Any) -> Delivery:
    fields: dict[str, Any] = {
        "payload": payload,
        "content_type": "application/fhir+json",
        "idempotency_key": key,
        "correlation_id": "corr-123",
        "resource_type": "ServiceRequest",
        "resource_id": "sr-1",
        "event": "ServiceRequest.create",
    }
    fields.update(overrides)
    return Delivery(**fields)


@pytest.fixture
def make_connector() -> Iterator[Callable[..., WebhookConnector]]:
    made: list[WebhookConnector] = []

    def factory(url: str, *, clock: Callable[[], float] | None = None, **config: Any) -> WebhookConnector:
        settings = {"url": url, "secret": SECRET, "timeout_seconds": 2.0, **config}
        connector = WebhookConnector(WebhookConfig(**settings), clock=clock or time.time)
        made.append(connector)
        return connector

    yield factory
    for connector in made:
        connector.close()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

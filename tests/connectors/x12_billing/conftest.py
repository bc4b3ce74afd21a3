"""A real sandbox clearinghouse (SFTP + HTTP on 127.0.0.1) and connectors pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from connectors.x12_billing import X12BillingConnector
from sandboxes.clearinghouse import SandboxClearinghouse


@pytest.fixture
def house() -> Iterator[SandboxClearinghouse]:
    with SandboxClearinghouse() as sandbox:
        yield sandbox


@pytest.fixture
def connect(house: SandboxClearinghouse) -> Iterator[Callable[..., X12BillingConnector]]:
    made: list[X12BillingConnector] = []

    def factory(transport: str = "sftp", **overrides: Any) -> X12BillingConnector:
        connector = X12BillingConnector(house.connector_config(transport, **overrides))  # type: ignore[arg-type]
        made.append(connector)
        return connector

    yield factory
    for connector in made:
        connector.close()

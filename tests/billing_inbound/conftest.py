"""A real sandbox clearinghouse (SFTP + HTTP on 127.0.0.1) and the hub's connector to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.x12_billing import X12BillingConnector
from hub.settings import Settings
from hub.sync.config import SyncConfig
from hub.unit_of_work import unit_of_work
from sandboxes.clearinghouse import SandboxClearinghouse
from tests.billing_inbound.support import TENANT, ensure


@pytest.fixture
def house() -> Iterator[SandboxClearinghouse]:
    with SandboxClearinghouse() as sandbox:
        yield sandbox


@pytest.fixture
def connector_id(settings: Settings, house: SandboxClearinghouse) -> int:
    """The ``clearinghouse`` connector of the tenant, over SFTP to the sandbox."""
    ensure(settings)
    with unit_of_work(settings) as session:
        instance = SyncConfig(session, tenant=TENANT, settings=settings).add_connector(
            name="clearinghouse", kind="x12_billing", config=house.connector_config("sftp"))
        return int(instance.id)


@pytest.fixture
def uploader(house: SandboxClearinghouse) -> Iterator[X12BillingConnector]:
    connector = X12BillingConnector(house.connector_config("sftp"))  # type: ignore[arg-type]
    yield connector
    connector.close()

"""The store with a week of visits (put through /fhir), a real sandbox clearinghouse, and an
``x12_billing`` connector with a billing profile pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from hub.settings import Settings
from hub.sync.config import SyncConfig
from hub.unit_of_work import unit_of_work
from sandboxes.clearinghouse import SandboxClearinghouse
from tests.billing.scenario import billing_profile, load_week

CONNECTOR = "clearinghouse"


@pytest.fixture
def house() -> Iterator[SandboxClearinghouse]:
    with SandboxClearinghouse() as sandbox:
        yield sandbox


@pytest.fixture
def clinic(client: TestClient, settings: Settings, house: SandboxClearinghouse) -> TestClient:
    """The API client of a store holding the week, with the clearinghouse connector configured."""
    load_week(client)
    with unit_of_work(settings) as session:
        SyncConfig(session, tenant=settings.default_tenant, settings=settings).add_connector(
            name=CONNECTOR, kind="x12_billing", config=house.connector_config("sftp", billing=billing_profile()))
    return client

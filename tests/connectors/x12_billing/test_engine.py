"""A claim file queued by the hub (``Outbox.send_raw``, event ``x12.837P``) is delivered by the sync
engine through the ``x12_billing`` connector to the sandbox clearinghouse, once."""

from __future__ import annotations

from fastapi.testclient import TestClient

from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.sync.config import SyncConfig
from hub.sync.delivery import deliver
from hub.sync.outbox import Outbox
from hub.unit_of_work import unit_of_work
from sandboxes.clearinghouse import SandboxClearinghouse
from tests.connectors.x12_billing.claims import simple_file


def test_the_engine_delivers_a_claim_file(client: TestClient, settings: Settings, house: SandboxClearinghouse) -> None:
    # (the app's start creates the default tenant)
    tenant = settings.default_tenant
    with unit_of_work(settings) as session:
        SyncConfig(session, tenant=tenant, settings=settings).add_connector(
            name="clearinghouse", kind="x12_billing", config=house.connector_config("sftp"))
    with unit_of_work(settings) as session:
        message = Outbox(session, tenant=tenant, settings=settings).send_raw(
            connector="clearinghouse", raw=simple_file().decode(), event="x12.837P", kind="x12_billing")
        [job] = repo.jobs_of(session, message_id=message.id)
        job_id = job.id
    assert deliver(settings, job_id) is None
    with unit_of_work(settings) as session:
        [job] = repo.jobs_of(session, message_id=message.id)
        assert job.status == "succeeded"
        [record] = house.claim_files
        assert record.sha256 and record.accepted_sets == 1 and record.claims == ("PCN1",)
        assert job.remote_id == record.name

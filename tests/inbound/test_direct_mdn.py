"""Direct MDNs applied to the delivery they answer (matched by Original-Message-ID = the job's
remote_id), against the sandbox HISP: a delivery the HISP accepted awaits its MDN; processed
confirms it (succeeded), dispatched is one more event, failed sends the job back to retry then dead
letter, and no MDN within the connector's timeout fails it the same way (the beat sweep), which
never touches a job that succeeded before confirmations were awaited."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from connectors.base import Delivery
from connectors.direct import DirectConnector
from hub.inbound.direct import DirectListener, load_identity
from hub.inbound.direct_mdn import sweep_mdn_timeouts
from hub.kit import utcnow
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.sync.config import SyncConfig
from hub.sync.confirmations import sweep_unconfirmed
from hub.sync.delivery import deliver
from hub.sync.outbox import Outbox
from hub.unit_of_work import unit_of_work
from sandboxes.hisp import SandboxHisp
from tests.connectors.direct.test_connector import bundle
from workers.app import HOUSEKEEPING, make_celery

NAME = "clinic-direct"


@pytest.fixture
def hisp() -> Iterator[SandboxHisp]:
    with SandboxHisp() as server:
        yield server


@pytest.fixture
def listener(settings: Settings, hisp: SandboxHisp) -> Iterator[DirectListener]:
    tenant = settings.default_tenant
    with unit_of_work(settings) as session:
        SyncConfig(session, tenant=tenant, settings=settings).add_connector(
            name=NAME, kind="direct", config=hisp.connector_config(mdn_timeout_minutes=1), max_attempts=2,
            backoff_base_seconds=0.05, backoff_max_seconds=0.1)
    identity = load_identity(settings, tenant=tenant, connector=NAME)
    with DirectListener(settings, tenant=tenant, source=NAME, identity=identity) as running:
        yield running


def _delivered(settings: Settings) -> tuple[str, int]:
    """A plan queued to the Direct connector and sent through the HISP: (message id, job id)."""
    with unit_of_work(settings) as session:
        message = Outbox(session, tenant=settings.default_tenant, settings=settings).send_raw(
            connector=NAME, raw=bundle().decode(), event="Task.create")
        message_id = message.id
        [job] = repo.jobs_of(session, message_id=message_id)
        job_id = job.id
    assert deliver(settings, job_id) is None
    return message_id, job_id


def _job(client: TestClient, message_id: str) -> tuple[dict, list[dict]]:
    view = client.get(f"/admin/api/messages/{message_id}").json()
    [job] = view["jobs"]
    return job, view["events"]


def test_processed_and_dispatched_mdns_are_events_of_the_delivered_message(
        client: TestClient, settings: Settings, hisp: SandboxHisp, listener: DirectListener) -> None:
    message_id, job_id = _delivered(settings)
    [received] = hisp.wait_for(1)
    job, events = _job(client, message_id)
    assert job["status"] == "awaiting" and job["confirm_by"] and job["finished_at"] is None
    assert not any(e["event"] == "acknowledged" for e in events)  # accepted by the HISP, not confirmed yet
    hisp.send_mdn(received, host="127.0.0.1", port=listener.port)
    job, _ = _job(client, message_id)
    assert job["status"] == "succeeded" and job["finished_at"]
    hisp.send_mdn(received, host="127.0.0.1", port=listener.port, disposition="dispatched")
    again, events = _job(client, message_id)
    assert again == job  # the final destination's word: one more event, the job stays as it was
    details = [e["detail"] for e in events if e["event"] == "acknowledged" and e["job_id"] == job_id]
    assert details == ["MDN processed", "MDN dispatched (final destination)"]
    # a processed MDN was received: the timeout does not fail the job
    assert sweep_mdn_timeouts(settings, now=utcnow() + timedelta(minutes=5)) == 0
    assert _job(client, message_id)[0]["status"] == "succeeded"


def test_failed_mdn_sends_the_job_back_to_retry_then_the_timeout_to_dead_letter(
        client: TestClient, settings: Settings, hisp: SandboxHisp, listener: DirectListener) -> None:
    message_id, job_id = _delivered(settings)
    [first] = hisp.wait_for(1)
    hisp.send_mdn(first, host="127.0.0.1", port=listener.port, disposition="failed")
    job, events = _job(client, message_id)
    assert job["status"] == "retrying"
    assert any(e["event"] == "failed" and "Direct MDN failed" in (e["detail"] or "") for e in events)
    time.sleep(0.2)  # past the backoff (at most 0.1 s): the retry is due
    assert deliver(settings, job_id) is None  # the retry is sent again, with the same Message-ID
    second = hisp.wait_for(2)[1]
    assert second.message_id == first.message_id
    # (the sandbox names its MDN after the original: a second failed MDN would be a repeat, so the
    # second attempt fails by the timeout) the last attempt failed: dead letter
    assert sweep_mdn_timeouts(settings, now=utcnow() + timedelta(minutes=2)) == 1
    job, events = _job(client, message_id)
    assert job["status"] == "dead"
    assert client.get(f"/admin/api/messages/{message_id}").json()["status"] == "dead"


def test_failure_dsn_sends_the_job_back_to_retry(
        client: TestClient, settings: Settings, hisp: SandboxHisp, listener: DirectListener) -> None:
    message_id, _ = _delivered(settings)
    [received] = hisp.wait_for(1)
    hisp.send_dsn(received, host="127.0.0.1", port=listener.port)
    job, events = _job(client, message_id)
    assert job["status"] == "retrying"
    assert any(e["event"] == "failed" and "Direct MDN failed/dsn" in (e["detail"] or "") for e in events)


def test_no_processed_mdn_within_the_timeout_fails_the_job(
        client: TestClient, settings: Settings, hisp: SandboxHisp, listener: DirectListener) -> None:
    message_id, job_id = _delivered(settings)
    hisp.wait_for(1)  # the HISP never answers
    assert sweep_mdn_timeouts(settings, now=utcnow() + timedelta(seconds=30)) == 0  # not yet due
    assert sweep_mdn_timeouts(settings, now=utcnow() + timedelta(minutes=2)) == 1
    job, events = _job(client, message_id)
    assert job["status"] == "retrying"
    assert any("no processed Direct MDN within 1 minutes" in (e["detail"] or "") for e in events)
    assert sweep_mdn_timeouts(settings, now=utcnow() + timedelta(minutes=2)) == 0  # not twice


def test_a_job_that_succeeded_before_mdns_were_awaited_is_never_swept(
        client: TestClient, settings: Settings, hisp: SandboxHisp, listener: DirectListener) -> None:
    message_id, job_id = _delivered(settings)
    hisp.wait_for(1)
    with unit_of_work(settings) as session:  # as the hub recorded it before: succeeded at the HISP's 250
        old = repo.job_by_id(session, job_id=job_id)
        assert old is not None
        old.status, old.finished_at = "succeeded", utcnow() - timedelta(days=2)
    # the first sweep after the deploy: no MDN ever came, but the job is not awaiting one
    assert sweep_unconfirmed(settings, now=utcnow() + timedelta(days=1)) == 0
    assert _job(client, message_id)[0]["status"] == "succeeded"


def test_mdn_for_no_known_delivery_is_kept_and_accepted(
        client: TestClient, settings: Settings, hisp: SandboxHisp, listener: DirectListener) -> None:
    with DirectConnector(hisp.connector_config()) as connector:  # sent outside the hub: no job knows it
        connector.send(Delivery(payload=bundle(), content_type="application/fhir+json", idempotency_key="x",
                                correlation_id="c", resource_type="Task", resource_id="t1", event="Task.create"))
    [received] = hisp.wait_for(1)
    hisp.send_mdn(received, host="127.0.0.1", port=listener.port)
    [stored] = client.get("/admin/api/messages", params={"source": NAME}).json()["items"]
    assert stored["status"] != "rejected"


def test_the_timeout_sweep_is_scheduled_every_minute_and_quiet() -> None:
    app = make_celery("memory://")
    assert app.conf.beat_schedule["confirmation-timeouts"] == {"task": "hub.confirmation_timeouts", "schedule": 60.0}
    assert "direct-mdn-timeouts" not in app.conf.beat_schedule  # one sweep of every awaiting job
    app.loader.import_default_modules()
    # the old name stays a task, for a beat or a queue of an earlier release
    assert {"hub.confirmation_timeouts", "hub.direct_mdn_timeouts"} <= set(app.tasks)
    assert {"hub.confirmation_timeouts", "hub.direct_mdn_timeouts"} <= HOUSEKEEPING

"""Fixtures and helpers of the sync engine tests in process, without workers.

Services and task functions are called directly with a real store (SQLite and PostgreSQL) and an
embedded broker file per test where the published tasks just sit (no worker, never eager mode).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.app import ensure_default_tenant
from hub.fhir.service import FhirService, Stored
from hub.kit import utcnow
from hub.settings import Settings, get_settings
from hub.store.db import transaction
from hub.store.models import ConnectorInstance, DeliveryJob, Message, MessageEvent
from hub.sync.actions import SyncActions
from hub.sync.config import SyncConfig
from hub.sync.engine import DeliveryEngine
from hub.sync.inbox import Inbox
from hub.sync.outbox import Outbox
from hub.unit_of_work import ENQUEUE_KEY, unit_of_work
from sandboxes.webhook import SandboxReceiver
from tests.sync.conftest import SECRET

TENANT = "default"
NAME = "Quetzalcoatl"  # a patient name that no ciphertext or error message would contain by chance


@pytest.fixture(autouse=True)
def store(settings: Settings) -> Settings:
    ensure_default_tenant(settings)
    return settings


# ---------------------------------------------------------------- helpers


def config(session: Any, settings: Settings) -> SyncConfig:
    return SyncConfig(session, tenant=TENANT, settings=settings)


def inbox(session: Any, settings: Settings, **options: Any) -> Inbox:
    return Inbox(session, tenant=TENANT, settings=settings, **options)


def outbox(session: Any, settings: Settings, **options: Any) -> Outbox:
    return Outbox(session, tenant=TENANT, settings=settings, **options)


def engine(session: Any, settings: Settings, **options: Any) -> DeliveryEngine:
    return DeliveryEngine(session, settings=settings, **options)


def actions(session: Any, settings: Settings, **options: Any) -> SyncActions:
    return SyncActions(session, tenant=TENANT, settings=settings, **options)


def add_webhook(settings: Settings, name: str, url: str, **options: Any) -> int:
    values = {
        "max_attempts": 3,
        "timeout_seconds": 2.0,
        "backoff_base_seconds": 1.0,
        "backoff_max_seconds": 60.0,
    }
    values.update(options)
    with unit_of_work(settings) as session:
        return (
            config(session, settings)
            .add_connector(name=name, kind="webhook", config={"url": url, "secret": SECRET}, **values)
            .id
        )


def add_route(settings: Settings, name: str, resource_type: str, connector: str, **options: Any) -> int:
    with unit_of_work(settings) as session:
        return (
            config(session, settings)
            .add_route(name=name, resource_type=resource_type, connector=connector, **options)
            .id
        )


def write(settings: Settings, op: Callable[[FhirService], Any]) -> tuple[Any, list[int]]:
    """One FHIR write through the FHIR service with the sync listener, as the API does it."""
    with unit_of_work(settings) as session:
        fhir = FhirService(
            session,
            tenant=TENANT,
            base_url="http://testserver/fhir",
            listeners=[outbox(session, settings).on_change],
        )
        result = op(fhir)
        job_ids = list(session.info.get(ENQUEUE_KEY, []))
    return result, job_ids


def referral(patient: str = "p1", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
        **extra,
    }


def create(settings: Settings, resource: dict[str, Any]) -> tuple[Stored, list[int]]:
    result, job_ids = write(settings, lambda f: f.create(resource["resourceType"], resource))
    return result.stored, job_ids


def job_of(settings: Settings, job_id: int) -> DeliveryJob:
    with transaction(settings.database_url) as session:
        job = session.get(DeliveryJob, job_id)
        assert job is not None
        return job


def message_of(settings: Settings, message_id: str) -> Message:
    with transaction(settings.database_url) as session:
        message = session.get(Message, message_id)
        assert message is not None
        return message


def events_of(settings: Settings, message_id: str) -> list[MessageEvent]:
    with transaction(settings.database_url) as session:
        return list(
            session.scalars(
                select(MessageEvent).where(MessageEvent.message_id == message_id).order_by(MessageEvent.id)
            )
        )


def count(settings: Settings, model: type) -> int:
    with transaction(settings.database_url) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _name(session: Any, job: DeliveryJob) -> str:
    instance = session.get(ConnectorInstance, job.connector_id)
    assert instance is not None
    return instance.name


def connector_of(settings: Settings, job_id: int) -> str:
    with transaction(settings.database_url) as session:
        job = session.get(DeliveryJob, job_id)
        assert job is not None
        return _name(session, job)


def make_due(settings: Settings, job_id: int) -> None:
    """Test set-up: the job's backoff has elapsed."""
    with transaction(settings.database_url) as session:
        job = session.get(DeliveryJob, job_id)
        assert job is not None
        job.next_attempt_at = utcnow() - timedelta(seconds=1)


@pytest.fixture
def emr(settings: Settings, receiver: SandboxReceiver) -> str:
    """A webhook connector "emr" to the sandbox, with a route for ServiceRequest creates and updates."""
    add_webhook(settings, "emr", receiver.url + "/webhook")
    add_route(settings, "referrals", "ServiceRequest", "emr")
    return "emr"



@pytest.fixture
def task_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The environment the worker tasks read their settings from (``get_settings`` is cached)."""
    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_BROKER_URL", settings.broker_url)
    monkeypatch.setenv("HUB_ENVIRONMENT", "test")
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key.get_secret_value())
    monkeypatch.setenv("HUB_SECRET_KEY_PREVIOUS", settings.secret_key_previous)
    monkeypatch.setenv("HUB_DEFAULT_TENANT", settings.default_tenant)
    monkeypatch.setenv("HUB_REQUEUE_GRACE_SECONDS", "0")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()

"""The sync engine in process, without workers: routing into the outbox, delivery attempts against
the real sandbox receiver, retries, ordering, the sweeper, retry/replay and retention.

Services and task functions are called directly with a real store (SQLite and PostgreSQL) and an
embedded broker file per test where the published tasks just sit (no worker, never eager mode).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select, text

from hub.app import ensure_default_tenant
from hub.crypto import cipher, cipher_for, decrypt
from hub.errors import BadRequest, Conflict, NotFound
from hub.fhir.events import Change
from hub.fhir.service import FhirService, Stored
from hub.kit import utcnow
from hub.settings import Settings, get_settings
from hub.store.db import transaction
from hub.store.models import ConnectorInstance, DeliveryJob, Message, MessageEvent, Resource
from hub.sync import events as ev
from hub.sync.actions import SyncActions
from hub.sync.config import SyncConfig
from hub.sync.delivery import HELD_WAIT_SECONDS, ORDER_WAIT_SECONDS, deliver
from hub.sync.engine import DeliveryEngine, Outcome
from hub.sync.inbox import Inbox
from hub.sync.outbox import Outbox
from hub.unit_of_work import ENQUEUE_KEY, unit_of_work
from sandboxes.webhook import SandboxReceiver
from tests.sync.conftest import SECRET, queued_tasks

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


# ---------------------------------------------------------------- routing


def test_routes_match_by_resource_type_and_wildcard(settings: Settings, receiver: SandboxReceiver) -> None:
    add_webhook(settings, "emr", receiver.url + "/emr")
    add_webhook(settings, "archive", receiver.url + "/archive")
    add_route(settings, "referrals", "ServiceRequest", "emr")
    add_route(settings, "everything", "*", "archive")
    add_route(settings, "patients", "Patient", "emr")

    _, referral_jobs = create(settings, referral())
    assert sorted(connector_of(settings, j) for j in referral_jobs) == ["archive", "emr"]
    _, observation_jobs = create(
        settings, {"resourceType": "Observation", "status": "final", "code": {"text": "ROM"}}
    )
    assert [connector_of(settings, j) for j in observation_jobs] == ["archive"]
    assert count(settings, Message) == 2 and count(settings, DeliveryJob) == 3


def test_routes_match_by_interaction(settings: Settings, receiver: SandboxReceiver) -> None:
    add_webhook(settings, "on-create", receiver.url + "/c")
    add_webhook(settings, "on-update", receiver.url + "/u")
    add_webhook(settings, "on-delete", receiver.url + "/d")
    add_webhook(settings, "on-any", receiver.url + "/a")
    add_route(settings, "c", "ServiceRequest", "on-create", interactions="create")
    add_route(settings, "u", "ServiceRequest", "on-update", interactions="update")
    add_route(settings, "d", "ServiceRequest", "on-delete", interactions="delete")
    add_route(settings, "a", "ServiceRequest", "on-any", interactions="*")

    stored, created = create(settings, referral())
    _, updated = write(
        settings,
        lambda f: f.update("ServiceRequest", stored.id, {**referral(), "id": stored.id, "status": "revoked"}),
    )
    _, deleted = write(settings, lambda f: f.delete("ServiceRequest", stored.id))

    assert sorted(connector_of(settings, j) for j in created) == ["on-any", "on-create"]
    assert sorted(connector_of(settings, j) for j in updated) == ["on-any", "on-update"]
    assert sorted(connector_of(settings, j) for j in deleted) == ["on-any", "on-delete"]
    with transaction(settings.database_url) as session:
        events = session.scalars(
            select(Message.event).order_by(Message.created_at, Message.resource_version)
        ).all()
    assert events == ["ServiceRequest.create", "ServiceRequest.update", "ServiceRequest.delete"]


def test_a_deletion_is_delivered_with_the_id_of_the_deleted_resource(
    settings: Settings, receiver: SandboxReceiver
) -> None:
    add_webhook(settings, "emr", receiver.url + "/webhook")
    add_route(settings, "deletions", "ServiceRequest", "emr", interactions="delete")
    stored, created = create(settings, referral())
    assert created == []
    _, [job_id] = write(settings, lambda f: f.delete("ServiceRequest", stored.id))

    assert deliver(settings, job_id) is None
    assert job_of(settings, job_id).status == ev.SUCCEEDED, job_of(settings, job_id).last_error
    [delivery] = receiver.deliveries
    assert delivery.event == "ServiceRequest.delete"
    assert json.loads(delivery.body) == {"resourceType": "ServiceRequest", "id": stored.id}


def test_fhirpath_filter_decides(settings: Settings, receiver: SandboxReceiver) -> None:
    add_webhook(settings, "emr", receiver.url + "/webhook")
    add_route(settings, "active-only", "ServiceRequest", "emr", filter="status = 'active'")

    _, matched = create(settings, referral())
    _, unmatched = create(settings, referral(status="draft"))
    assert len(matched) == 1 and unmatched == []
    assert count(settings, Message) == 1  # no message for a write no route wants


@pytest.mark.parametrize(
    "expression",
    ["status = = 'active'", "status.(", "where(", "status active", "nosuchfunction()", "%undefined = 1"],
)
def test_an_invalid_filter_is_refused_when_the_route_is_created(
    settings: Settings, receiver: SandboxReceiver, expression: str
) -> None:
    add_webhook(settings, "emr", receiver.url + "/webhook")
    with pytest.raises(BadRequest, match="FHIRPath"), unit_of_work(settings) as session:
        config(session, settings).add_route(
            name="bad", resource_type="ServiceRequest", connector="emr", filter=expression
        )


def test_a_filter_that_fails_on_a_resource_does_not_match(
    settings: Settings, receiver: SandboxReceiver
) -> None:
    add_webhook(settings, "emr", receiver.url + "/webhook")
    # valid FHIRPath, but adding 1 to a string is an evaluation error on a resource that has a status
    add_route(settings, "broken", "ServiceRequest", "emr", filter="status + 1 > 0")
    add_route(settings, "fine", "Patient", "emr")
    stored, job_ids = create(settings, referral())
    assert job_ids == [] and count(settings, Message) == 0
    assert stored.id  # the write itself went through


def test_disabled_routes_and_no_routes_store_no_message(
    settings: Settings, receiver: SandboxReceiver
) -> None:
    _, job_ids = create(settings, referral())
    assert job_ids == []
    add_webhook(settings, "emr", receiver.url + "/webhook")
    add_route(settings, "off", "ServiceRequest", "emr", enabled=False)
    _, job_ids = create(settings, referral())
    assert job_ids == []
    assert count(settings, Message) == 0 and count(settings, DeliveryJob) == 0
    assert count(settings, Resource) == 2
    assert queued_tasks(settings) == []


def test_jobs_are_written_in_the_transaction_of_the_fhir_write(settings: Settings, emr: str) -> None:
    with pytest.raises(RuntimeError), unit_of_work(settings) as session:
        fhir = FhirService(
            session,
            tenant=TENANT,
            base_url="http://testserver/fhir",
            listeners=[outbox(session, settings).on_change],
        )
        fhir.create("ServiceRequest", referral())
        assert session.scalar(select(func.count()).select_from(DeliveryJob)) == 1  # visible inside
        raise RuntimeError("the request fails after the write")
    assert count(settings, Resource) == 0
    assert (
        count(settings, Message) == 0
        and count(settings, DeliveryJob) == 0
        and count(settings, MessageEvent) == 0
    )
    assert queued_tasks(settings) == []  # nothing published for a rolled-back transaction

    _, [job_id] = create(settings, referral())
    assert [t["job_id"] for t in queued_tasks(settings)] == [job_id]  # published after commit


def test_a_failed_transaction_bundle_leaves_no_job(settings: Settings, client: Any, emr: str) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": referral(), "request": {"method": "POST", "url": "ServiceRequest"}},
            {
                "resource": {"resourceType": "ServiceRequest", "status": "bogus"},
                "request": {"method": "POST", "url": "ServiceRequest"},
            },
        ],
    }
    response = client.post("/fhir", json=bundle, headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 400, response.text
    with transaction(settings.database_url) as session:  # only the AuditEvent of the failed request stays
        kept = set(session.scalars(select(Resource.resource_type)))
    assert kept <= {"AuditEvent"} and count(settings, DeliveryJob) == 0
    with transaction(settings.database_url) as session:
        statuses = session.scalars(select(Message.status)).all()
    assert statuses == ["rejected"]  # kept for inspection, never routed
    assert queued_tasks(settings) == []


# ---------------------------------------------------------------- message, events, encryption


def test_a_routed_write_stores_a_message_with_its_events(settings: Settings, emr: str) -> None:
    from hub.context import correlation_id

    token = correlation_id.set("corr-123")
    try:
        stored, [job_id] = create(settings, referral(note=[{"text": NAME}]))
    finally:
        correlation_id.reset(token)
    job = job_of(settings, job_id)
    message = message_of(settings, job.message_id)
    assert (message.status, message.event, message.resource_type, message.resource_id) == (
        "queued",
        "ServiceRequest.create",
        "ServiceRequest",
        stored.id,
    )
    assert message.correlation_id == "corr-123" and message.direction == "inbound"
    assert [e.event for e in events_of(settings, message.id)] == [
        "received",
        "translated",
        "routed",
        "queued",
    ]
    assert events_of(settings, message.id)[-1].job_id == job_id
    assert (job.status, job.attempts, job.max_attempts) == ("pending", 0, 3)
    assert job.idempotency_key == f"{message.id}.c{job.connector_id}.v1"  # message, connector, version
    assert job.ordering_key is not None and job.ordering_key.endswith("|Patient/p1")


def test_payloads_are_encrypted_at_rest_and_survive_a_key_rotation(
    settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    _, [job_id] = create(settings, referral(note=[{"text": NAME}]))
    with transaction(settings.database_url) as session:
        raw = session.execute(text("SELECT raw_payload FROM messages")).scalar_one()
        config = session.execute(text("SELECT config FROM connector_instances")).scalar_one()
    assert NAME not in raw and SECRET not in config
    box = cipher_for(settings)
    assert json.loads(decrypt(box, raw) or b"")["note"][0]["text"] == NAME

    other = settings.model_copy(update={"secret_key": SecretStr("another-secret-key-entirely")})
    with pytest.raises(ValueError, match="HUB_SECRET_KEY"):
        decrypt(cipher(other.secret_key.get_secret_value()), raw)
    with pytest.raises(ValueError, match="HUB_SECRET_KEY"), transaction(settings.database_url) as session:
        engine(session, other).claim(job_id)
    assert job_of(settings, job_id).attempts == 0  # the failed claim was rolled back

    rotated = settings.model_copy(
        update={
            "secret_key": SecretStr("the-new-secret-key-0123456789"),
            "secret_key_previous": settings.secret_key.get_secret_value(),
        }
    )
    assert deliver(rotated, job_id) is None
    assert job_of(settings, job_id).status == ev.SUCCEEDED
    assert json.loads(receiver.deliveries[0].body)["note"][0]["text"] == NAME


# ---------------------------------------------------------------- delivery attempts


def test_a_successful_attempt(settings: Settings, receiver: SandboxReceiver, emr: str) -> None:
    stored, [job_id] = create(settings, referral())
    assert deliver(settings, job_id) is None
    job = job_of(settings, job_id)
    assert (job.status, job.attempts, job.locked_until, job.last_error) == ("succeeded", 1, None, None)
    assert job.finished_at is not None
    message = message_of(settings, job.message_id)
    assert message.status == "delivered"
    events = events_of(settings, message.id)
    assert [e.event for e in events][-2:] == ["sent", "acknowledged"]
    assert events[-2].attempt == 1 and events[-2].duration_ms is not None and events[-2].job_id == job_id
    [delivery] = receiver.deliveries
    assert delivery.signature_valid and delivery.idempotency_key == job.idempotency_key
    assert delivery.correlation_id == message.correlation_id
    assert json.loads(delivery.body)["id"] == stored.id


def test_a_transient_failure_schedules_a_retry(
    settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    _, [job_id] = create(settings, referral())
    receiver.configure(status_override=503)
    before = utcnow()
    delay = deliver(settings, job_id)
    assert delay is not None and 0.5 <= delay <= 1.0  # first step 1 s, jitter 50-100 %
    job = job_of(settings, job_id)
    assert job.status == ev.RETRYING and job.attempts == 1 and job.locked_until is None
    assert job.next_attempt_at > before
    assert "503" in (job.last_error or "")
    failed = [e for e in events_of(settings, job.message_id) if e.event == ev.FAILED]
    assert len(failed) == 1 and "retry 2/3 in" in (failed[0].detail or "") and failed[0].attempt == 1
    assert message_of(settings, job.message_id).status == "retrying"
    assert deliver(settings, job_id) is None  # not due yet: nothing happens
    assert len(receiver.requests) == 1


def test_retry_after_is_honoured(settings: Settings, receiver: SandboxReceiver, emr: str) -> None:
    _, [job_id] = create(settings, referral())
    receiver.configure(status_override=503, retry_after=30)
    before = utcnow()
    delay = deliver(settings, job_id)
    assert delay is not None and delay >= 30
    assert job_of(settings, job_id).next_attempt_at >= before + timedelta(seconds=30)


def test_backoff_grows_exponentially_with_bounded_jitter(
    settings: Settings, receiver: SandboxReceiver
) -> None:
    add_webhook(settings, "emr", receiver.url, backoff_base_seconds=2.0, backoff_max_seconds=100.0)
    with transaction(settings.database_url) as session:
        instance = config(session, settings).get_connector("emr")
        low = engine(session, settings, rng=lambda: 0.0)
        high = engine(session, settings, rng=lambda: 0.999999)
        for attempt, step in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 64), (7, 100), (12, 100)]:
            assert low.backoff(instance, attempt, None) == pytest.approx(step * 0.5)
            assert high.backoff(instance, attempt, None) == pytest.approx(step, rel=1e-5)
        middle = engine(session, settings, rng=lambda: 0.5)
        assert middle.backoff(instance, 3, None) == pytest.approx(6.0)
        assert low.backoff(instance, 1, 45.0) == 45.0  # Retry-After is a floor
        assert high.backoff(instance, 6, 10.0) == pytest.approx(64, rel=1e-5)  # ... not a ceiling
        assert low.backoff(instance, 1, 10_000.0) == 100.0  # the connector's cap still holds


def test_a_permanent_failure_dead_letters_at_once(
    settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    _, [job_id] = create(settings, referral())
    receiver.configure(status_override=400)
    assert deliver(settings, job_id) is None
    job = job_of(settings, job_id)
    assert (job.status, job.attempts) == ("dead", 1) and job.finished_at is not None
    assert "400" in (job.last_error or "")
    message = message_of(settings, job.message_id)
    assert message.status == "dead" and "400" in (message.error or "")
    events = [(e.event, e.detail or "") for e in events_of(settings, message.id)]
    assert [e for e, _ in events][-2:] == ["failed", "dead-lettered"]
    assert events[-1][1].startswith("permanent error")


def test_the_last_attempt_dead_letters(settings: Settings, receiver: SandboxReceiver) -> None:
    add_webhook(settings, "emr", receiver.url + "/webhook", max_attempts=2)
    add_route(settings, "referrals", "ServiceRequest", "emr")
    _, [job_id] = create(settings, referral())
    receiver.configure(status_override=503)
    assert deliver(settings, job_id) is not None
    make_due(settings, job_id)
    assert deliver(settings, job_id) is None
    job = job_of(settings, job_id)
    assert (job.status, job.attempts) == ("dead", 2)
    assert "503" in (job.last_error or "")
    last = events_of(settings, job.message_id)[-1]
    assert last.event == ev.DEAD_LETTERED and (last.detail or "").startswith("2 attempts failed")
    assert len(receiver.requests) == 2


def test_a_job_is_attempted_by_one_claimant_only(
    settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    _, [job_id] = create(settings, referral())
    with transaction(settings.database_url) as session:
        claimed = engine(session, settings).claim(job_id)
    assert claimed is not None and claimed.attempt == 1
    assert deliver(settings, job_id) is None  # the lease is held by the first claimant
    assert receiver.requests == []
    with transaction(settings.database_url) as session:
        assert engine(session, settings).finish(claimed, Outcome(ok=True, detail="done")) is None
    assert deliver(settings, job_id) is None  # finished: nothing to do
    job = job_of(settings, job_id)
    assert (job.status, job.attempts) == ("succeeded", 1)
    assert receiver.requests == []


def test_an_expired_lease_is_taken_over_and_the_stale_outcome_ignored(
    settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    past = utcnow() - timedelta(minutes=10)
    with unit_of_work(settings) as session:
        sync = outbox(session, settings, clock=lambda: past)
        [job_id] = sync.on_change(
            Change(
                "ServiceRequest", "sr-1", 1, "create", referral(), json.dumps({**referral(), "id": "sr-1"})
            )
        )
    with transaction(settings.database_url) as session:
        stale = engine(session, settings, clock=lambda: past).claim(job_id)  # its lease ran out long ago
    assert stale is not None and stale.attempt == 1

    assert deliver(settings, job_id) is None  # claimable again: attempt 2 goes through
    assert len(receiver.deliveries) == 1
    with transaction(settings.database_url) as session:
        assert (
            engine(session, settings).finish(stale, Outcome(ok=False, detail="HTTP 503 from the stale attempt"))
            is None
        )
    job = job_of(settings, job_id)
    assert (job.status, job.attempts, job.last_error) == ("succeeded", 2, None)
    assert ev.FAILED not in [e.event for e in events_of(settings, job.message_id)]

    # the stale attempt reports while the attempt that took over is still running
    with unit_of_work(settings) as session:
        [job_id] = outbox(session, settings, clock=lambda: past).on_change(
            Change(
                "ServiceRequest",
                "sr-2",
                1,
                "create",
                referral("p2"),
                json.dumps({**referral("p2"), "id": "sr-2"}),
            )
        )
    with transaction(settings.database_url) as session:
        stale = engine(session, settings, clock=lambda: past).claim(job_id)
    with transaction(settings.database_url) as session:
        current = engine(session, settings).claim(job_id)
    assert stale is not None and current is not None and current.attempt == 2
    with transaction(settings.database_url) as session:
        assert (
            engine(session, settings).finish(stale, Outcome(ok=False, detail="HTTP 503 from the stale attempt"))
            is None
        )
    job = job_of(settings, job_id)
    assert (job.status, job.attempts, job.last_error) == ("running", 2, None)
    with transaction(settings.database_url) as session:
        assert engine(session, settings).finish(current, Outcome(ok=True, detail="done")) is None
    assert job_of(settings, job_id).status == "succeeded"
    assert ev.FAILED not in [e.event for e in events_of(settings, job.message_id)]


# ---------------------------------------------------------------- ordering per patient


def test_a_later_job_of_the_same_patient_and_connector_waits(
    settings: Settings, receiver: SandboxReceiver
) -> None:
    add_webhook(settings, "emr", receiver.url + "/emr")
    add_webhook(settings, "hep", receiver.url + "/hep")
    add_route(settings, "to-emr", "ServiceRequest", "emr")
    add_route(settings, "to-hep", "ServiceRequest", "hep")
    _, first = create(settings, referral("p1"))
    _, second = create(settings, referral("p1"))
    _, other = create(settings, referral("p2"))
    by_connector = {
        (connector_of(settings, j), n): j for n, jobs in enumerate([first, second, other]) for j in jobs
    }
    first_emr, second_emr, other_emr = (by_connector[("emr", n)] for n in range(3))
    first_hep, second_hep = by_connector[("hep", 0)], by_connector[("hep", 1)]

    receiver.configure(fail_keys={job_of(settings, first_emr).idempotency_key: 503})
    assert deliver(settings, first_emr) is not None  # fails: stays open (retrying)
    with transaction(settings.database_url) as session:
        assert engine(session, settings).blocked_by(second_emr) == (first_emr, "retrying")
        assert engine(session, settings).blocked_by(other_emr) is None
        assert engine(session, settings).blocked_by(second_hep) == (first_hep, "pending")

    before = utcnow()
    assert deliver(settings, second_emr) == ORDER_WAIT_SECONDS
    postponed = job_of(settings, second_emr)
    assert (postponed.status, postponed.attempts) == ("pending", 0) and postponed.next_attempt_at > before

    assert deliver(settings, other_emr) is None  # another patient is not held up
    assert deliver(settings, first_hep) is None  # nor is the same patient at another connector
    assert deliver(settings, second_hep) is None
    assert {job_of(settings, j).status for j in (other_emr, first_hep, second_hep)} == {"succeeded"}

    receiver.configure(fail_keys={})
    make_due(settings, first_emr)
    assert deliver(settings, first_emr) is None
    with transaction(settings.database_url) as session:
        assert engine(session, settings).blocked_by(second_emr) is None
    make_due(settings, second_emr)
    assert deliver(settings, second_emr) is None
    emr_keys = [d.idempotency_key for d in receiver.deliveries if d.path == "/emr"]
    assert emr_keys == [job_of(settings, j).idempotency_key for j in (other_emr, first_emr, second_emr)]


def test_a_finished_job_is_never_postponed(settings: Settings, receiver: SandboxReceiver, emr: str) -> None:
    _, [first] = create(settings, referral("p1"))
    _, [second] = create(settings, referral("p1"))
    receiver.configure(fail_keys={job_of(settings, first).idempotency_key: 400})
    assert deliver(settings, first) is None  # dead: the patient's later jobs wait behind it
    assert deliver(settings, second) == HELD_WAIT_SECONDS
    assert (job_of(settings, second).status, job_of(settings, second).held_by) == ("pending", first)
    receiver.configure(fail_keys={})
    with unit_of_work(settings) as session:
        actions(session, settings).retry_job(first)  # the earlier job is open again, and the held one woken
        assert sorted(session.info[ENQUEUE_KEY]) == [first, second]
    assert job_of(settings, second).held_by is None
    assert deliver(settings, second) == ORDER_WAIT_SECONDS  # still behind the retried job
    assert deliver(settings, first) is None
    make_due(settings, second)
    assert deliver(settings, second) is None
    assert job_of(settings, second).status == "succeeded"
    # a duplicate task of the finished job (e.g. redelivered by the broker) does nothing at all
    assert deliver(settings, second) is None
    with transaction(settings.database_url) as session:
        assert engine(session, settings).blocked_by(second) is None
    assert job_of(settings, second).status == "succeeded" and len(receiver.requests) == 3


def test_a_disabled_connector_is_paused(settings: Settings, receiver: SandboxReceiver) -> None:
    add_webhook(settings, "emr", receiver.url + "/webhook", enabled=False)
    add_route(settings, "referrals", "ServiceRequest", "emr")
    _, [job_id] = create(settings, referral())  # routed all the same: nothing is lost
    assert deliver(settings, job_id) is None
    assert receiver.requests == []
    assert (job_of(settings, job_id).status, job_of(settings, job_id).attempts) == ("pending", 0)
    no_grace = settings.model_copy(update={"requeue_grace_seconds": 0})
    with transaction(settings.database_url) as session:
        assert engine(session, no_grace).sweep() == []

    with unit_of_work(settings) as session:
        config(session, settings).add_connector(
            name="emr",
            kind="webhook",
            replace=True,
            enabled=True,
            config={"url": receiver.url + "/webhook", "secret": SECRET},
        )
    with transaction(settings.database_url) as session:
        assert engine(session, no_grace).sweep() == [job_id]  # resumed by the sweeper
    assert deliver(settings, job_id) is None
    assert job_of(settings, job_id).status == "succeeded" and len(receiver.deliveries) == 1


# ---------------------------------------------------------------- sweeper


def test_sweep_requeues_lost_jobs_only(settings: Settings, receiver: SandboxReceiver) -> None:
    add_webhook(settings, "emr", receiver.url, timeout_seconds=60.0)  # lease: 60 * 1.5 + 5 = 95 s
    add_route(settings, "referrals", "ServiceRequest", "emr")
    grace = timedelta(seconds=settings.requeue_grace_seconds)
    _, [old_job] = create(settings, referral("p1"))
    _, [running_job] = create(settings, referral("p2"))
    with transaction(settings.database_url) as session:
        claimed = engine(session, settings).claim(running_job)
    assert claimed is not None
    now = utcnow()

    with transaction(settings.database_url) as session:
        assert engine(session, settings, clock=lambda: now).sweep() == []  # fresh and leased: left alone
        assert session.info.get(ENQUEUE_KEY, []) == []
    later = now + grace + timedelta(seconds=1)  # the pending job is overdue; the lease is not over
    with transaction(settings.database_url) as session:
        assert engine(session, settings, clock=lambda: later).sweep() == [old_job]
    much_later = now + timedelta(minutes=5)  # ...and now the lease has expired too
    with transaction(settings.database_url) as session:
        sync = engine(session, settings, clock=lambda: much_later)
        assert sync.sweep() == [old_job, running_job]
        assert session.info[ENQUEUE_KEY] == [old_job, running_job]
    swept = job_of(settings, running_job)
    assert (swept.status, swept.locked_until, swept.next_attempt_at) == ("retrying", None, much_later)
    lease_event = events_of(settings, swept.message_id)[-1]
    assert lease_event.event == ev.FAILED and "lease expired" in (lease_event.detail or "")
    assert message_of(settings, swept.message_id).status == "retrying"
    assert job_of(settings, old_job).status == "pending"


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


def test_the_sweep_task_enqueues_overdue_jobs(task_settings: Settings, emr: str) -> None:
    from workers import tasks

    settings = task_settings
    _, [job_id] = create(settings, referral())
    assert [t["job_id"] for t in queued_tasks(settings)] == [job_id]
    assert tasks.sweep() == 1  # grace 0: the pending job counts as lost
    assert [t["job_id"] for t in queued_tasks(settings)] == [job_id, job_id]
    with transaction(settings.database_url) as session:
        session.get(DeliveryJob, job_id).next_attempt_at = utcnow() + timedelta(minutes=1)  # type: ignore[union-attr]
    assert tasks.sweep() == 0  # not due yet
    assert len(queued_tasks(settings)) == 2


def test_the_deliver_task_requeues_a_retry_with_its_countdown(
    task_settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    from workers import tasks

    settings = task_settings
    _, [job_id] = create(settings, referral("p1"))
    _, [ok_id] = create(settings, referral("p2"))
    receiver.configure(fail_keys={job_of(settings, job_id).idempotency_key: 503})
    published = len(queued_tasks(settings))
    tasks.deliver(ok_id)
    assert job_of(settings, ok_id).status == "succeeded"
    assert len(queued_tasks(settings)) == published  # nothing more to do
    tasks.deliver(job_id)
    assert job_of(settings, job_id).status == "retrying"
    [requeued] = queued_tasks(settings)[published:]
    assert requeued["job_id"] == job_id and requeued["eta"] is not None


def test_the_purge_task_erases_old_payloads(
    task_settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    from workers import tasks

    settings = task_settings
    old = utcnow() - timedelta(days=settings.message_retention_days + 1)
    with unit_of_work(settings) as session:
        [job_id] = outbox(session, settings, clock=lambda: old).on_change(
            Change(
                "ServiceRequest", "sr-1", 1, "create", referral(), json.dumps({**referral(), "id": "sr-1"})
            )
        )
    assert deliver(settings, job_id) is None
    assert tasks.purge() == 1
    message = message_of(settings, job_of(settings, job_id).message_id)
    assert message.raw_payload is None and message.translated_payload is None


# ---------------------------------------------------------------- retry and replay


def _dead_job(settings: Settings, receiver: SandboxReceiver, patient: str = "p1") -> int:
    _, [job_id] = create(settings, referral(patient))
    receiver.configure(fail_keys={job_of(settings, job_id).idempotency_key: 422})
    assert deliver(settings, job_id) is None
    assert job_of(settings, job_id).status == "dead"
    receiver.configure(fail_keys={})
    return job_id


def test_retry_job_tries_a_dead_job_again_with_the_same_key(
    settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    job_id = _dead_job(settings, receiver)
    dead = job_of(settings, job_id)
    with unit_of_work(settings) as session:
        job = actions(session, settings).retry_job(job_id)
        assert (job.status, job.finished_at) == ("pending", None)
        assert job.max_attempts > job.attempts
        assert session.info[ENQUEUE_KEY] == [job_id]
    assert [t["job_id"] for t in queued_tasks(settings)][-1] == job_id
    assert message_of(settings, dead.message_id).status == "queued"
    assert events_of(settings, dead.message_id)[-1].event == ev.RETRIED

    assert deliver(settings, job_id) is None
    job = job_of(settings, job_id)
    assert (job.status, job.attempts) == ("succeeded", 2)
    assert receiver.deliveries[-1].idempotency_key == dead.idempotency_key
    assert message_of(settings, dead.message_id).status == "delivered"

    with pytest.raises(Conflict, match="succeeded"), unit_of_work(settings) as session:
        actions(session, settings).retry_job(job_id)
    with pytest.raises(NotFound), unit_of_work(settings) as session:
        actions(session, settings).retry_job(987654)


def test_retry_job_of_a_retrying_job_makes_it_due_now(
    settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    _, [job_id] = create(settings, referral())
    receiver.configure(status_override=503, retry_after=50)
    deliver(settings, job_id)
    assert job_of(settings, job_id).next_attempt_at > utcnow() + timedelta(seconds=40)
    receiver.configure(status_override=None)
    with unit_of_work(settings) as session:
        actions(session, settings).retry_job(job_id)
    assert deliver(settings, job_id) is None
    assert job_of(settings, job_id).status == "succeeded"


def test_replay_is_a_new_linked_message_and_the_original_keeps_its_error(
    settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    job_id = _dead_job(settings, receiver)
    original = job_of(settings, job_id)
    with unit_of_work(settings) as session:
        replay = actions(session, settings).replay_message(original.message_id)
        replay_id = replay.id
        [new_job_id] = session.info[ENQUEUE_KEY]
    assert replay_id != original.message_id
    replayed = message_of(settings, replay_id)
    assert replayed.replay_of == original.message_id and replayed.status == "queued"
    new_job = job_of(settings, new_job_id)
    assert new_job.replay_of == job_id and new_job.message_id == replay_id
    assert new_job.idempotency_key == original.idempotency_key  # the same delivery: partners dedupe it
    assert [e.event for e in events_of(settings, replay_id)] == ["replayed", "queued"]

    assert deliver(settings, new_job_id) is None
    assert message_of(settings, replay_id).status == "delivered"
    assert json.loads(receiver.deliveries[-1].body)["subject"]["reference"] == "Patient/p1"
    source = message_of(settings, original.message_id)
    assert source.status == "dead" and "422" in (source.error or "")
    assert job_of(settings, job_id).status == "dead"
    assert events_of(settings, original.message_id)[-1].event == ev.REPLAYED


def test_replay_dead_replays_only_dead_deliveries_of_the_chosen_connector(
    settings: Settings, receiver: SandboxReceiver
) -> None:
    add_webhook(settings, "emr", receiver.url + "/emr")
    add_webhook(settings, "hep", receiver.url + "/hep")
    add_route(settings, "to-emr", "ServiceRequest", "emr")
    add_route(settings, "to-hep", "ServiceRequest", "hep")
    _, first = create(settings, referral("p1"))
    _, second = create(settings, referral("p2"))
    emr1, hep1 = sorted(first, key=lambda j: connector_of(settings, j))
    emr2, hep2 = sorted(second, key=lambda j: connector_of(settings, j))
    receiver.configure(fail_keys={job_of(settings, j).idempotency_key: 400 for j in (hep1, emr2, hep2)})
    for job_id in (emr1, hep1, emr2, hep2):
        deliver(settings, job_id)
    assert [job_of(settings, j).status for j in (emr1, hep1, emr2, hep2)] == [
        "succeeded",
        "dead",
        "dead",
        "dead",
    ]

    with unit_of_work(settings) as session:
        replays = actions(session, settings).replay_dead(connector="hep")
        replayed = {r.replay_of: r.id for r in replays}
        new_jobs = [session.get(DeliveryJob, j) for j in session.info[ENQUEUE_KEY]]
        assert sorted(j.replay_of for j in new_jobs) == sorted([hep1, hep2])  # type: ignore[union-attr]
        assert {_name(session, j) for j in new_jobs} == {"hep"}  # type: ignore[arg-type]
    assert set(replayed) == {job_of(settings, hep1).message_id, job_of(settings, hep2).message_id}

    with unit_of_work(settings) as session:  # the dead letter of emr is still there; emr's success is not
        replays = actions(session, settings).replay_dead()
        new_jobs = [session.get(DeliveryJob, j) for j in session.info[ENQUEUE_KEY]]
        assert [j.replay_of for j in new_jobs] == [emr2]  # type: ignore[union-attr]
    with unit_of_work(settings) as session:  # each dead letter is replayed once
        assert actions(session, settings).replay_dead() == []

    _, healthy = create(settings, referral("p3"))
    for job_id in healthy:
        assert deliver(settings, job_id) is None
    with pytest.raises(Conflict, match="no deliveries"), unit_of_work(settings) as session:
        actions(session, settings).replay_message(job_of(settings, healthy[0]).message_id, only_dead=True)
    with pytest.raises(NotFound), unit_of_work(settings) as session:
        actions(session, settings).replay_dead(connector="nope")


# ---------------------------------------------------------------- retention


def test_purge_erases_payloads_of_old_finished_messages_only(
    settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    old = utcnow() - timedelta(days=settings.message_retention_days, hours=1)

    def routed(at: datetime, resource_id: str) -> int:
        with unit_of_work(settings) as session:
            resource = {**referral(resource_id), "id": resource_id}
            [job_id] = outbox(session, settings, clock=lambda: at).on_change(
                Change("ServiceRequest", resource_id, 1, "create", resource, json.dumps(resource))
            )
        return job_id

    old_delivered, old_open, new_delivered = routed(old, "a"), routed(old, "b"), routed(utcnow(), "c")
    for job_id in (old_delivered, new_delivered):
        assert deliver(settings, job_id) is None
    with unit_of_work(settings) as session:
        rejected = (
            inbox(session, settings, clock=lambda: old)
            .record_rejected(
                source="fhir-api", event="ServiceRequest.create", raw=b"{not json", reason="bad JSON"
            )
            .id
        )

    with unit_of_work(settings) as session:
        assert actions(session, settings).purge() == 2
    erased = {job_of(settings, old_delivered).message_id, rejected}
    for job_id in (old_delivered, old_open, new_delivered):
        message = message_of(settings, job_of(settings, job_id).message_id)
        assert (message.raw_payload is None) == (message.id in erased)
    assert message_of(settings, rejected).raw_payload is None

    with pytest.raises(Conflict, match="no payload"), unit_of_work(settings) as session:
        actions(session, settings).replay_message(job_of(settings, old_delivered).message_id)
    with unit_of_work(settings) as session:
        assert actions(session, settings).purge() == 0  # nothing left to erase


def test_what_the_hub_wrote_is_remembered_per_connector_then_purged(settings: Settings, emr: str) -> None:
    """SendResult.written is kept so that polls skip the hub's own writes; retention forgets it."""
    from hub.store import sync_repository as repo

    old = utcnow() - timedelta(days=settings.message_retention_days, hours=1)
    with unit_of_work(settings) as session:
        connector_id = config(session, settings).get_connector(emr).id
        repo.record_written(session, tenant=TENANT, connector_id=connector_id,
                            external_ids=["Patient/e1/_history/1", "Patient/e1/_history/1"], now=old)
        repo.record_written(session, tenant=TENANT, connector_id=connector_id,
                            external_ids=["Task/e2/_history/3", "Patient/e1/_history/1"], now=utcnow())
    with unit_of_work(settings) as session:
        ids = ["Patient/e1/_history/1", "Task/e2/_history/3", "Task/e2/_history/4"]
        assert repo.written_among(session, connector_id=connector_id, external_ids=ids) == set(ids[:2])
        assert repo.written_among(session, connector_id=connector_id + 1000, external_ids=ids) == set()
        actions(session, settings).purge()
    with unit_of_work(settings) as session:
        ids = ["Patient/e1/_history/1", "Task/e2/_history/3"]
        assert repo.written_among(session, connector_id=connector_id, external_ids=ids) == {"Task/e2/_history/3"}


def test_two_deliveries_naming_the_same_written_version_do_not_collide(settings: Settings, emr: str) -> None:
    """Two workers each wrote the same unchanged dependency (same remote version): both outcomes are
    recorded, the second insert is a no-op (a unique-key error would roll the outcome back)."""
    from hub.store import sync_repository as repo

    with unit_of_work(settings) as session:
        connector_id = config(session, settings).get_connector(emr).id
    with transaction(settings.database_url) as first, transaction(settings.database_url) as second:
        repo.record_written(first, tenant=TENANT, connector_id=connector_id,
                            external_ids=["Organization/o1/_history/1"], now=utcnow())
        first.commit()
        repo.record_written(second, tenant=TENANT, connector_id=connector_id,
                            external_ids=["Organization/o1/_history/1", "Practitioner/p9/_history/1"], now=utcnow())
    with transaction(settings.database_url) as session:
        found = repo.written_among(session, connector_id=connector_id,
                                   external_ids=["Organization/o1/_history/1", "Practitioner/p9/_history/1"])
    assert len(found) == 2

"""The sync engine: routing into the outbox, the stored message, its events and encryption."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select, text

from hub.crypto import cipher, cipher_for, decrypt
from hub.errors import BadRequest
from hub.fhir.service import FhirService
from hub.settings import Settings
from hub.store.db import transaction
from hub.store.models import DeliveryJob, Message, MessageEvent, Resource
from hub.sync import events as ev
from hub.sync.delivery import deliver
from hub.unit_of_work import unit_of_work
from sandboxes.webhook import SandboxReceiver
from tests.sync.conftest import SECRET, queued_tasks
from tests.sync.service.conftest import (
    NAME,
    TENANT,
    add_route,
    add_webhook,
    config,
    connector_of,
    count,
    create,
    engine,
    events_of,
    job_of,
    message_of,
    outbox,
    referral,
    write,
)

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

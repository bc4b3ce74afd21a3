"""The sync engine: retry and replay of deliveries, and retention."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from hub.errors import Conflict, NotFound
from hub.fhir.events import Change
from hub.kit import utcnow
from hub.settings import Settings
from hub.store.db import transaction
from hub.store.models import DeliveryJob
from hub.sync import events as ev
from hub.sync.delivery import deliver
from hub.unit_of_work import ENQUEUE_KEY, unit_of_work
from sandboxes.webhook import SandboxReceiver
from tests.sync.conftest import queued_tasks
from tests.sync.service.conftest import (
    TENANT,
    _name,
    actions,
    add_route,
    add_webhook,
    config,
    connector_of,
    create,
    events_of,
    inbox,
    job_of,
    message_of,
    outbox,
    referral,
)

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

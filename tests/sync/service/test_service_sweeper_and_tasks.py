"""The sync engine: the sweeper and the worker task functions."""

from __future__ import annotations

import json
from datetime import timedelta

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
    add_route,
    add_webhook,
    create,
    engine,
    events_of,
    job_of,
    message_of,
    outbox,
    referral,
)

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

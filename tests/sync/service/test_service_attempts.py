"""The sync engine: delivery attempts against the sandbox receiver, leases, ordering per patient."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from hub.fhir.events import Change
from hub.kit import utcnow
from hub.settings import Settings
from hub.store.db import transaction
from hub.sync import events as ev
from hub.sync.delivery import HELD_WAIT_SECONDS, ORDER_WAIT_SECONDS, deliver
from hub.sync.engine import Outcome
from hub.unit_of_work import ENQUEUE_KEY, unit_of_work
from sandboxes.webhook import SandboxReceiver
from tests.sync.conftest import SECRET
from tests.sync.service.conftest import (
    actions,
    add_route,
    add_webhook,
    config,
    connector_of,
    create,
    engine,
    events_of,
    job_of,
    make_due,
    message_of,
    outbox,
    referral,
)

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

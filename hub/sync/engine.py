"""The delivery engine: the state of delivery jobs in the database.

:meth:`DeliveryEngine.claim` takes a due job with a lease and returns what the worker needs to send it
(:class:`ClaimedJob`); :meth:`DeliveryEngine.finish` records the outcome of that attempt (sent, retry
with exponential backoff and jitter, or dead letter) and keeps the message's status in step with its
jobs. Order per patient: a job waits (:meth:`~DeliveryEngine.postpone`) behind an earlier open job of
its order, and is held (:meth:`~DeliveryEngine.hold`) behind a dead letter until that one is retried
or replayed (:meth:`~DeliveryEngine.wake_held`). The sweeper (:meth:`~DeliveryEngine.sweep`)
re-enqueues jobs whose task was lost. :mod:`hub.sync.delivery` runs one attempt around these calls.

A send the partner only accepted (``Outcome.confirm_within``: a fax queued by the vendor, a Direct
message taken by the HISP) leaves the job ``awaiting`` until its ``confirm_by``: the partner's
confirmation makes it ``succeeded`` (:meth:`~DeliveryEngine.confirm`), its failure report or the
deadline (:mod:`hub.sync.confirmations`) fails the attempt (:meth:`~DeliveryEngine.remote_failure`).
See ADR 0012.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from hub.crypto import cipher_for, decrypt, encrypt
from hub.kit import utcnow
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.store.models import ConnectorInstance, DeliveryJob, Message
from hub.sync import chains
from hub.sync import events as ev
from hub.sync.config import SyncConfig
from hub.sync.context import (
    CONTEXT_DOCUMENTS,
    CONTEXT_PREVIOUS,
    CONTEXT_REFERENCES,
    context_wanted,
    with_documents,
    with_references,
)
from hub.sync.direct_certs import DirectCerts
from hub.sync.inbox import MAX_ERROR, Inbox, short_error
from hub.sync.outbox import Outbox
from hub.unit_of_work import enqueue_after_commit


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    job_id: int
    tenant: str
    message_id: str
    connector_id: int
    connector_kind: str
    connector_config: dict[str, Any]
    connector_version: str
    attempt: int
    max_attempts: int
    idempotency_key: str
    correlation_id: str
    event: str
    resource_type: str | None
    resource_id: str | None
    payload: bytes | None
    #: the version the change replaced, when the connector asks for it (hub.sync.context)
    previous: bytes | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    permanent: bool = False
    detail: str = ""
    duration_ms: float | None = None
    retry_after: float | None = None
    #: external ids of what the partner now holds from this delivery (SendResult.written)
    written: tuple[str, ...] = ()
    #: the partner's id of what the delivery made (SendResult.remote_id), kept on the job
    remote_id: str | None = None
    #: links the partner issued (SendResult.links) as (rel, url, expires_at): kept encrypted on the job
    links: tuple[tuple[str, str, str | None], ...] = ()
    #: accepted, confirmation to follow within this many seconds (SendResult.confirm_within_seconds):
    #: the job is ``awaiting`` until then; None: the send is the delivery
    confirm_within: float | None = None


class DeliveryEngine:
    """Claims, outcomes, order and sweeping of delivery jobs (all tenants: jobs carry theirs)."""

    def __init__(
        self,
        session: Session,
        *,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.session = session
        self.settings = settings
        self.clock = clock
        self.rng = rng

    def _inbox(self, tenant: str) -> Inbox:
        return Inbox(self.session, tenant=tenant, settings=self.settings, clock=self.clock)

    def _event(self, message: Message, event: str, **details: Any) -> None:
        self._inbox(message.tenant_id).event(message, event, **details)

    def blocked_by(self, job_id: int) -> tuple[int, str] | None:
        """(id, status) of a job ahead of this one in its order (same patient, or resource, at the same
        connector) that is unfinished or an unreplayed dead letter; None when it may go (or is finished)."""
        job = repo.job_by_id(self.session, job_id=job_id)
        if job is None or job.status not in ev.OPEN_JOB_STATUSES:
            return None
        return repo.earlier_blocking_job(self.session, job=job)

    def hold(self, job_id: int, dead_job_id: int, seconds: float) -> None:
        """Keep a job behind a dead letter of its order until that one is retried or replayed."""
        job = repo.job_by_id(self.session, job_id=job_id)
        if job is not None and job.status in (ev.PENDING, ev.RETRYING):
            job.held_by = dead_job_id
            job.next_attempt_at = self.clock() + timedelta(seconds=seconds)
            self.session.flush()

    def wake_held(self, ordering_key: str | None, now: datetime) -> None:
        """Make the jobs held behind a dead letter of this order due again (enqueued after commit)."""
        if ordering_key:
            enqueue_after_commit(self.session, repo.wake_held(self.session, ordering_key=ordering_key, now=now))

    def _resolve(self, job: DeliveryJob, now: datetime) -> None:
        """A delivered replay resolves the dead letter it replays, and that one's own original."""
        seen = set()
        replayed = job.replay_of
        while replayed is not None and replayed not in seen:
            seen.add(replayed)
            dead = repo.job_by_id(self.session, job_id=replayed)
            if dead is None:
                break
            if dead.status == ev.DEAD and dead.resolved_at is None:
                dead.resolved_by, dead.resolved_at = job.id, now
            replayed = dead.replay_of

    def job_status(self, job_id: int) -> str | None:
        job = repo.job_by_id(self.session, job_id=job_id)
        return job.status if job is not None else None

    def postpone(self, job_id: int, seconds: float) -> None:
        job = repo.job_by_id(self.session, job_id=job_id)
        if job is not None and job.status in (ev.PENDING, ev.RETRYING):
            job.next_attempt_at = self.clock() + timedelta(seconds=seconds)
            job.held_by = None  # what it waits for now is open, not a dead letter
            self.session.flush()

    def claim(self, job_id: int) -> ClaimedJob | None:
        """Take a due job (lease); None when another worker has it or it is not due/finished."""
        now = self.clock()
        job = repo.job_by_id(self.session, job_id=job_id)
        if job is None:
            return None
        instance = repo.connector_by_id(self.session, connector_id=job.connector_id)
        if instance is None or not instance.enabled:
            return None  # a disabled connector is paused: its jobs wait (the sweeper resumes them)
        lease = now + timedelta(seconds=instance.timeout_seconds * 1.5 + 5)
        if not repo.claim_job(self.session, job_id=job_id, now=now, lease_until=lease):
            return None
        self.session.refresh(job)
        message = repo.message_by_id(self.session, tenant=None, message_id=job.message_id)
        assert message is not None
        inbox = self._inbox(job.tenant_id)
        payload = inbox.payload(message)
        previous = None
        wanted = context_wanted(instance.kind)
        if payload is not None and CONTEXT_REFERENCES in wanted:
            payload = with_references(self.session, tenant=job.tenant_id, base=self.settings.fhir_base,
                                      payload=payload)
        if payload is not None and CONTEXT_DOCUMENTS in wanted:
            payload = with_documents(self.session, tenant=job.tenant_id, base=self.settings.fhir_base,
                                     payload=payload)
        if CONTEXT_PREVIOUS in wanted and message.resource_type and message.resource_id:
            last = repo.last_delivered(self.session, tenant=job.tenant_id, connector_id=job.connector_id,
                                       resource_type=message.resource_type,
                                       resource_id=message.resource_id, before=message.created_at,
                                       exclude_message=message.id)
            previous = inbox.payload(last) if last is not None else None
        config = SyncConfig(self.session, tenant=job.tenant_id, settings=self.settings, clock=self.clock)
        return ClaimedJob(
            job_id=job.id,
            tenant=job.tenant_id,
            message_id=message.id,
            connector_id=instance.id,
            connector_kind=instance.kind,
            connector_config={**config.connector_config(instance), "_timeout_seconds": instance.timeout_seconds},
            connector_version=self._version(instance),
            attempt=job.attempts,
            max_attempts=job.max_attempts,
            idempotency_key=job.idempotency_key,
            correlation_id=message.correlation_id,
            event=message.event,
            resource_type=message.resource_type,
            resource_id=message.resource_id,
            payload=payload,
            previous=previous,
        )

    def _version(self, instance: ConnectorInstance) -> str:
        """The config version a built connector object is kept for: a Direct one also changes with the
        tenant's stored certificates."""
        version = instance.updated_at.isoformat()
        if instance.kind == "direct":
            changed = DirectCerts(self.session, tenant=instance.tenant_id, settings=self.settings).changed_at()
            version += f"|{changed.isoformat()}" if changed else ""
        return version

    def finish(self, claimed: ClaimedJob, outcome: Outcome) -> float | None:
        """Record the outcome of an attempt; returns the retry delay in seconds, or None."""
        now = self.clock()
        job = repo.job_by_id(self.session, job_id=claimed.job_id)
        message = repo.message_by_id(self.session, tenant=None, message_id=claimed.message_id)
        instance = repo.connector_by_id(self.session, connector_id=claimed.connector_id)
        assert job is not None and message is not None and instance is not None
        if job.status != ev.RUNNING or job.attempts != claimed.attempt:
            return None  # the lease expired and another attempt took over: its outcome wins
        return self._record(job, message, instance, outcome, now)

    def confirm(self, job: DeliveryJob, detail: str) -> bool:
        """The partner confirmed a delivery it had accepted (a fax delivered, a processed MDN): an
        ``awaiting`` job is ``succeeded``, with an ``acknowledged`` event. False, and nothing changes,
        for a job in any other state (a duplicate confirmation, a late one after the job was retried)."""
        if job.status != ev.AWAITING:
            return False
        message = repo.message_by_id(self.session, tenant=None, message_id=job.message_id)
        assert message is not None
        now = self.clock()
        job.status = ev.SUCCEEDED
        job.finished_at = job.updated_at = now
        self._event(message, ev.ACKNOWLEDGED, job_id=job.id, detail=detail, attempt=job.attempts, at=now)
        self._resolve(job, now)
        self.refresh_message_status(message, now)
        self.session.flush()
        return True

    def partner_acknowledged(self, job: DeliveryJob, detail: str) -> bool:
        """The partner acknowledged what a delivery carried after taking it (a clearinghouse's 999
        accepting the file): an ``awaiting`` job is confirmed; a ``succeeded`` one gets an
        ``acknowledged`` event. False for a job in any other state."""
        if self.confirm(job, detail):
            return True
        if job.status != ev.SUCCEEDED:
            return False
        message = repo.message_by_id(self.session, tenant=None, message_id=job.message_id)
        assert message is not None
        self._event(message, ev.ACKNOWLEDGED, job_id=job.id, detail=detail, attempt=job.attempts, at=self.clock())
        self.session.flush()
        return True

    def remote_failure(self, job: DeliveryJob, detail: str, *, permanent: bool = False) -> float | None:
        """The partner reported later that a delivery it had accepted failed (a fax that did not go
        through, a failed MDN), or did not confirm it in time: the attempt counts as failed after all,
        so the job retries per its connector's policy (enqueued after commit, due after the backoff)
        or is dead-lettered. For an ``awaiting`` job, and for a ``succeeded`` one delivered without
        awaiting a confirmation (before confirmations were awaited). A job the partner itself
        confirmed after awaiting it (:meth:`confirm`) is not sent again: the partner contradicts
        itself, so the report is kept as a ``warning`` event of the message for a person to look at,
        and the job stays ``succeeded``. None when nothing is to be retried (a confirmed job, or one
        already retried, replayed or dead). ``permanent``: sending the same again cannot help (a
        clearinghouse's 999 rejecting the file): dead-lettered at once, whatever attempts are left."""
        if job.status not in (ev.AWAITING, ev.SUCCEEDED):
            return None
        message = repo.message_by_id(self.session, tenant=None, message_id=job.message_id)
        instance = repo.connector_by_id(self.session, connector_id=job.connector_id)
        assert message is not None and instance is not None
        if job.status == ev.SUCCEEDED and self._confirmed_after_awaiting(job):
            self._event(message, ev.WARNING, job_id=job.id, attempt=job.attempts, at=self.clock(),
                        detail=short_error(f"the partner reported a failure after confirming the delivery "
                                           f"(not sent again; check with the partner): {detail}"))
            self.session.flush()
            return None
        job.status = ev.RUNNING
        job.finished_at = None
        delay = self._record(job, message, instance, Outcome(ok=False, detail=detail, permanent=permanent),
                             self.clock())
        if job.status == ev.RETRYING:
            enqueue_after_commit(self.session, [job.id])
        return delay

    def _confirmed_after_awaiting(self, job: DeliveryJob) -> bool:
        """Whether the job's last attempt was awaited (its ``sent`` event says so) and then confirmed
        (an ``acknowledged`` event after it), as opposed to a send that was the delivery."""
        awaited = False
        for event in repo.events_of(self.session, message_id=job.message_id):
            if event.job_id != job.id or event.attempt != job.attempts:
                continue
            if event.event == ev.SENT:
                awaited = AWAITING_NOTE in (event.detail or "")
            elif event.event == ev.ACKNOWLEDGED and awaited:
                return True
        return False

    def _keep_links(self, job: DeliveryJob, outcome: Outcome) -> None:
        if outcome.links:
            links = [{"rel": rel, "url": url, "expires_at": expires} for rel, url, expires in outcome.links]
            job.issued_links = encrypt(cipher_for(self.settings), json.dumps(links))

    def issued_links(self, job: DeliveryJob) -> list[dict[str, str | None]]:
        """The links of ``job``'s last accepted attempt, decrypted (for the clinic; never to log)."""
        raw = decrypt(cipher_for(self.settings), job.issued_links)
        found: list[dict[str, str | None]] = json.loads(raw) if raw else []
        return found

    def _record(self, job: DeliveryJob, message: Message, instance: ConnectorInstance, outcome: Outcome,
                now: datetime) -> float | None:
        job.updated_at = now
        job.locked_until = None
        delay = None
        if outcome.ok and outcome.confirm_within is not None:
            # accepted, not yet delivered: awaiting the partner's word, no longer holding its order
            job.status = ev.AWAITING
            job.finished_at = None
            job.remote_id = outcome.remote_id
            self._keep_links(job, outcome)
            job.next_attempt_at = now + timedelta(seconds=outcome.confirm_within)  # confirm_by
            self._event(message, ev.SENT, job_id=job.id, duration_ms=outcome.duration_ms, attempt=job.attempts,
                        at=now, detail=_awaiting_detail(outcome.detail, outcome.confirm_within))
            repo.record_written(self.session, tenant=job.tenant_id, connector_id=job.connector_id,
                                external_ids=outcome.written, now=now)
            self.wake_held(job.ordering_key, now)
        elif outcome.ok:
            job.status = ev.SUCCEEDED
            job.finished_at = now
            job.remote_id = outcome.remote_id
            self._keep_links(job, outcome)
            self._event(message, ev.SENT, job_id=job.id, detail=outcome.detail, duration_ms=outcome.duration_ms,
                        attempt=job.attempts, at=now)
            self._event(message, ev.ACKNOWLEDGED, job_id=job.id, detail=outcome.detail, attempt=job.attempts, at=now)
            repo.record_written(self.session, tenant=job.tenant_id, connector_id=job.connector_id,
                                external_ids=outcome.written, now=now)
            self._resolve(job, now)
            self.wake_held(job.ordering_key, now)
        else:
            job.last_error = short_error(outcome.detail)
            if outcome.permanent or job.attempts >= job.max_attempts:
                job.status = ev.DEAD
                job.finished_at = now
                why = "permanent error" if outcome.permanent else f"{job.attempts} attempts failed"
                self._event(message, ev.FAILED, job_id=job.id, detail=job.last_error,
                            duration_ms=outcome.duration_ms, attempt=job.attempts, at=now)
                self._event(message, ev.DEAD_LETTERED, job_id=job.id, detail=f"{why}: {job.last_error}",
                            attempt=job.attempts, at=now)
                self._fall_back(job, message, now)
            else:
                delay = self.backoff(instance, job.attempts, outcome.retry_after)
                job.status = ev.RETRYING
                job.next_attempt_at = now + timedelta(seconds=delay)
                self._event(message, ev.FAILED, job_id=job.id,
                            detail=f"{job.last_error}; retry {job.attempts + 1}/{job.max_attempts} in {delay:.1f}s",
                            duration_ms=outcome.duration_ms, attempt=job.attempts, at=now)
        self.refresh_message_status(message, now)
        self.session.flush()
        return delay

    def _fall_back(self, job: DeliveryJob, message: Message, now: datetime) -> None:
        """A dead job of a route with a fallback chain moves on to the chain's next connector that can
        address it: a new job pointing at the dead one (ADR 0011), delivered after commit."""
        if job.route_id is None:
            return
        payload = self._inbox(job.tenant_id).payload(message)
        try:
            resource = json.loads(payload) if payload else None
        except ValueError:
            return
        route, chosen, _ = chains.next_in_chain(self.session, tenant=job.tenant_id, settings=self.settings,
                                                route_id=job.route_id, connector_id=job.connector_id,
                                                resource=resource if isinstance(resource, dict) else None,
                                                event=message.event)
        if route is None or chosen is None:
            return
        ordering = job.ordering_key.split("|", 1)[1] if job.ordering_key and "|" in job.ordering_key else None
        outbox = Outbox(self.session, tenant=job.tenant_id, settings=self.settings, clock=self.clock)
        [fallback] = outbox.create_jobs(message, [(chosen, route.id)], ordering, now)
        fallback.replay_of = job.id
        instance = repo.connector_by_id(self.session, connector_id=chosen)
        self._event(message, ev.QUEUED, job_id=fallback.id, at=now,
                    detail=f"fallback of job {job.id}: {instance.name if instance else chosen}")
        self.session.flush()
        enqueue_after_commit(self.session, [fallback.id])

    def backoff(self, instance: ConnectorInstance, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (50-100% of the step), at least Retry-After, at most the cap."""
        step = min(instance.backoff_max_seconds, instance.backoff_base_seconds * (2 ** max(0, attempt - 1)))
        delay = step * (0.5 + 0.5 * self.rng())
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, instance.backoff_max_seconds)

    def refresh_message_status(self, message: Message, now: datetime) -> None:
        """A message's status from its jobs' (delivered, dead, retrying, awaiting: every job sent and
        one or more still to be confirmed, queued) and its first dead error."""
        statuses = {j.status for j in repo.jobs_of(self.session, message_id=message.id)}
        if not statuses:
            return
        if statuses <= {ev.SUCCEEDED}:
            message.status = "delivered"
        elif ev.DEAD in statuses and not statuses & set(ev.IN_FLIGHT_JOB_STATUSES):
            message.status = "dead"
        elif ev.RETRYING in statuses:
            message.status = "retrying"
        elif not statuses & set(ev.OPEN_JOB_STATUSES):
            message.status = "awaiting"
        else:
            message.status = "queued"
        message.error = next(
            (j.last_error for j in repo.jobs_of(self.session, message_id=message.id) if j.status == ev.DEAD), None
        ) or message.error
        message.updated_at = now

    def unconfirmed(self, job: DeliveryJob, minutes: float, what: str = "confirmation") -> bool:
        """An ``awaiting`` job past its ``confirm_by``: the attempt fails ("no <what> within N minutes")
        and retries or dead-letters (:meth:`remote_failure`). False, and nothing changes, for any other job."""
        if job.status != ev.AWAITING or job.next_attempt_at > self.clock():
            return False
        self.remote_failure(job, f"no {what} within {_minutes(minutes * 60)} minutes")
        return True

    def sweep(self, limit: int = 500) -> list[int]:
        """Jobs whose task was lost (broker flushed, worker killed): make them due and enqueue them."""
        now = self.clock()
        grace = timedelta(seconds=self.settings.requeue_grace_seconds)
        jobs = repo.due_jobs(self.session, now=now, requeue_before=now - grace, limit=limit)
        for job in jobs:
            if job.status == ev.RUNNING:  # lease expired: the worker died mid-attempt
                job.status = ev.RETRYING
                job.locked_until = None
                message = repo.message_by_id(self.session, tenant=None, message_id=job.message_id)
                if message is not None:
                    self._event(message, ev.FAILED, job_id=job.id, attempt=job.attempts,
                                detail="lease expired (worker lost); re-enqueued", at=now)
                    self.refresh_message_status(message, now)
            job.next_attempt_at = now
            job.updated_at = now
        self.session.flush()
        enqueue_after_commit(self.session, [j.id for j in jobs])
        return [j.id for j in jobs]


#: in the ``sent`` event of an attempt that awaits the partner's confirmation (and how it is told apart)
AWAITING_NOTE = "awaiting confirmation within"


def _awaiting_detail(detail: str, seconds: float) -> str:
    note = f"; {AWAITING_NOTE} {_minutes(seconds)} minutes"
    head = short_error(detail)
    return head[: MAX_ERROR - len(note)] + note  # the note is never cut off


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g}"

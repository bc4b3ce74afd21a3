"""Operator actions on deliveries (admin API, dashboard, CLI, the purge task): retry a job, replay
a message or the dead letters of a connector, purge payloads past retention.

A retry runs the same job again (same idempotency key). A replay is a new message linked to the
original (recorded by :class:`hub.sync.inbox.Inbox`), with jobs made by the outbox that keep the
keys and the place in the order of the jobs they replay; what waited behind a dead letter is woken
(:meth:`hub.sync.engine.DeliveryEngine.wake_held`). Jobs are enqueued after commit.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from hub.errors import BadRequest, Conflict, NotFound
from hub.kit import utcnow
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.store.models import DeliveryJob, Message
from hub.sync import events as ev
from hub.sync.config import SyncConfig
from hub.sync.engine import DeliveryEngine
from hub.sync.inbox import Inbox, short_error
from hub.sync.outbox import Outbox
from hub.unit_of_work import enqueue_after_commit

#: with "discarded by <client>: " the event detail stays within the error bound of the inbox
MAX_DISCARD_REASON = 300


class SyncActions:
    """What an operator may do to one tenant's deliveries, in the caller's transaction."""

    def __init__(
        self,
        session: Session,
        *,
        tenant: str,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.session = session
        self.tenant = tenant
        self.settings = settings
        self.clock = clock
        self.inbox = Inbox(session, tenant=tenant, settings=settings, clock=clock)
        self.outbox = Outbox(session, tenant=tenant, settings=settings, clock=clock)
        self.engine = DeliveryEngine(session, settings=settings, clock=clock)
        self.config = SyncConfig(session, tenant=tenant, settings=settings, clock=clock)

    def retry_job(self, job_id: int) -> DeliveryJob:
        """Try a failed or dead job again now (same job, same idempotency key)."""
        job = repo.job_by_id(self.session, job_id=job_id, tenant=self.tenant)
        if job is None:
            raise NotFound(f"No delivery job {job_id}")
        if job.status == ev.AWAITING:  # sent, accepted: a retry now would deliver it twice
            raise Conflict(f"Job {job_id} is awaiting its partner's confirmation (due by "
                           f"{job.next_attempt_at.isoformat(timespec='seconds')}Z); it retries by itself "
                           f"if the partner reports a failure or stays silent until then")
        if job.status not in (ev.DEAD, ev.RETRYING):
            raise Conflict(f"Job {job_id} is {job.status}; only dead or retrying jobs can be retried")
        self._refuse_if_fallen_back(job)
        now = self.clock()
        if job.status == ev.DEAD:
            job.max_attempts = job.attempts + max(1, job.max_attempts)
            job.finished_at = None
            if job.resolved_by is None:  # a retry takes back a discard: should it die again, it is outstanding
                job.resolved_at = None
        job.status = ev.PENDING
        job.next_attempt_at = now
        job.updated_at = now
        self.engine.wake_held(job.ordering_key, now)
        message = repo.message_by_id(self.session, tenant=self.tenant, message_id=job.message_id)
        if message is not None:
            self.inbox.event(message, ev.RETRIED, job_id=job.id, detail="retry requested", at=now)
            self.engine.refresh_message_status(message, now)
        self.session.flush()
        enqueue_after_commit(self.session, [job.id])
        return job

    def _fallback_of(self, job: DeliveryJob) -> DeliveryJob | None:
        """The job a fallback chain queued for its next connector when ``job`` dead-lettered (same
        message, ``replay_of`` this one; a replay is a new message), or None."""
        if job.status != ev.DEAD:
            return None
        return next((j for j in repo.replay_family(self.session, job=job)
                     if j.replay_of == job.id and j.message_id == job.message_id), None)

    def _refuse_if_fallen_back(self, job: DeliveryJob) -> None:
        """Retrying or replaying a dead letter whose delivery went on down its fallback chain would send
        the document by two channels: refused while a fallback job of it (or of that one, and so on) is
        open or delivered. When every fallback died (or was discarded), the dead letter may go again."""
        fallback, seen = self._fallback_of(job), {job.id}
        while fallback is not None and fallback.id not in seen:
            if fallback.status != ev.DEAD:
                raise Conflict(f"Job {job.id} dead-lettered and its delivery went on to fallback job {fallback.id} "
                               f"({fallback.status}); retrying or replaying it would deliver twice. Retry or "
                               f"replay job {fallback.id} instead")
            seen.add(fallback.id)
            fallback = self._fallback_of(fallback)

    def discard_job(self, job_id: int, *, reason: str, actor: str) -> DeliveryJob:
        """Give a dead letter up for good (say, a message for a partner that was retired): it is
        resolved without a delivery, no longer holds the later jobs of its order (they are woken) and
        is left out of bulk replays; the message's events record who discarded it and why.

        Refused for a job that is not dead, already resolved, or has a replay still under way."""
        reason = " ".join((reason or "").split())
        if not reason:
            raise BadRequest("A reason is required to discard a dead letter", expression="reason")
        if len(reason) > MAX_DISCARD_REASON:
            raise BadRequest(f"The reason is longer than {MAX_DISCARD_REASON} characters", expression="reason")
        job = repo.job_by_id(self.session, job_id=job_id, tenant=self.tenant)
        if job is None:
            raise NotFound(f"No delivery job {job_id}")
        if job.status != ev.DEAD:
            raise Conflict(f"Job {job_id} is {job.status}; only dead letters can be discarded")
        if job.resolved_at is not None:
            how = f"resolved by job {job.resolved_by}" if job.resolved_by is not None else "discarded"
            raise Conflict(f"Dead letter {job_id} is {how} already")
        family = repo.replay_family(self.session, job=job)
        replaying = next((j.id for j in family if j.status in ev.IN_FLIGHT_JOB_STATUSES), None)
        if replaying is not None:
            raise Conflict(f"Dead letter {job_id} is being replayed by job {replaying}; wait for it to finish")
        now = self.clock()
        detail = short_error(f"discarded by {actor}: {reason}")
        for dead in family:  # the same delivery: its replays that died and what it replays go with it
            if dead.status != ev.DEAD or dead.resolved_at is not None:
                continue
            dead.resolved_at, dead.resolved_by, dead.updated_at = now, None, now
            message = repo.message_by_id(self.session, tenant=self.tenant, message_id=dead.message_id)
            if message is not None:
                self.inbox.event(message, ev.DISCARDED, job_id=dead.id, detail=detail, at=now)
                message.updated_at = now
            self.engine.wake_held(dead.ordering_key, now)
        self.session.flush()
        return job

    def replay_message(
        self, message_id: str, *, only_dead: bool = False, job_ids: Collection[int] | None = None,
        resend: bool = False,
    ) -> Message:
        """A new message with the original's payload, delivered again to the original's connectors
        (only those of its dead jobs with ``only_dead``; only those of ``job_ids`` when given).

        Jobs still in flight (pending, running, retrying, or awaiting their partner's confirmation)
        are left out: their delivery is under way, and a replay of it would deliver it twice; a
        message with nothing else to replay is refused (409) naming them.

        The original keeps its status, errors and events; the replay links to it (``replay_of``).
        Each replay job keeps the idempotency key of the job it replays (a partner that already
        accepted that delivery treats the replay as a duplicate) and its place in the order of its
        patient. ``resend`` mints fresh keys instead: a deliberate second delivery that partners
        do not dedupe.
        """
        original = repo.message_by_id(self.session, tenant=self.tenant, message_id=message_id)
        if original is None:
            raise NotFound(f"No message {message_id}")
        if original.raw_payload is None and original.translated_payload is None:
            raise Conflict(f"Message {message_id} has no payload any more (retention) and cannot be replayed")
        jobs = repo.jobs_of(self.session, message_id=original.id)
        if only_dead:
            jobs = [j for j in jobs if j.status == ev.DEAD]
        if job_ids is not None:
            jobs = [j for j in jobs if j.id in job_ids]
        if not jobs:
            raise Conflict(f"Message {message_id} has no deliveries to replay")
        in_flight = [j for j in jobs if j.status in ev.IN_FLIGHT_JOB_STATUSES]
        jobs = [j for j in jobs if j.status not in ev.IN_FLIGHT_JOB_STATUSES]
        if not jobs:
            busy = ", ".join(f"job {j.id} is {j.status}" for j in in_flight)
            raise Conflict(f"Message {message_id} has no finished deliveries to replay ({busy}): wait until "
                           f"they succeed or die, or retry a retrying one")
        chosen = {j.id for j in jobs}
        kept = []
        for job in jobs:
            fallback = self._fallback_of(job)
            if fallback is not None and fallback.id in chosen:
                continue  # replayed with it: its fallback job stands for this delivery (ADR 0011)
            self._refuse_if_fallen_back(job)
            kept.append(job)
        jobs = kept
        now = self.clock()
        replay = self.inbox.record_replay(original, resend=resend, at=now)
        seen: dict[int, DeliveryJob] = {}
        for job in jobs:
            seen.setdefault(job.connector_id, job)
        ordering = jobs[0].ordering_key.split("|", 1)[1] if jobs[0].ordering_key else None
        new_jobs = self.outbox.create_jobs(replay, [(c, None) for c in seen], ordering, now, replay_of=seen,
                                           fresh_keys=resend)
        for job in new_jobs:
            self.inbox.event(replay, ev.QUEUED, job_id=job.id, at=now)
        enqueue_after_commit(self.session, [j.id for j in new_jobs])
        for job in new_jobs:  # what waited behind the dead letter now waits behind its replay
            self.engine.wake_held(job.ordering_key, now)
        return replay

    def replay_dead(self, *, connector: str | None = None, limit: int = 1000) -> list[Message]:
        """Replay the dead letters (of ``connector``) that were not replayed yet: one replay per message,
        to the connectors of its dead jobs only. The dead jobs stay dead; a replay job links to each.
        A dead letter whose fallback job is still in flight is left for later."""
        connector_id = self.config.get_connector(connector).id if connector else None
        job_ids = repo.job_ids(
            self.session,
            filter=repo.JobFilter(
                tenant=self.tenant, status=ev.DEAD, connector_id=connector_id, not_replayed=True,
                resolved=False,  # a discarded dead letter stays undelivered
            ),
            limit=limit,
        )
        by_message: dict[str, set[int]] = {}
        for job in (repo.job_by_id(self.session, job_id=i) for i in job_ids):
            if job is not None:
                by_message.setdefault(job.message_id, set()).add(job.id)
        replays = []
        for message_id, ids in by_message.items():
            message = repo.message_by_id(self.session, tenant=self.tenant, message_id=message_id)
            if message is None or (message.raw_payload is None and message.translated_payload is None):
                continue  # erased by retention: nothing left to send (replay_message would refuse it)
            try:
                replays.append(self.replay_message(message_id, only_dead=True, job_ids=ids))
            except Conflict:  # refused before writing anything: its delivery went on down its route's
                continue      # fallback chain and is still under way there (say, a fax awaiting its status)
        return replays

    def purge(self) -> int:
        before = self.clock() - timedelta(days=self.settings.message_retention_days)
        repo.purge_written(self.session, before=before)
        return repo.purge_payloads(self.session, before=before)

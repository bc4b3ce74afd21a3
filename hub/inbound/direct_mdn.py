"""Direct MDNs (RFC 3798) applied to the delivery they answer, and the MDN timeout.

A Direct delivery keeps its Message-ID as ``delivery_jobs.remote_id``; an MDN names it in
``Original-Message-ID``. :func:`apply_mdn` (the listener, for a verified MDN):

- ``processed`` / ``dispatched``: an ``acknowledged`` event on the delivered message, its detail
  starting ``MDN processed`` / ``MDN dispatched`` (what the timeout looks for);
- ``failed`` (or ``denied``/``deleted``, or an ``error`` modifier): the job goes back to retry through
  :meth:`hub.sync.engine.DeliveryEngine.remote_failure`, then dead letter.

:func:`sweep_mdn_timeouts` (beat task ``hub.direct_mdn_timeouts``): a delivered Direct job without a
processed (or dispatched) MDN within its connector's ``mdn_timeout_minutes`` of its delivery fails
the same way; the MDNs the listener sends (:mod:`hub.inbound.direct_mdn_out`) expect no answer.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from connectors.direct.message import Mdn
from hub.kit import utcnow
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.store.models import DeliveryJob, Message, MessageEvent
from hub.sync import events as ev
from hub.sync.config import SyncConfig
from hub.sync.delivery import DIRECT_MDN_EVENT
from hub.sync.engine import DeliveryEngine
from hub.sync.inbox import Inbox
from hub.unit_of_work import unit_of_work

__all__ = ["DEFAULT_TIMEOUT_MINUTES", "apply_mdn", "sweep_mdn_timeouts"]

log = logging.getLogger("hub.inbound.direct_mdn")
DEFAULT_TIMEOUT_MINUTES = 60
_RECEIVED = ("MDN processed", "MDN dispatched")


def apply_mdn(session: Session, settings: Settings, inbox: Inbox, record: Message, mdn: Mdn, *,
              tenant: str, source: str) -> int | None:
    """Apply ``mdn`` (received as ``record``) to the job of connector ``source`` that sent its
    original message; the job's id, or None when no delivery of that connector has that Message-ID."""
    instance = repo.connector_by_name(session, tenant=tenant, name=source)
    job = None if instance is None else repo.job_by_remote_id(
        session, tenant=tenant, connector_id=instance.id, remote_id=mdn.original_message_id)
    sent = None if job is None else repo.message_by_id(session, tenant=tenant, message_id=job.message_id)
    if job is None or sent is None:
        inbox.event(record, ev.ACKNOWLEDGED, detail=f"MDN {mdn.disposition} matches no delivery")
        return None
    if mdn.failed:
        detail = f"Direct MDN {mdn.disposition}{'/' + ','.join(mdn.modifiers) if mdn.modifiers else ''}"
        DeliveryEngine(session, settings=settings).remote_failure(job, detail[:200])
    else:
        final = " (final destination)" if mdn.final_destination_delivery else ""
        inbox.event(sent, ev.ACKNOWLEDGED, job_id=job.id, attempt=job.attempts,
                    detail=f"MDN {mdn.disposition}{final}")
    inbox.event(record, ev.ACKNOWLEDGED, detail=f"MDN {mdn.disposition} applied to job {job.id}")
    session.flush()
    return job.id


def _overdue(session: Session, *, connector_id: int, before: datetime, limit: int) -> list[DeliveryJob]:
    """Delivered jobs of a connector, delivered before ``before``, with no processed MDN since (not the
    MDNs the listener sent: an MDN is never answered by one)."""
    answered = exists().where(
        MessageEvent.job_id == DeliveryJob.id, MessageEvent.event == ev.ACKNOWLEDGED,
        MessageEvent.at >= DeliveryJob.finished_at,
        or_(*(MessageEvent.detail.like(prefix + "%") for prefix in _RECEIVED)))
    return list(session.scalars(
        select(DeliveryJob)
        .join(Message, Message.id == DeliveryJob.message_id)
        .where(DeliveryJob.connector_id == connector_id, DeliveryJob.status == ev.SUCCEEDED,
               DeliveryJob.remote_id.is_not(None), DeliveryJob.finished_at < before, ~answered,
               Message.event != DIRECT_MDN_EVENT)
        .order_by(DeliveryJob.id).limit(limit)))


def sweep_mdn_timeouts(settings: Settings, *, now: datetime | None = None, limit: int = 500) -> int:
    """Fail every delivered Direct job whose processed MDN is overdue; how many were failed."""
    moment = now or utcnow()
    failed = 0
    with unit_of_work(settings) as session:
        for instance in repo.all_enabled_connectors(session):
            if instance.kind != "direct":
                continue
            config = SyncConfig(session, tenant=instance.tenant_id, settings=settings).connector_config(instance)
            minutes = int(config.get("mdn_timeout_minutes") or DEFAULT_TIMEOUT_MINUTES)
            engine = DeliveryEngine(session, settings=settings, clock=lambda: moment)
            for job in _overdue(session, connector_id=instance.id, before=moment - timedelta(minutes=minutes),
                                limit=limit):
                engine.remote_failure(job, f"no processed Direct MDN within {minutes} minutes")
                failed += 1
    if failed:
        log.info("hub.direct.mdn_timeouts", extra={"jobs": failed})
    return failed

"""Direct MDNs (RFC 3798) applied to the delivery they answer (ADR 0012).

A Direct delivery keeps its Message-ID as ``delivery_jobs.remote_id``; an MDN names it in
``Original-Message-ID``. The HISP's acceptance leaves the job ``awaiting``; :func:`apply_mdn` (the
listener, for a verified MDN):

- ``processed`` / ``dispatched``: confirms the job (``succeeded``, :meth:`DeliveryEngine.confirm`);
  either way an ``acknowledged`` event of the delivered message, its detail starting ``MDN processed``
  / ``MDN dispatched`` (a dispatched MDN after the processed one is the final destination's word);
- ``failed`` (or ``denied``/``deleted``, or an ``error`` modifier): the job goes back to retry through
  :meth:`hub.sync.engine.DeliveryEngine.remote_failure`, then dead letter.

No processed (or dispatched) MDN within the connector's ``mdn_timeout_minutes`` fails the job the
same way: the sweep of every awaiting job, :func:`hub.sync.confirmations.sweep_unconfirmed` (beat task
``hub.confirmation_timeouts``; :func:`sweep_mdn_timeouts` and ``hub.direct_mdn_timeouts`` are its old
names). The MDNs the listener sends (:mod:`hub.inbound.direct_mdn_out`) expect no answer: never awaiting.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from connectors.direct.message import Mdn
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.store.models import Message
from hub.sync import events as ev
from hub.sync.confirmations import DEFAULT_TIMEOUT_MINUTES, sweep_unconfirmed
from hub.sync.engine import DeliveryEngine
from hub.sync.inbox import Inbox

__all__ = ["DEFAULT_TIMEOUT_MINUTES", "apply_mdn", "sweep_mdn_timeouts"]

log = logging.getLogger("hub.inbound.direct_mdn")


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
    engine = DeliveryEngine(session, settings=settings)
    if mdn.failed:
        detail = f"Direct MDN {mdn.disposition}{'/' + ','.join(mdn.modifiers) if mdn.modifiers else ''}"
        engine.remote_failure(job, detail[:200])
    else:
        final = " (final destination)" if mdn.final_destination_delivery else ""
        detail = f"MDN {mdn.disposition}{final}"
        if not engine.confirm(job, detail):  # confirmed already, or retried since: an event only
            late = "" if job.status == ev.SUCCEEDED else f", after the job was {job.status}; its state is unchanged"
            inbox.event(sent, ev.ACKNOWLEDGED, job_id=job.id, attempt=job.attempts, detail=detail + late)
    inbox.event(record, ev.ACKNOWLEDGED, detail=f"MDN {mdn.disposition} applied to job {job.id}")
    session.flush()
    return job.id


def sweep_mdn_timeouts(settings: Settings, *, now: datetime | None = None, limit: int = 500) -> int:
    """The old name of :func:`hub.sync.confirmations.sweep_unconfirmed` (every awaiting job past its
    deadline, Direct or not); how many were failed."""
    return sweep_unconfirmed(settings, now=now, limit=limit)

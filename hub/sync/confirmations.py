"""The deadline of the partners' confirmations (ADR 0012): beat task ``hub.confirmation_timeouts``.

A send the partner only accepted leaves its job ``awaiting`` until its ``confirm_by``
(``delivery_jobs.next_attempt_at`` of an awaiting job): a fax vendor's status webhook
(:mod:`hub.inbound.fax`) or a Direct MDN (:mod:`hub.inbound.direct_mdn`) confirms it or fails it. One
whose deadline passed without either counts as a failed attempt ("no ... within N minutes"): it retries
per its connector's policy, then dead-letters (and falls back down its route's chain), like any failure.
Only ``awaiting`` jobs are swept: a job that succeeded before confirmations were awaited is never sent again.
"""

from __future__ import annotations

import logging
from datetime import datetime

from hub.kit import utcnow
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.sync.config import SyncConfig
from hub.sync.engine import DeliveryEngine
from hub.unit_of_work import unit_of_work

__all__ = ["CONFIRMATIONS", "DEFAULT_TIMEOUT_MINUTES", "sweep_unconfirmed"]

log = logging.getLogger("hub.sync.confirmations")

#: connector kind -> (its config field of the confirmation timeout, what the confirmation is)
CONFIRMATIONS = {
    "direct": ("mdn_timeout_minutes", "processed Direct MDN"),
    "fax": ("status_timeout_minutes", "fax delivered status"),
}
DEFAULT_TIMEOUT_MINUTES = 60


def sweep_unconfirmed(settings: Settings, *, now: datetime | None = None, limit: int = 500) -> int:
    """Fail the attempt of every ``awaiting`` job past its ``confirm_by``; how many were failed."""
    moment = now or utcnow()
    failed = 0
    with unit_of_work(settings) as session:
        engine = DeliveryEngine(session, settings=settings, clock=lambda: moment)
        timeouts: dict[int, tuple[float, str]] = {}
        for job in repo.unconfirmed_jobs(session, now=moment, limit=limit):
            if job.connector_id not in timeouts:
                instance = repo.connector_by_id(session, connector_id=job.connector_id)
                field, what = CONFIRMATIONS.get(instance.kind if instance else "", ("", "confirmation"))
                config = (SyncConfig(session, tenant=instance.tenant_id, settings=settings).connector_config(instance)
                          if instance is not None and field else {})
                timeouts[job.connector_id] = (float(config.get(field) or DEFAULT_TIMEOUT_MINUTES), what)
            minutes, what = timeouts[job.connector_id]
            if engine.unconfirmed(job, minutes, what):
                failed += 1
    if failed:
        log.info("hub.confirmations.timed_out", extra={"jobs": failed})
    return failed

"""Celery tasks: thin. Load by id, call the sync service in one unit of work (which enqueues what it
asks for after commit)."""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task

from connectors.base import ConnectorError
from hub.billing.imports_poll import poll_billing_all
from hub.documents.intake import run_intake, sweep_received
from hub.referrals.jobs import refresh_all_tenants
from hub.settings import get_settings
from hub.sync.confirmations import sweep_unconfirmed
from hub.sync.delivery import deliver as deliver_job
from hub.sync.polling import poll_connector, pollable_connectors
from hub.unit_of_work import current_enqueuer, unit_of_work

log = logging.getLogger("workers.tasks")


@shared_task(name="hub.deliver", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver(job_id: int) -> None:
    settings = get_settings()
    delay = deliver_job(settings, job_id)
    if delay is not None:
        current_enqueuer(settings).deliver([job_id], countdown=delay)


@shared_task(name="hub.sweep", ignore_result=True)
def sweep() -> int:
    from hub.sync.engine import DeliveryEngine

    settings = get_settings()
    with unit_of_work(settings) as session:
        job_ids = DeliveryEngine(session, settings=settings).sweep()
    if job_ids:
        log.info("hub.sweep.requeued", extra={"jobs": len(job_ids)})
    return len(job_ids)


@shared_task(name="hub.purge", ignore_result=True)
def purge() -> int:
    from hub.sync.actions import SyncActions

    settings = get_settings()
    with unit_of_work(settings) as session:
        purged = SyncActions(session, tenant=settings.default_tenant, settings=settings).purge()
    if purged:
        log.info("hub.purge.done", extra={"payloads": purged})
    return purged


@shared_task(name="hub.poll", ignore_result=True, acks_late=True)
def poll(connector_id: int) -> int:
    """Poll one connector instance; the cursor advances only when its batch is committed."""
    try:
        report = poll_connector(get_settings(), connector_id)
    except ConnectorError:
        return 0  # logged by the poller; the next scheduled poll tries again from the same cursor
    return report.fetched if report else 0


@shared_task(name="hub.poll_all", ignore_result=True)
def poll_all() -> int:
    """Fan out one poll task per enabled connector that can poll (scheduled by beat)."""
    settings = get_settings()
    ids = pollable_connectors(settings)
    for connector_id in ids:
        poll.apply_async(args=[connector_id], queue=settings.task_queue)
    return len(ids)


@shared_task(name="hub.certification_clocks", ignore_result=True)
def certification_clocks(now: str | None = None) -> int:
    """Recompute every active plan's obligations: overdue ones change, and their Task updates are
    routed like any write (the reminders). ``now`` (ISO, UTC) recomputes as of another instant."""
    changed = refresh_all_tenants(get_settings(), now=datetime.fromisoformat(now) if now else None)
    if changed:
        log.info("hub.certification_clocks.changed", extra={"obligations": changed})
    return changed


@shared_task(name="hub.intake_document", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def intake_document(tenant: str, document_id: str) -> str:
    """Match one received document (what a channel may enqueue after its commit instead of running
    :func:`hub.documents.intake.run_intake` itself); returns the outcome."""
    return run_intake(get_settings(), tenant, document_id).outcome


@shared_task(name="hub.document_intake", ignore_result=True)
def document_intake() -> int:
    """The sweep of the document intake (every minute): every document received a while ago whose
    intake never ran (the process died after its channel's commit) is matched now."""
    done = sweep_received(get_settings())
    if done:
        log.info("hub.document_intake.swept", extra={"documents": done})
    return done


@shared_task(name="hub.confirmation_timeouts", ignore_result=True)
def confirmation_timeouts() -> int:
    """Every delivery still awaiting its partner's confirmation (a fax status, a Direct MDN) past its
    ``confirm_by`` counts as a failed attempt: retry, then dead letter (every minute)."""
    return sweep_unconfirmed(get_settings())


@shared_task(name="hub.direct_mdn_timeouts", ignore_result=True)
def direct_mdn_timeouts() -> int:
    """The old name of ``hub.confirmation_timeouts`` (a beat or a queue of an earlier release may still
    send it): the same sweep."""
    return sweep_unconfirmed(get_settings())


@shared_task(name="hub.billing_poll", ignore_result=True)
def billing_poll() -> int:
    """Poll every enabled clearinghouse (``x12_billing``) for response files: each is recorded, then
    acknowledged, then applied (:mod:`hub.billing.imports_poll`); returns how many files were new."""
    new = poll_billing_all(get_settings())
    if new:
        log.info("hub.billing_poll.imported", extra={"documents": new})
    return new

"""One delivery attempt: claim the job (lease), send through its connector, record the outcome.

Two short transactions around the partner call, so that no database transaction stays open while
a partner is slow, and so that the lease is visible to the sweeper if this worker dies.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from connectors import registry
from connectors.base import HL7_V2_ER7, X12_EDI, ConnectorError, Delivery, PermanentError, TransientError
from hub.settings import Settings
from hub.sync.engine import ClaimedJob, DeliveryEngine, Outcome
from hub.unit_of_work import unit_of_work

log = logging.getLogger("hub.sync.delivery")

ORDER_WAIT_SECONDS = 1.0
#: a job behind a dead letter is woken when that one is retried or replayed; this is only the fallback
HELD_WAIT_SECONDS = 30.0
#: the event of an MDN the Direct listener queues, and its payload's content type (a JSON description
#: the Direct connector turns into a signed, encrypted MDN)
DIRECT_MDN_EVENT = "direct.MDN"
DIRECT_MDN = "message/disposition-notification"

_connectors: dict[tuple[int, str], Any] = {}
_lock = threading.Lock()


def _connector(claimed: ClaimedJob) -> Any:
    """A connector object per (instance, config version), reused so HTTP connections stay open."""
    key = (claimed.connector_id, claimed.connector_version)
    with _lock:
        connector = _connectors.get(key)
        if connector is None:
            for old_key in [k for k in _connectors if k[0] == claimed.connector_id]:
                old = _connectors.pop(old_key)
                if hasattr(old, "close"):
                    old.close()
            config = dict(claimed.connector_config)
            timeout = config.pop("_timeout_seconds", None)
            if timeout is not None and "timeout_seconds" not in config:
                config["timeout_seconds"] = timeout
            connector = registry.create(claimed.connector_kind, config)
            _connectors[key] = connector
        return connector


def content_type_of(event: str) -> str:
    """What a job's payload is: FHIR JSON, or a message the hub made in a partner's format
    (:meth:`hub.sync.outbox.Outbox.send_raw`, events ``hl7v2.*``; ``direct.MDN``: an MDN the Direct
    listener answers with, :mod:`hub.inbound.direct_mdn_out`; ``x12.*``: an X12 interchange such as an
    837P claim file for the ``x12_billing`` connector)."""
    if event.startswith("hl7v2."):
        return HL7_V2_ER7
    if event.startswith("x12."):
        return X12_EDI
    if event == DIRECT_MDN_EVENT:
        return DIRECT_MDN
    return "application/fhir+json"


def attempt(claimed: ClaimedJob) -> Outcome:
    if claimed.payload is None:
        return Outcome(ok=False, permanent=True, detail="payload erased by retention; replay impossible")
    started = time.perf_counter()
    try:
        connector = _connector(claimed)
        result = connector.send(
            Delivery(
                payload=claimed.payload,
                content_type=content_type_of(claimed.event),
                idempotency_key=claimed.idempotency_key,
                correlation_id=claimed.correlation_id,
                resource_type=claimed.resource_type,
                resource_id=claimed.resource_id,
                event=claimed.event,
                previous=claimed.previous,
            )
        )
    except TransientError as exc:
        return Outcome(ok=False, detail=str(exc), retry_after=exc.retry_after,
                       duration_ms=(time.perf_counter() - started) * 1000)
    except PermanentError as exc:
        return Outcome(ok=False, permanent=True, detail=str(exc), duration_ms=(time.perf_counter() - started) * 1000)
    except ConnectorError as exc:
        return Outcome(ok=False, detail=str(exc), duration_ms=(time.perf_counter() - started) * 1000)
    except Exception as exc:  # a connector bug: retry (it may be transient) but never crash the worker
        log.exception("hub.delivery.connector_crashed", extra={"job_id": claimed.job_id})
        return Outcome(ok=False, detail=f"connector error ({type(exc).__name__})",
                       duration_ms=(time.perf_counter() - started) * 1000)
    detail = getattr(result, "detail", "") or (f"HTTP {result.status}" if result.status else "delivered")
    remote_id = getattr(result, "remote_id", None)
    confirm = getattr(result, "confirm_within_seconds", None)
    return Outcome(ok=True, detail=detail[:200], duration_ms=result.duration_ms,
                   written=tuple(getattr(result, "written", ()) or ()),
                   remote_id=str(remote_id)[:200] if remote_id else None,
                   links=tuple((str(link.rel), str(link.url), link.expires_at)
                               for link in getattr(result, "links", ()) or ()),
                   # a confirmation can only find its delivery by the partner's id of it
                   confirm_within=float(confirm) if confirm and remote_id else None)


def deliver(settings: Settings, job_id: int) -> float | None:
    """Run one attempt of job ``job_id``; returns seconds until it should be tried again, or None."""

    with unit_of_work(settings) as session:
        engine = DeliveryEngine(session, settings=settings)
        blocker = engine.blocked_by(job_id)
        if blocker is not None:
            blocker_id, blocker_status = blocker
            if blocker_status == "dead":
                # order per patient holds across dead letters: wait until it is retried or replayed
                engine.hold(job_id, blocker_id, HELD_WAIT_SECONDS)
                log.info("hub.delivery.held", extra={"job_id": job_id, "held_by": blocker_id})
                return HELD_WAIT_SECONDS
            # an earlier message about the same patient to the same connector is still open
            engine.postpone(job_id, ORDER_WAIT_SECONDS)
            return ORDER_WAIT_SECONDS
        claimed = engine.claim(job_id)
    if claimed is None:
        return None
    outcome = attempt(claimed)
    with unit_of_work(settings) as session:
        engine = DeliveryEngine(session, settings=settings)
        delay = engine.finish(claimed, outcome)
        status = engine.job_status(job_id)
    log.info(
        "hub.delivery.attempt",
        extra={"job_id": job_id, "message_id": claimed.message_id, "connector_id": claimed.connector_id,
               "attempt": claimed.attempt, "outcome": status, "retry_in": round(delay, 3) if delay else None},
    )
    return delay

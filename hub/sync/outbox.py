"""The outbox: a FHIR change that matches routes becomes delivery jobs, in the transaction of the write.

:meth:`Outbox.on_change` is a listener of the FHIR store (``hub.services``): for the routes of the
tenant that match a change (:func:`route_matches`: resource type, interaction, FHIRPath filter) it
records the change as a message (:class:`hub.sync.inbox.Inbox`) and writes one job per route, ordered
per patient (:func:`patient_of`) and keyed for idempotency (:func:`delivery_key`). A change made by
an intake of a connector (``session.info[ORIGIN_KEY]``) is never routed back to it. A route with a
fallback chain gets its job for the first connector of the chain that can address the change
(:mod:`hub.sync.chains`, ADR 0011); when none can, the job is dead-lettered at once, with the reason.
:meth:`Outbox.send_raw` queues a message already in a partner's format (an HL7 v2 application ACK)
for one connector, outside routing. Job ids are enqueued after commit (:func:`hub.unit_of_work.enqueue_after_commit`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from hub.errors import NotFound
from hub.fhir.events import Change
from hub.kit import parse_reference, utcnow
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.store.models import DeliveryJob, Message, Route
from hub.sync import chains
from hub.sync import events as ev
from hub.sync.inbox import Inbox
from hub.unit_of_work import enqueue_after_commit

#: session.info key: the connector a change came from (never routed back to it)
ORIGIN_KEY = "hub.origin_connector"
PATIENT_PATHS = ("subject", "patient", "for", "beneficiary")


def delivery_key(message: Message, connector_id: int) -> str:
    """The idempotency key of delivering ``message`` to a connector: the message (a replay keeps the
    key of what it replays), the connector and the resource version (no names, no identifiers)."""
    return f"{message.id}.c{connector_id}.v{message.resource_version or 0}"


def patient_of(resource: dict[str, Any] | None) -> str | None:
    if not resource:
        return None
    if resource.get("resourceType") == "Patient":
        return f"Patient/{resource.get('id')}"
    if resource.get("resourceType") == "Appointment":  # the patient is one of the participants
        for participant in resource.get("participant") or []:
            actor = participant.get("actor") if isinstance(participant, dict) else None
            parsed = parse_reference(actor.get("reference") or "") if isinstance(actor, dict) else None
            if parsed and parsed[0] == "Patient":
                return f"Patient/{parsed[1]}"
        return None
    for key in PATIENT_PATHS:
        value = resource.get(key)
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            parsed = parse_reference(value["reference"])
            if parsed and parsed[0] == "Patient":
                return f"Patient/{parsed[1]}"
    return None


def route_matches(route: Route, change: Change) -> bool:
    interactions = {i.strip() for i in route.interactions.split(",")}
    if "*" not in interactions and change.interaction not in interactions:
        return False
    if route.filter:
        if change.resource is None:
            return False
        from fhirpathpy import evaluate

        try:
            result = evaluate(change.resource, route.filter, [])
        except Exception:  # a filter that cannot be evaluated on this resource does not match
            return False
        return result == [True]
    return True


class Outbox:
    """Routing of one tenant's FHIR changes, and raw sends, into delivery jobs."""

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

    def on_change(self, change: Change) -> list[int]:
        """Route a FHIR write: a message plus one delivery job per matching route (same transaction)."""
        origin = self.session.info.get(ORIGIN_KEY)
        routes = [
            r for r in repo.routes_for(self.session, tenant=self.tenant, resource_type=change.resource_type)
            if (r.connector_id != origin or chains.is_chain(r)) and route_matches(r, change)
        ]
        targets: list[tuple[int, int | None]] = []
        unaddressable: dict[int, str] = {}  # route id -> why its job is dead at once
        for route in routes:
            if not chains.is_chain(route):
                targets.append((route.connector_id, route.id))
                continue
            chain = [c for c in chains.chain_of(route) if c != origin]
            if not chain:
                continue
            chosen, passed = chains.choose(self.session, tenant=self.tenant, settings=self.settings, chain=chain,
                                           resource=change.resource,
                                           event=f"{change.resource_type}.{change.interaction}")
            if chosen is None:
                unaddressable[route.id] = f"{chains.UNADDRESSABLE} (tried {', '.join(passed)})"
            targets.append((chosen if chosen is not None else chain[0], route.id))
        if not targets:
            return []
        now = self.clock()
        message = self.inbox.record_change(change, at=now)
        # order per patient; what concerns no patient is kept in order per resource
        ordering = patient_of(change.resource) or f"{change.resource_type}/{change.resource_id}"
        jobs = self.create_jobs(message, targets, ordering, now)
        self.inbox.event(message, ev.ROUTED, detail=", ".join(r.name for r in routes), at=now)
        for job in jobs:
            self.inbox.event(message, ev.QUEUED, job_id=job.id, at=now)
        for job in jobs:
            if job.route_id in unaddressable:
                self._dead_at_once(message, job, unaddressable[job.route_id], now)
        enqueue_after_commit(self.session, [j.id for j in jobs if j.status == ev.PENDING])
        return [j.id for j in jobs]

    def _dead_at_once(self, message: Message, job: DeliveryJob, reason: str, now: datetime) -> None:
        """A job no connector of its route's chain can address: dead-lettered without an attempt."""
        job.status = ev.DEAD
        job.last_error = reason[:500]
        job.finished_at = job.updated_at = now
        self.inbox.event(message, ev.DEAD_LETTERED, job_id=job.id, detail=f"permanent error: {job.last_error}",
                         attempt=0, at=now)
        statuses = {j.status for j in repo.jobs_of(self.session, message_id=message.id)}
        if statuses == {ev.DEAD}:
            message.status = "dead"
        message.error = message.error or job.last_error
        message.updated_at = now
        self.session.flush()

    def create_jobs(
        self,
        message: Message,
        targets: Sequence[tuple[int, int | None]],
        ordering: str | None,
        now: datetime,
        replay_of: dict[int, DeliveryJob] | None = None,
        fresh_keys: bool = False,
    ) -> list[DeliveryJob]:
        """One job per (connector, route). A replay job (``replay_of``: connector id -> replayed job)
        takes the place of the job it replays in its order, and its idempotency key unless
        ``fresh_keys``: the partner sees a replay of the same delivery as the same delivery."""
        replay_of = replay_of or {}
        jobs = []
        for connector_id, route_id in targets:
            instance = repo.connector_by_id(self.session, connector_id=connector_id)
            if instance is None:
                continue
            job = DeliveryJob(
                tenant_id=message.tenant_id,
                message_id=message.id,
                connector_id=connector_id,
                route_id=route_id,
                status=ev.PENDING,
                attempts=0,
                max_attempts=instance.max_attempts,
                next_attempt_at=now,
                idempotency_key="",
                ordering_key=f"{connector_id}|{ordering}" if ordering else None,
                replay_of=replay_of[connector_id].id if connector_id in replay_of else None,
                created_at=now,
                updated_at=now,
            )
            self.session.add(job)
            jobs.append(job)
        self.session.flush()
        for job in jobs:
            replayed = replay_of.get(job.connector_id)
            job.ordering_seq = (replayed.ordering_seq or replayed.id) if replayed is not None else job.id
            if replayed is not None and not fresh_keys:
                job.idempotency_key = replayed.idempotency_key
            else:
                job.idempotency_key = delivery_key(message, job.connector_id)
        self.session.flush()
        return jobs

    def send_raw(self, *, connector: str, raw: str, event: str, reply_to: Message | None = None,
                 kind: str | None = None) -> Message:
        """Queue a message already in the partner's format (e.g. an HL7 v2 application ACK) for one
        connector of this tenant (of ``kind`` when given), outside routing: an outbound message and
        its job, delivered after commit."""
        instance = repo.connector_by_name(self.session, tenant=self.tenant, name=connector)
        if instance is None or (kind is not None and instance.kind != kind):
            raise NotFound(f"No {kind + ' ' if kind else ''}connector named {connector!r}")
        now = self.clock()
        message = self.inbox.record_outbound(event=event, raw=raw, reply_to=reply_to, at=now)
        jobs = self.create_jobs(message, [(instance.id, None)], None, now)
        self.inbox.event(message, ev.ROUTED, detail=connector, at=now)
        for job in jobs:
            self.inbox.event(message, ev.QUEUED, job_id=job.id, at=now)
        enqueue_after_commit(self.session, [j.id for j in jobs])
        return message

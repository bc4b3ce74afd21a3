"""Sync service: routing FHIR changes into the outbox, claiming and finishing deliveries,
sweeping lost jobs, retry and replay. Used by the API (through the FHIR service), the workers,
the admin API and the CLI. The caller owns the transaction; enqueueing happens after commit
(job ids collected in ``session.info[ENQUEUE_KEY]``).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from hub.crypto import cipher, decrypt, encrypt
from hub.errors import BadRequest, Conflict, NotFound
from hub.fhir.events import Change
from hub.kit import parse_reference, utcnow
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.store.models import ConnectorInstance, DeliveryJob, Message, MessageEvent, Route
from hub.sync import events as ev
from hub.sync.context import CONTEXT_PREVIOUS, CONTEXT_REFERENCES, context_wanted, with_references
from hub.unit_of_work import ENQUEUE_KEY

#: session.info key: the connector a change came from (never routed back to it)
ORIGIN_KEY = "hub.origin_connector"
PATIENT_PATHS = ("subject", "patient", "for", "beneficiary")
MAX_ERROR = 500
MAX_DISCARD_REASON = 300  # with "discarded by <client>: " the event detail stays within MAX_ERROR


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


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


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


class _RaiseOnSyntaxError:
    """ANTLR error listener: fhirpathpy's own parser silently recovers from syntax errors."""

    def syntaxError(self, recognizer: Any, offending: Any, line: int, column: int, msg: str, e: Any) -> None:  # noqa: N802
        raise ValueError(f"column {column + 1}: {msg}")

    def reportAmbiguity(self, *args: Any) -> None:  # noqa: N802
        pass

    def reportAttemptingFullContext(self, *args: Any) -> None:  # noqa: N802
        pass

    def reportContextSensitivity(self, *args: Any) -> None:  # noqa: N802
        pass


def check_fhirpath(expression: str, resource_type: str = "*") -> None:
    """Refuse a filter that does not parse, or that fails even on an empty resource (unknown
    function, undefined %variable): it could never match."""
    from antlr4 import CommonTokenStream, InputStream
    from fhirpathpy import evaluate
    from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
    from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

    try:
        lexer = FHIRPathLexer(InputStream(expression))
        lexer.removeErrorListeners()
        lexer.addErrorListener(_RaiseOnSyntaxError())
        parser = FHIRPathParser(CommonTokenStream(lexer))
        parser.removeErrorListeners()
        parser.addErrorListener(_RaiseOnSyntaxError())
        parser.entireExpression()  # the whole text, up to EOF
        evaluate({"resourceType": resource_type if resource_type != "*" else "Resource"}, expression, [])
    except Exception as exc:
        raise BadRequest(f"The route filter is not valid FHIRPath: {str(exc).splitlines()[0][:200]}") from None


class SyncService:
    def __init__(
        self,
        session: Session,
        *,
        tenant: str,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.session = session
        self.tenant = tenant
        self.settings = settings
        self.clock = clock
        self.rng = rng
        self.box = cipher(settings.secret_key.get_secret_value(), settings.previous_keys)

    # ------------------------------------------------------------ events

    def _event(
        self,
        message: Message,
        event: str,
        *,
        job_id: int | None = None,
        detail: str | None = None,
        duration_ms: float | None = None,
        attempt: int | None = None,
        at: datetime | None = None,
    ) -> None:
        self.session.add(
            MessageEvent(
                tenant_id=message.tenant_id,
                message_id=message.id,
                job_id=job_id,
                event=event,
                at=at or self.clock(),
                duration_ms=duration_ms,
                attempt=attempt,
                detail=detail,
            )
        )

    def _enqueue_after_commit(self, job_ids: Sequence[int]) -> None:
        self.session.info.setdefault(ENQUEUE_KEY, []).extend(job_ids)

    # ------------------------------------------------------------ connectors and routes

    def add_connector(
        self,
        *,
        name: str,
        kind: str,
        config: dict[str, Any],
        max_attempts: int = 8,
        timeout_seconds: float = 10.0,
        backoff_base_seconds: float = 2.0,
        backoff_max_seconds: float = 600.0,
        enabled: bool = True,
        replace: bool = False,
    ) -> ConnectorInstance:
        from connectors import registry
        from connectors.base import ConnectorError

        try:
            registry.validate_config(kind, config)
        except ConnectorError as exc:
            raise BadRequest(str(exc)) from None
        now = self.clock()
        existing = repo.connector_by_name(self.session, tenant=self.tenant, name=name)
        if existing is not None and not replace:
            raise Conflict(f"A connector named {name!r} exists already")
        instance = existing or ConnectorInstance(tenant_id=self.tenant, name=name, created_at=now)
        instance.kind = kind
        instance.config = encrypt(self.box, json.dumps(config)) or ""
        instance.enabled = enabled
        instance.max_attempts = max_attempts
        instance.timeout_seconds = timeout_seconds
        instance.backoff_base_seconds = backoff_base_seconds
        instance.backoff_max_seconds = backoff_max_seconds
        instance.updated_at = now
        if existing is None:
            self.session.add(instance)
        self.session.flush()
        return instance

    def connector_config(self, instance: ConnectorInstance) -> dict[str, Any]:
        return json.loads(decrypt(self.box, instance.config) or b"{}")

    def get_connector(self, name: str) -> ConnectorInstance:
        instance = repo.connector_by_name(self.session, tenant=self.tenant, name=name)
        if instance is None:
            raise NotFound(f"No connector named {name!r}")
        return instance

    def add_route(
        self,
        *,
        name: str,
        resource_type: str,
        connector: str,
        interactions: str = "create,update",
        filter: str | None = None,
        enabled: bool = True,
        replace: bool = False,
    ) -> Route:
        instance = self.get_connector(connector)
        if filter:
            check_fhirpath(filter, resource_type)
        allowed = {"create", "update", "delete", "*"}
        if not {i.strip() for i in interactions.split(",")} <= allowed:
            raise BadRequest("interactions is a comma list of create, update, delete (or *)")
        existing = repo.route_by_name(self.session, tenant=self.tenant, name=name)
        if existing is not None and not replace:
            raise Conflict(f"A route named {name!r} exists already")
        route = existing or Route(tenant_id=self.tenant, name=name, created_at=self.clock())
        route.resource_type = resource_type
        route.interactions = interactions
        route.filter = filter or None
        route.connector_id = instance.id
        route.enabled = enabled
        if existing is None:
            self.session.add(route)
        self.session.flush()
        return route

    def delete_route(self, route_id: int) -> None:
        route = repo.route_by_id(self.session, tenant=self.tenant, route_id=route_id)
        if route is None:
            raise NotFound(f"No route {route_id}")
        self.session.delete(route)
        self.session.flush()

    def rename_route(self, route_id: int, name: str) -> Route:
        """Give a route a new name (it keeps its id); another route's name is a conflict."""
        route = repo.route_by_id(self.session, tenant=self.tenant, route_id=route_id)
        if route is None:
            raise NotFound(f"No route {route_id}")
        other = repo.route_by_name(self.session, tenant=self.tenant, name=name)
        if other is not None and other.id != route.id:
            raise Conflict(f"A route named {name!r} exists already")
        route.name = name
        self.session.flush()
        return route

    def load_config(self, document: dict[str, Any]) -> tuple[int, int]:
        """Upsert connectors and routes from a parsed YAML/JSON document (see docs/routes.example.yaml)."""
        if not isinstance(document, dict):
            raise BadRequest("The routes file must be a mapping with 'connectors' and/or 'routes'")
        connectors = document.get("connectors") or []
        routes = document.get("routes") or []
        for index, item in enumerate(connectors):
            if not isinstance(item, dict) or "name" not in item or "kind" not in item:
                raise BadRequest(f"connectors[{index}] needs name and kind")
            options = {k: item[k] for k in ("max_attempts", "timeout_seconds", "backoff_base_seconds",
                                            "backoff_max_seconds", "enabled") if k in item}
            self.add_connector(name=item["name"], kind=item["kind"], config=item.get("config") or {},
                               replace=True, **options)
        for index, item in enumerate(routes):
            if not isinstance(item, dict) or not {"name", "resource_type", "connector"} <= set(item):
                raise BadRequest(f"routes[{index}] needs name, resource_type and connector")
            interactions = item.get("interactions", "create,update")
            if isinstance(interactions, list):
                interactions = ",".join(interactions)
            self.add_route(name=item["name"], resource_type=item["resource_type"], connector=item["connector"],
                           interactions=interactions, filter=item.get("filter"),
                           enabled=item.get("enabled", True), replace=True)
        return len(connectors), len(routes)

    # ------------------------------------------------------------ intake

    def on_change(self, change: Change) -> list[int]:
        """Route a FHIR write: a message plus one delivery job per matching route (same transaction)."""
        origin = self.session.info.get(ORIGIN_KEY)
        routes = [
            r for r in repo.routes_for(self.session, tenant=self.tenant, resource_type=change.resource_type)
            if r.connector_id != origin and route_matches(r, change)
        ]
        if not routes:
            return []
        from hub.context import current_correlation_id

        now = self.clock()
        message = Message(
            id=str(uuid.uuid4()),
            tenant_id=self.tenant,
            direction="inbound",
            source="fhir-api",
            event=f"{change.resource_type}.{change.interaction}",
            resource_type=change.resource_type,
            resource_id=change.resource_id,
            resource_version=change.version_id,
            correlation_id=current_correlation_id(),
            status="queued",
            # a deletion has no content: its partners get the reference of what was deleted
            raw_payload=encrypt(self.box, change.content if change.content is not None else json.dumps(
                {"resourceType": change.resource_type, "id": change.resource_id})),
            created_at=now,
            updated_at=now,
        )
        self.session.add(message)
        self.session.flush()
        self._event(message, ev.RECEIVED, detail="FHIR REST write", at=now)
        self._event(message, ev.TRANSLATED, detail="validated FHIR R4", at=now)
        # order per patient; what concerns no patient is kept in order per resource
        ordering = patient_of(change.resource) or f"{change.resource_type}/{change.resource_id}"
        jobs = self._create_jobs(message, [(r.connector_id, r.id) for r in routes], ordering, now)
        self._event(message, ev.ROUTED, detail=", ".join(r.name for r in routes), at=now)
        for job in jobs:
            self._event(message, ev.QUEUED, job_id=job.id, at=now)
        self._enqueue_after_commit([j.id for j in jobs])
        return [j.id for j in jobs]

    def _create_jobs(
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
        from hub.context import current_correlation_id

        instance = repo.connector_by_name(self.session, tenant=self.tenant, name=connector)
        if instance is None or (kind is not None and instance.kind != kind):
            raise NotFound(f"No {kind + ' ' if kind else ''}connector named {connector!r}")
        now = self.clock()
        message = Message(
            id=str(uuid.uuid4()),
            tenant_id=self.tenant,
            direction="outbound",
            source=reply_to.source if reply_to is not None else "hub",
            event=event,
            correlation_id=reply_to.correlation_id if reply_to is not None else current_correlation_id(),
            status="queued",
            raw_payload=encrypt(self.box, raw),
            created_at=now,
            updated_at=now,
        )
        self.session.add(message)
        self.session.flush()
        detail = f"answer to message {reply_to.id}" if reply_to is not None else "queued by the hub"
        self._event(message, ev.RECEIVED, detail=detail, at=now)
        jobs = self._create_jobs(message, [(instance.id, None)], None, now)
        self._event(message, ev.ROUTED, detail=connector, at=now)
        for job in jobs:
            self._event(message, ev.QUEUED, job_id=job.id, at=now)
        self._enqueue_after_commit([j.id for j in jobs])
        return message

    def record_inbound(self, *, source: str, external_id: str | None, raw: bytes | str,
                       event: str = "inbound") -> Message:
        """Store a message received from a partner before anything else can fail (the inbox)."""
        from hub.context import current_correlation_id

        now = self.clock()
        message = Message(
            id=str(uuid.uuid4()),
            tenant_id=self.tenant,
            direction="inbound",
            source=source,
            external_id=external_id,
            event=event,
            correlation_id=current_correlation_id(),
            status="received",
            raw_payload=encrypt(self.box, raw),
            created_at=now,
            updated_at=now,
        )
        self.session.add(message)
        self.session.flush()
        self._event(message, ev.RECEIVED, detail=source, at=now)
        return message

    def mark_translated(self, message: Message, resource: dict[str, Any]) -> None:
        now = self.clock()
        message.resource_type = resource.get("resourceType")
        message.event = f"{message.resource_type}.received"
        message.status = "unrouted" if message.status == "received" else message.status
        message.updated_at = now
        self._event(message, ev.TRANSLATED, detail="FHIR R4 resource stored", at=now)
        self.session.flush()

    def mark_rejected(self, message: Message, reason: str) -> None:
        now = self.clock()
        message.status = "rejected"
        message.error = _short(reason)
        message.updated_at = now
        self._event(message, ev.REJECTED, detail=message.error, at=now)
        self.session.flush()

    def record_rejected(self, *, source: str, event: str, raw: bytes | str, reason: str) -> Message:
        """Keep a message the hub could not accept, for inspection (its payload encrypted)."""
        from hub.context import current_correlation_id

        now = self.clock()
        message = Message(
            id=str(uuid.uuid4()),
            tenant_id=self.tenant,
            direction="inbound",
            source=source,
            event=event,
            correlation_id=current_correlation_id(),
            status="rejected",
            error=_short(reason),
            raw_payload=encrypt(self.box, raw),
            created_at=now,
            updated_at=now,
        )
        self.session.add(message)
        self.session.flush()
        self._event(message, ev.RECEIVED, detail=source, at=now)
        self._event(message, ev.REJECTED, detail=_short(reason), at=now)
        self.session.flush()
        return message

    # ------------------------------------------------------------ delivery

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

    def _wake_held(self, ordering_key: str | None, now: datetime) -> None:
        if ordering_key:
            self._enqueue_after_commit(repo.wake_held(self.session, ordering_key=ordering_key, now=now))

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
        payload = decrypt(self.box, message.translated_payload or message.raw_payload)
        previous = None
        wanted = context_wanted(instance.kind)
        if payload is not None and CONTEXT_REFERENCES in wanted:
            payload = with_references(self.session, tenant=job.tenant_id, base=self.settings.fhir_base,
                                      payload=payload)
        if CONTEXT_PREVIOUS in wanted and message.resource_type and message.resource_id:
            last = repo.last_delivered(self.session, tenant=job.tenant_id, connector_id=job.connector_id,
                                       resource_type=message.resource_type,
                                       resource_id=message.resource_id, before=message.created_at,
                                       exclude_message=message.id)
            previous = decrypt(self.box, last.translated_payload or last.raw_payload) if last is not None else None
        return ClaimedJob(
            job_id=job.id,
            tenant=job.tenant_id,
            message_id=message.id,
            connector_id=instance.id,
            connector_kind=instance.kind,
            connector_config={**self.connector_config(instance), "_timeout_seconds": instance.timeout_seconds},
            connector_version=instance.updated_at.isoformat(),
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

    def finish(self, claimed: ClaimedJob, outcome: Outcome) -> float | None:
        """Record the outcome of an attempt; returns the retry delay in seconds, or None."""
        now = self.clock()
        job = repo.job_by_id(self.session, job_id=claimed.job_id)
        message = repo.message_by_id(self.session, tenant=None, message_id=claimed.message_id)
        instance = repo.connector_by_id(self.session, connector_id=claimed.connector_id)
        assert job is not None and message is not None and instance is not None
        if job.status != ev.RUNNING or job.attempts != claimed.attempt:
            return None  # the lease expired and another attempt took over: its outcome wins
        job.updated_at = now
        job.locked_until = None
        delay = None
        if outcome.ok:
            job.status = ev.SUCCEEDED
            job.finished_at = now
            self._event(message, ev.SENT, job_id=job.id, detail=outcome.detail, duration_ms=outcome.duration_ms,
                        attempt=job.attempts, at=now)
            self._event(message, ev.ACKNOWLEDGED, job_id=job.id, detail=outcome.detail, attempt=job.attempts, at=now)
            repo.record_written(self.session, tenant=job.tenant_id, connector_id=job.connector_id,
                                external_ids=outcome.written, now=now)
            self._resolve(job, now)
            self._wake_held(job.ordering_key, now)
        else:
            job.last_error = _short(outcome.detail)
            if outcome.permanent or job.attempts >= job.max_attempts:
                job.status = ev.DEAD
                job.finished_at = now
                why = "permanent error" if outcome.permanent else f"{job.attempts} attempts failed"
                self._event(message, ev.FAILED, job_id=job.id, detail=job.last_error,
                            duration_ms=outcome.duration_ms, attempt=job.attempts, at=now)
                self._event(message, ev.DEAD_LETTERED, job_id=job.id, detail=f"{why}: {job.last_error}",
                            attempt=job.attempts, at=now)
            else:
                delay = self.backoff(instance, job.attempts, outcome.retry_after)
                job.status = ev.RETRYING
                job.next_attempt_at = now + timedelta(seconds=delay)
                self._event(message, ev.FAILED, job_id=job.id,
                            detail=f"{job.last_error}; retry {job.attempts + 1}/{job.max_attempts} in {delay:.1f}s",
                            duration_ms=outcome.duration_ms, attempt=job.attempts, at=now)
        self._refresh_message_status(message, now)
        self.session.flush()
        return delay

    def backoff(self, instance: ConnectorInstance, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (50-100% of the step), at least Retry-After, at most the cap."""
        step = min(instance.backoff_max_seconds, instance.backoff_base_seconds * (2 ** max(0, attempt - 1)))
        delay = step * (0.5 + 0.5 * self.rng())
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, instance.backoff_max_seconds)

    def _refresh_message_status(self, message: Message, now: datetime) -> None:
        statuses = {j.status for j in repo.jobs_of(self.session, message_id=message.id)}
        if not statuses:
            return
        if statuses <= {ev.SUCCEEDED}:
            message.status = "delivered"
        elif ev.DEAD in statuses and not statuses & set(ev.OPEN_JOB_STATUSES):
            message.status = "dead"
        elif ev.RETRYING in statuses:
            message.status = "retrying"
        else:
            message.status = "queued"
        message.error = next(
            (j.last_error for j in repo.jobs_of(self.session, message_id=message.id) if j.status == ev.DEAD), None
        ) or message.error
        message.updated_at = now

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
                    self._refresh_message_status(message, now)
            job.next_attempt_at = now
            job.updated_at = now
        self.session.flush()
        self._enqueue_after_commit([j.id for j in jobs])
        return [j.id for j in jobs]

    # ------------------------------------------------------------ admin actions

    def retry_job(self, job_id: int) -> DeliveryJob:
        """Try a failed or dead job again now (same job, same idempotency key)."""
        job = repo.job_by_id(self.session, job_id=job_id, tenant=self.tenant)
        if job is None:
            raise NotFound(f"No delivery job {job_id}")
        if job.status not in (ev.DEAD, ev.RETRYING):
            raise Conflict(f"Job {job_id} is {job.status}; only dead or retrying jobs can be retried")
        now = self.clock()
        if job.status == ev.DEAD:
            job.max_attempts = job.attempts + max(1, job.max_attempts)
            job.finished_at = None
            if job.resolved_by is None:  # a retry takes back a discard: should it die again, it is outstanding
                job.resolved_at = None
        job.status = ev.PENDING
        job.next_attempt_at = now
        job.updated_at = now
        self._wake_held(job.ordering_key, now)
        message = repo.message_by_id(self.session, tenant=self.tenant, message_id=job.message_id)
        if message is not None:
            self._event(message, ev.RETRIED, job_id=job.id, detail="retry requested", at=now)
            self._refresh_message_status(message, now)
        self.session.flush()
        self._enqueue_after_commit([job.id])
        return job

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
        replaying = next((j.id for j in family if j.status in ev.OPEN_JOB_STATUSES), None)
        if replaying is not None:
            raise Conflict(f"Dead letter {job_id} is being replayed by job {replaying}; wait for it to finish")
        now = self.clock()
        detail = _short(f"discarded by {actor}: {reason}")
        for dead in family:  # the same delivery: its replays that died and what it replays go with it
            if dead.status != ev.DEAD or dead.resolved_at is not None:
                continue
            dead.resolved_at, dead.resolved_by, dead.updated_at = now, None, now
            message = repo.message_by_id(self.session, tenant=self.tenant, message_id=dead.message_id)
            if message is not None:
                self._event(message, ev.DISCARDED, job_id=dead.id, detail=detail, at=now)
                message.updated_at = now
            self._wake_held(dead.ordering_key, now)
        self.session.flush()
        return job

    def replay_message(
        self, message_id: str, *, only_dead: bool = False, job_ids: Collection[int] | None = None,
        resend: bool = False,
    ) -> Message:
        """A new message with the original's payload, delivered again to the original's connectors
        (only those of its dead jobs with ``only_dead``; only those of ``job_ids`` when given).

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
        now = self.clock()
        replay = Message(
            id=str(uuid.uuid4()),
            tenant_id=original.tenant_id,
            direction=original.direction,
            source=original.source,
            event=original.event,
            resource_type=original.resource_type,
            resource_id=original.resource_id,
            resource_version=original.resource_version,
            correlation_id=original.correlation_id,
            status="queued",
            raw_payload=original.raw_payload,
            translated_payload=original.translated_payload,
            replay_of=original.id,
            created_at=now,
            updated_at=now,
        )
        self.session.add(replay)
        self.session.flush()
        how = "resend (new idempotency keys)" if resend else "replay"
        self._event(replay, ev.REPLAYED, detail=f"{how} of {original.id}", at=now)
        self._event(original, ev.REPLAYED, detail=f"replayed as {replay.id}", at=now)
        seen: dict[int, DeliveryJob] = {}
        for job in jobs:
            seen.setdefault(job.connector_id, job)
        ordering = jobs[0].ordering_key.split("|", 1)[1] if jobs[0].ordering_key else None
        new_jobs = self._create_jobs(replay, [(c, None) for c in seen], ordering, now, replay_of=seen,
                                     fresh_keys=resend)
        for job in new_jobs:
            self._event(replay, ev.QUEUED, job_id=job.id, at=now)
        self._enqueue_after_commit([j.id for j in new_jobs])
        for job in new_jobs:  # what waited behind the dead letter now waits behind its replay
            self._wake_held(job.ordering_key, now)
        return replay

    def replay_dead(self, *, connector: str | None = None, limit: int = 1000) -> list[Message]:
        """Replay the dead letters (of ``connector``) that were not replayed yet: one replay per message,
        to the connectors of its dead jobs only. The dead jobs stay dead; a replay job links to each."""
        connector_id = self.get_connector(connector).id if connector else None
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
            replays.append(self.replay_message(message_id, only_dead=True, job_ids=ids))
        return replays

    def purge(self) -> int:
        before = self.clock() - timedelta(days=self.settings.message_retention_days)
        repo.purge_written(self.session, before=before)
        return repo.purge_payloads(self.session, before=before)

"""Read models of the sync engine for administrators (admin API, CLI): plain dicts, no payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from hub.errors import BadRequest, NotFound
from hub.kit import utcnow
from hub.store import sync_repository as repo
from hub.store.models import ConnectorInstance, DeliveryJob, Message, MessageEvent, Route
from hub.sync import events as ev

DEAD_LETTER_STATES = ("outstanding", "resolved", "all")


def _ts(value: datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds") + "Z" if value else None


def message_view(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "direction": message.direction,
        "source": message.source,
        "event": message.event,
        "status": message.status,
        "resource": f"{message.resource_type}/{message.resource_id}" if message.resource_id else None,
        "resource_version": message.resource_version,
        "correlation_id": message.correlation_id,
        "error": message.error,
        "replay_of": message.replay_of,
        "has_payload": message.raw_payload is not None or message.translated_payload is not None,
        "created_at": _ts(message.created_at),
        "updated_at": _ts(message.updated_at),
    }


def event_view(event: MessageEvent) -> dict[str, Any]:
    return {
        "event": event.event,
        "at": _ts(event.at),
        "job_id": event.job_id,
        "attempt": event.attempt,
        "duration_ms": round(event.duration_ms, 2) if event.duration_ms is not None else None,
        "detail": event.detail,
    }


def job_view(job: DeliveryJob, connector_names: dict[int, str], message: Message | None = None,
             held: int = 0) -> dict[str, Any]:
    """A job; with its message, the resource (type/id) and version it delivers; ``held``: how many
    later jobs of its order wait behind it (a dead letter)."""
    view: dict[str, Any] = {
        "id": job.id,
        "message_id": job.message_id,
        "resource": (f"{message.resource_type}/{message.resource_id}"
                     if message is not None and message.resource_id else None),
        "resource_version": message.resource_version if message is not None else None,
        "connector": connector_names.get(job.connector_id, str(job.connector_id)),
        "route_id": job.route_id,
        "status": job.status,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "idempotency_key": job.idempotency_key,
        "last_error": job.last_error,
        "replay_of": job.replay_of,
        "created_at": _ts(job.created_at),
        "finished_at": _ts(job.finished_at),
    }
    if job.status in (ev.PENDING, ev.RETRYING):
        view["next_attempt_at"] = _ts(job.next_attempt_at)
        view["held_by"] = job.held_by
        if job.held_by is not None:
            reason = f"held behind dead letter {job.held_by} (same patient and connector)"
        elif job.attempts == 0:
            reason = "waiting for its first attempt"
        else:
            reason = f"retry after: {job.last_error}"
        view["queued_because"] = reason
    if job.status == ev.DEAD:
        view["resolved_by"] = job.resolved_by
        view["resolved_at"] = _ts(job.resolved_at)
        # replayed: a replay of it was delivered; discarded: an operator gave it up (see its message's events)
        view["resolution"] = (None if job.resolved_at is None
                              else "replayed" if job.resolved_by is not None else "discarded")
        view["holding"] = held
    if job.status == ev.RUNNING:
        view["lease_until"] = _ts(job.locked_until)
    if job.status == ev.AWAITING:  # sent and accepted; failed (retry) if not confirmed by then
        view["confirm_by"] = _ts(job.confirm_by)
    return view


def route_view(route: Route, connector_names: dict[int, str]) -> dict[str, Any]:
    return {
        "id": route.id,
        "name": route.name,
        "resource_type": route.resource_type,
        "interactions": route.interactions.split(","),
        "filter": route.filter,
        "connector": connector_names.get(route.connector_id, str(route.connector_id)),
        "fallback": [connector_names.get(int(c), c) for c in (route.fallback or "").split(",") if c],
        "enabled": route.enabled,
    }


def connector_view(instance: ConnectorInstance, session: Session, now: datetime) -> dict[str, Any]:
    stats = repo.connector_stats(session, connector_id=instance.id, now=now)

    def rate(failures: int, attempts: int) -> float | None:
        return round(failures / attempts, 4) if attempts else None

    return {
        "name": instance.name,
        "kind": instance.kind,
        "enabled": instance.enabled,
        "max_attempts": instance.max_attempts,
        "timeout_seconds": instance.timeout_seconds,
        "backoff_base_seconds": instance.backoff_base_seconds,
        "backoff_max_seconds": instance.backoff_max_seconds,
        "health": {
            "backlog": stats.backlog,
            "dead_letters": stats.dead,  # outstanding: no replay of them was delivered yet
            "dead_letters_resolved": stats.dead_resolved,
            "last_success": _ts(stats.last_success),
            "last_error_at": _ts(stats.last_error_at),
            "last_error": stats.last_error,
            "error_rate_1h": rate(stats.failures_1h, stats.attempts_1h),
            "error_rate_24h": rate(stats.failures_24h, stats.attempts_24h),
            "attempts_1h": stats.attempts_1h,
            "attempts_24h": stats.attempts_24h,
        },
    }


class AdminViews:
    def __init__(self, session: Session, *, tenant: str) -> None:
        self.session = session
        self.tenant = tenant

    def connector_names(self) -> dict[int, str]:
        return {c.id: c.name for c in repo.list_connectors(self.session, tenant=self.tenant)}

    def _connector_id(self, name: str | None) -> int | None:
        if not name:
            return None
        instance = repo.connector_by_name(self.session, tenant=self.tenant, name=name)
        if instance is None:
            raise NotFound(f"No connector named {name!r}")
        return instance.id

    def messages(
        self,
        *,
        status: str | None = None,
        connector: str | None = None,
        correlation_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        resource_type: str | None = None,
        resource: str | None = None,
        version: int | None = None,
        source: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        if status and status not in ev.MESSAGE_STATUSES:
            raise BadRequest(f"status must be one of {', '.join(ev.MESSAGE_STATUSES)}")
        resource_id = None
        if resource:
            kind, _, resource_id = resource.partition("/")
            if not kind or not resource_id or "/" in resource_id:
                raise BadRequest("resource must be Type/id, e.g. ServiceRequest/123")
            if resource_type and resource_type != kind:
                raise BadRequest("resource and resource_type name different types")
            resource_type = kind
        if version is not None and not resource_id:
            raise BadRequest("version needs resource=Type/id")
        rows, total = repo.list_messages(
            self.session,
            filter=repo.MessageFilter(
                tenant=self.tenant,
                status=status,
                connector_id=self._connector_id(connector),
                correlation_id=correlation_id,
                since=since,
                until=until,
                resource_type=resource_type,
                resource_id=resource_id,
                resource_version=version,
                source=source,
            ),
            limit=limit,
            offset=offset,
        )
        return {"total": total, "items": [message_view(m) for m in rows]}

    def message(self, message_id: str) -> dict[str, Any]:
        message = repo.message_by_id(self.session, tenant=self.tenant, message_id=message_id)
        if message is None:
            raise NotFound(f"No message {message_id}")
        names = self.connector_names()
        view = message_view(message)
        view["events"] = [event_view(e) for e in repo.events_of(self.session, message_id=message.id)]
        jobs = repo.jobs_of(self.session, message_id=message.id)
        held = repo.held_counts(self.session, job_ids=[j.id for j in jobs if j.status == ev.DEAD])
        view["jobs"] = [job_view(j, names, message, held.get(j.id, 0)) for j in jobs]
        return view

    def jobs(self, *, status: str | None = None, connector: str | None = None, message: str | None = None,
             idempotency_key: str | None = None, dead: str | None = None, limit: int = 50,
             offset: int = 0) -> dict[str, Any]:
        """Jobs, newest first. ``dead``: ``outstanding`` (dead letters no replay has delivered yet),
        ``resolved`` (a replay of them was delivered, or they were discarded) or ``all`` (every dead letter)."""
        if status and status not in ev.JOB_STATUSES:
            raise BadRequest(f"status must be one of {', '.join(ev.JOB_STATUSES)}")
        if dead is not None and dead not in DEAD_LETTER_STATES:
            raise BadRequest(f"state must be one of {', '.join(DEAD_LETTER_STATES)}")
        rows, total = repo.list_jobs(
            self.session,
            filter=repo.JobFilter(
                tenant=self.tenant, status=ev.DEAD if dead else status, connector_id=self._connector_id(connector),
                message_id=message, idempotency_key=idempotency_key,
                resolved=None if dead in (None, "all") else dead == "resolved",
            ),
            limit=limit,
            offset=offset,
        )
        return {"total": total, "items": self._job_views(rows)}

    def _job_views(self, rows: list[DeliveryJob]) -> list[dict[str, Any]]:
        names = self.connector_names()
        messages = repo.messages_by_ids(self.session, message_ids=[j.message_id for j in rows])
        held = repo.held_counts(self.session, job_ids=[j.id for j in rows if j.status == ev.DEAD])
        return [job_view(j, names, messages.get(j.message_id), held.get(j.id, 0)) for j in rows]

    def job(self, job_id: int) -> dict[str, Any]:
        job = repo.job_by_id(self.session, job_id=job_id, tenant=self.tenant)
        if job is None:
            raise NotFound(f"No delivery job {job_id}")
        return self._job_views([job])[0]

    def connectors(self) -> list[dict[str, Any]]:
        now = utcnow()
        return [connector_view(c, self.session, now) for c in repo.list_connectors(self.session, tenant=self.tenant)]

    def connector(self, name: str) -> dict[str, Any]:
        instance = repo.connector_by_name(self.session, tenant=self.tenant, name=name)
        if instance is None:
            raise NotFound(f"No connector named {name!r}")
        return connector_view(instance, self.session, utcnow())

    def routes(self) -> list[dict[str, Any]]:
        names = self.connector_names()
        return [route_view(r, names) for r in repo.list_routes(self.session, tenant=self.tenant)]

    def route(self, route_id: int) -> dict[str, Any]:
        route = repo.route_by_id(self.session, tenant=self.tenant, route_id=route_id)
        if route is None:
            raise NotFound(f"No route {route_id}")
        return route_view(route, self.connector_names())

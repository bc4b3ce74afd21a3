"""Queries of the sync engine (messages, events, jobs, connectors, routes, cursors)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from hub.store.models import ConnectorInstance, Cursor, DeliveryJob, Message, MessageEvent, Route, WrittenVersion

OPEN = ("pending", "running", "retrying")


# ---------------------------------------------------------------- connectors and routes


def connector_by_name(session: Session, *, tenant: str, name: str) -> ConnectorInstance | None:
    return session.scalars(
        select(ConnectorInstance).where(ConnectorInstance.tenant_id == tenant, ConnectorInstance.name == name)
    ).one_or_none()


def connector_by_id(session: Session, *, connector_id: int) -> ConnectorInstance | None:
    return session.get(ConnectorInstance, connector_id)


def list_connectors(session: Session, *, tenant: str) -> list[ConnectorInstance]:
    return list(
        session.scalars(
            select(ConnectorInstance).where(ConnectorInstance.tenant_id == tenant).order_by(ConnectorInstance.name)
        )
    )


def all_enabled_connectors(session: Session) -> list[ConnectorInstance]:
    return list(session.scalars(select(ConnectorInstance).where(ConnectorInstance.enabled.is_(True))))


def routes_for(session: Session, *, tenant: str, resource_type: str) -> list[Route]:
    return list(
        session.scalars(
            select(Route)
            .where(
                Route.tenant_id == tenant,
                Route.enabled.is_(True),
                or_(Route.resource_type == resource_type, Route.resource_type == "*"),
            )
            .order_by(Route.id)
        )
    )


def list_routes(session: Session, *, tenant: str) -> list[Route]:
    return list(session.scalars(select(Route).where(Route.tenant_id == tenant).order_by(Route.name)))


def route_by_id(session: Session, *, tenant: str, route_id: int) -> Route | None:
    route = session.get(Route, route_id)
    return route if route is not None and route.tenant_id == tenant else None


def route_by_name(session: Session, *, tenant: str, name: str) -> Route | None:
    return session.scalars(select(Route).where(Route.tenant_id == tenant, Route.name == name)).one_or_none()


# ---------------------------------------------------------------- messages


def message_by_id(session: Session, *, tenant: str | None, message_id: str) -> Message | None:
    message = session.get(Message, message_id)
    if message is None or (tenant is not None and message.tenant_id != tenant):
        return None
    return message


def message_by_external_id(session: Session, *, tenant: str, source: str, external_id: str) -> Message | None:
    return session.scalars(
        select(Message).where(
            Message.tenant_id == tenant, Message.source == source, Message.external_id == external_id
        )
    ).one_or_none()


@dataclass(frozen=True, slots=True)
class MessageFilter:
    tenant: str
    status: str | None = None
    connector_id: int | None = None
    correlation_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    resource_version: int | None = None
    source: str | None = None


def _message_conditions(f: MessageFilter) -> list:  # type: ignore[type-arg]
    conditions = [Message.tenant_id == f.tenant]
    if f.status:
        conditions.append(Message.status == f.status)
    if f.correlation_id:
        conditions.append(Message.correlation_id == f.correlation_id)
    if f.source:
        conditions.append(Message.source == f.source)
    if f.since:
        conditions.append(Message.created_at >= f.since)
    if f.until:
        conditions.append(Message.created_at < f.until)
    if f.resource_type:
        conditions.append(Message.resource_type == f.resource_type)
    if f.resource_id:
        conditions.append(Message.resource_id == f.resource_id)
    if f.resource_version is not None:
        conditions.append(Message.resource_version == f.resource_version)
    if f.connector_id is not None:
        conditions.append(
            Message.id.in_(select(DeliveryJob.message_id).where(DeliveryJob.connector_id == f.connector_id))
        )
    return conditions


def list_messages(session: Session, *, filter: MessageFilter, limit: int, offset: int) -> tuple[list[Message], int]:
    conditions = _message_conditions(filter)
    total = session.scalar(select(func.count()).select_from(Message).where(*conditions)) or 0
    rows = session.scalars(
        select(Message).where(*conditions).order_by(Message.created_at.desc(), Message.id).limit(limit).offset(offset)
    )
    return list(rows), total


def messages_by_ids(session: Session, *, message_ids: Iterable[str]) -> dict[str, Message]:
    ids = sorted(set(message_ids))
    found: dict[str, Message] = {}
    for start in range(0, len(ids), 500):
        found.update((m.id, m) for m in session.scalars(select(Message).where(Message.id.in_(ids[start:start + 500]))))
    return found


def events_of(session: Session, *, message_id: str) -> list[MessageEvent]:
    return list(
        session.scalars(select(MessageEvent).where(MessageEvent.message_id == message_id).order_by(MessageEvent.id))
    )


def jobs_of(session: Session, *, message_id: str) -> list[DeliveryJob]:
    query = select(DeliveryJob).where(DeliveryJob.message_id == message_id).order_by(DeliveryJob.id)
    return list(session.scalars(query))


def purge_payloads(session: Session, *, before: datetime) -> int:
    result = session.execute(
        update(Message)
        .where(
            Message.created_at < before,
            Message.status.in_(("delivered", "dead", "rejected", "unrouted")),
            or_(Message.raw_payload.is_not(None), Message.translated_payload.is_not(None)),
        )
        .values(raw_payload=None, translated_payload=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def record_written(
    session: Session, *, tenant: str, connector_id: int, external_ids: Iterable[str], now: datetime
) -> None:
    """Remember what the hub wrote on a partner (see WrittenVersion). Two deliveries may name the
    same version (both wrote an unchanged dependency): the second insert is a no-op, never an error
    that would roll back the outcome of a delivery already made."""
    wanted = sorted({e[:255] for e in external_ids if e})
    if not wanted:
        return
    rows = [{"connector_id": connector_id, "external_id": e, "tenant_id": tenant, "written_at": now} for e in wanted]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(pg_insert(WrittenVersion).values(rows).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite_insert(WrittenVersion).values(rows).on_conflict_do_nothing())
    else:  # pragma: no cover - the hub runs on SQLite and PostgreSQL
        for row in rows:
            with session.begin_nested():
                if session.get(WrittenVersion, (connector_id, row["external_id"])) is None:
                    session.add(WrittenVersion(**row))


def written_among(session: Session, *, connector_id: int, external_ids: Iterable[str]) -> set[str]:
    """Which of ``external_ids`` the hub itself wrote on this connector's partner."""
    ids = sorted({e for e in external_ids if e})
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        found.update(session.scalars(select(WrittenVersion.external_id).where(
            WrittenVersion.connector_id == connector_id, WrittenVersion.external_id.in_(ids[start:start + 500]))))
    return found


def last_delivered(
    session: Session, *, tenant: str, connector_id: int, resource_type: str, resource_id: str, before: datetime,
    exclude_message: str,
) -> Message | None:
    """The message about this resource most recently delivered to this connector (created before
    ``before``): what the partner was last told of it."""
    query = (
        select(Message)
        .join(DeliveryJob, DeliveryJob.message_id == Message.id)
        .where(
            Message.tenant_id == tenant,
            DeliveryJob.connector_id == connector_id,
            DeliveryJob.status == "succeeded",
            Message.resource_type == resource_type,
            Message.resource_id == resource_id,
            Message.created_at <= before,
            Message.id != exclude_message,
        )
        .order_by(Message.created_at.desc(), Message.resource_version.desc(), DeliveryJob.finished_at.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def purge_written(session: Session, *, before: datetime) -> int:
    result = session.execute(delete(WrittenVersion).where(WrittenVersion.written_at < before))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- jobs


def job_by_id(session: Session, *, job_id: int, tenant: str | None = None) -> DeliveryJob | None:
    job = session.get(DeliveryJob, job_id)
    if job is None or (tenant is not None and job.tenant_id != tenant):
        return None
    return job


def job_by_remote_id(session: Session, *, tenant: str, connector_id: int, remote_id: str) -> DeliveryJob | None:
    """The latest job of a connector whose accepted attempt the partner knows as ``remote_id``."""
    return session.scalars(
        select(DeliveryJob)
        .where(DeliveryJob.tenant_id == tenant, DeliveryJob.connector_id == connector_id,
               DeliveryJob.remote_id == remote_id)
        .order_by(DeliveryJob.id.desc())
        .limit(1)
    ).one_or_none()


def claim_job(session: Session, *, job_id: int, now: datetime, lease_until: datetime) -> bool:
    """Atomically move a due job to running (one claimant wins); False if it is not claimable."""
    result = session.execute(
        update(DeliveryJob)
        .where(
            DeliveryJob.id == job_id,
            or_(
                and_(DeliveryJob.status.in_(("pending", "retrying")), DeliveryJob.next_attempt_at <= now),
                and_(DeliveryJob.status == "running", DeliveryJob.locked_until < now),
            ),
        )
        .values(status="running", locked_until=lease_until, attempts=DeliveryJob.attempts + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _seq(job: type[DeliveryJob] | DeliveryJob) -> object:
    return func.coalesce(job.ordering_seq, job.id) if isinstance(job, type) else (job.ordering_seq or job.id)


def _unreplayed_dead() -> object:
    """A dead job that no replay job points at and that was not discarded (resolved): nothing
    carries its place in the order any more."""
    replay = aliased(DeliveryJob)
    return and_(DeliveryJob.status == "dead", DeliveryJob.resolved_at.is_(None),
                ~exists().where(replay.replay_of == DeliveryJob.id))


def earlier_blocking_job(session: Session, *, job: DeliveryJob) -> tuple[int, str] | None:
    """(id, status) of a job ahead of ``job`` in its order (same ordering key: same patient, or same
    resource, at the same connector) that is unfinished, or dead and not replayed; None if it may go.

    A job's place is ``ordering_seq`` (a replay takes the place of the job it replays), ties broken by id."""
    if not job.ordering_key:
        return None
    seq = _seq(job)
    row = session.execute(
        select(DeliveryJob.id, DeliveryJob.status)
        .where(
            DeliveryJob.ordering_key == job.ordering_key,
            DeliveryJob.id != job.id,
            or_(_seq(DeliveryJob) < seq, and_(_seq(DeliveryJob) == seq, DeliveryJob.id < job.id)),
            or_(DeliveryJob.status.in_(OPEN), _unreplayed_dead()),
        )
        .order_by(_seq(DeliveryJob), DeliveryJob.id)
        .limit(1)
    ).first()
    return (int(row[0]), str(row[1])) if row else None


def replay_family(session: Session, *, job: DeliveryJob) -> list[DeliveryJob]:
    """``job``, the jobs it replays (and what those replay), and every replay of any of them: one
    delivery, however often it was replayed. Oldest first."""
    root, seen = job, {job.id}
    while root.replay_of is not None and root.replay_of not in seen:
        parent = session.get(DeliveryJob, root.replay_of)
        if parent is None:
            break
        root = parent
        seen.add(root.id)
    family, frontier = {root.id: root}, [root.id]
    while frontier:
        found = list(session.scalars(select(DeliveryJob).where(DeliveryJob.replay_of.in_(frontier))))
        frontier = [j.id for j in found if j.id not in family]
        family.update({j.id: j for j in found})
    return sorted(family.values(), key=lambda j: j.id)


def wake_held(session: Session, *, ordering_key: str, now: datetime) -> list[int]:
    """Make the jobs held behind a dead letter of ``ordering_key`` due now; their ids."""
    ids = list(session.scalars(select(DeliveryJob.id).where(
        DeliveryJob.ordering_key == ordering_key, DeliveryJob.held_by.is_not(None),
        DeliveryJob.status.in_(("pending", "retrying")))))
    if ids:
        session.execute(
            update(DeliveryJob).where(DeliveryJob.id.in_(ids))
            .values(held_by=None, next_attempt_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return ids


def held_counts(session: Session, *, job_ids: Sequence[int]) -> dict[int, int]:
    """How many jobs are held behind each of these dead letters."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(DeliveryJob.held_by, func.count()).where(
            DeliveryJob.held_by.in_(list(job_ids)), DeliveryJob.status.in_(("pending", "retrying")))
        .group_by(DeliveryJob.held_by)
    ).all()
    return {int(held): int(n) for held, n in rows}


def due_jobs(session: Session, *, now: datetime, requeue_before: datetime, limit: int) -> list[DeliveryJob]:
    """Jobs whose task was probably lost: due for longer than the grace, or running past their lease."""
    stmt = (
        select(DeliveryJob)
        .where(
            or_(
                and_(DeliveryJob.status.in_(("pending", "retrying")), DeliveryJob.next_attempt_at <= requeue_before),
                and_(DeliveryJob.status == "running", DeliveryJob.locked_until < now),
            ),
            # jobs of a disabled (paused) connector wait; once it is enabled again they are overdue
            DeliveryJob.connector_id.in_(select(ConnectorInstance.id).where(ConnectorInstance.enabled.is_(True))),
        )
        .order_by(DeliveryJob.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def unconfirmed_jobs(session: Session, *, now: datetime, limit: int) -> list[DeliveryJob]:
    """``awaiting`` jobs past their confirmation deadline (``next_attempt_at``, their ``confirm_by``),
    of enabled connectors (a paused one's wait until it is enabled again), oldest first."""
    return list(session.scalars(
        select(DeliveryJob)
        .where(DeliveryJob.status == "awaiting", DeliveryJob.next_attempt_at <= now,
               DeliveryJob.connector_id.in_(select(ConnectorInstance.id).where(ConnectorInstance.enabled.is_(True))))
        .order_by(DeliveryJob.id)
        .limit(limit)
    ))


@dataclass(frozen=True, slots=True)
class JobFilter:
    tenant: str
    status: str | None = None
    connector_id: int | None = None
    message_id: str | None = None
    not_replayed: bool = False  # only jobs that no replay job points at (``replay_of``)
    idempotency_key: str | None = None
    #: dead letters only: True = resolved (a replay was delivered), False = outstanding
    resolved: bool | None = None


def _job_conditions(filter: JobFilter) -> list:  # type: ignore[type-arg]
    conditions = [DeliveryJob.tenant_id == filter.tenant]
    if filter.status:
        conditions.append(DeliveryJob.status == filter.status)
    if filter.connector_id is not None:
        conditions.append(DeliveryJob.connector_id == filter.connector_id)
    if filter.message_id:
        conditions.append(DeliveryJob.message_id == filter.message_id)
    if filter.idempotency_key:
        conditions.append(DeliveryJob.idempotency_key == filter.idempotency_key)
    if filter.resolved is not None:
        resolved = DeliveryJob.resolved_at.is_not(None)
        conditions.append(resolved if filter.resolved else ~resolved)
    if filter.not_replayed:
        replay = aliased(DeliveryJob)
        conditions.append(~exists().where(replay.replay_of == DeliveryJob.id))
    return conditions


def list_jobs(session: Session, *, filter: JobFilter, limit: int, offset: int) -> tuple[list[DeliveryJob], int]:
    conditions = _job_conditions(filter)
    total = session.scalar(select(func.count()).select_from(DeliveryJob).where(*conditions)) or 0
    query = select(DeliveryJob).where(*conditions).order_by(DeliveryJob.id.desc()).limit(limit).offset(offset)
    rows = session.scalars(query)
    return list(rows), total


def job_ids(session: Session, *, filter: JobFilter, limit: int) -> list[int]:
    conditions = _job_conditions(filter)
    return list(session.scalars(select(DeliveryJob.id).where(*conditions).order_by(DeliveryJob.id).limit(limit)))


@dataclass(frozen=True, slots=True)
class ConnectorStats:
    backlog: int
    dead: int  # outstanding dead letters
    dead_resolved: int
    last_success: datetime | None
    last_error_at: datetime | None
    last_error: str | None
    attempts_1h: int
    failures_1h: int
    attempts_24h: int
    failures_24h: int


def connector_stats(session: Session, *, connector_id: int, now: datetime) -> ConnectorStats:
    backlog = session.scalar(
        select(func.count()).select_from(DeliveryJob).where(
            DeliveryJob.connector_id == connector_id, DeliveryJob.status.in_(OPEN)
        )
    ) or 0
    dead_rows = session.execute(
        select(DeliveryJob.resolved_at.is_not(None), func.count()).where(
            DeliveryJob.connector_id == connector_id, DeliveryJob.status == "dead"
        ).group_by(DeliveryJob.resolved_at.is_not(None))
    ).all()
    dead_by = {bool(resolved): int(n) for resolved, n in dead_rows}
    job_subquery = select(DeliveryJob.id).where(DeliveryJob.connector_id == connector_id)
    last_success = session.scalar(
        select(func.max(MessageEvent.at)).where(MessageEvent.job_id.in_(job_subquery), MessageEvent.event == "sent")
    )
    last_error_row = session.execute(
        select(MessageEvent.at, MessageEvent.detail)
        .where(MessageEvent.job_id.in_(job_subquery), MessageEvent.event.in_(("failed", "dead-lettered")))
        .order_by(MessageEvent.id.desc())
        .limit(1)
    ).first()

    def window(hours: int) -> tuple[int, int]:
        since = now - timedelta(hours=hours)
        rows = session.execute(
            select(MessageEvent.event, func.count())
            .where(
                MessageEvent.job_id.in_(job_subquery),
                MessageEvent.at >= since,
                # one "sent" or "failed" per attempt ("dead-lettered" repeats the last "failed")
                MessageEvent.event.in_(("sent", "failed")),
            )
            .group_by(MessageEvent.event)
        ).all()
        counts = {event: int(n) for event, n in rows}
        failures = counts.get("failed", 0)
        return counts.get("sent", 0) + failures, failures

    a1, f1 = window(1)
    a24, f24 = window(24)
    return ConnectorStats(
        backlog=backlog,
        dead=dead_by.get(False, 0),
        dead_resolved=dead_by.get(True, 0),
        last_success=last_success,
        last_error_at=last_error_row[0] if last_error_row else None,
        last_error=last_error_row[1] if last_error_row else None,
        attempts_1h=a1,
        failures_1h=f1,
        attempts_24h=a24,
        failures_24h=f24,
    )


# ---------------------------------------------------------------- cursors


def get_cursor(session: Session, *, tenant: str, connector_id: int) -> Cursor | None:
    return session.get(Cursor, (tenant, connector_id))


def set_cursor(session: Session, *, tenant: str, connector_id: int, value: str | None, now: datetime) -> None:
    cursor = session.get(Cursor, (tenant, connector_id))
    if cursor is None:
        session.add(Cursor(tenant_id=tenant, connector_id=connector_id, value=value, updated_at=now))
    else:
        cursor.value = value
        cursor.updated_at = now
    session.flush()


def ids(rows: Sequence[DeliveryJob]) -> list[int]:
    return [row.id for row in rows]


def inbound_messages_about(session: Session, *, tenant: str, resource_type: str, resource_id: str,
                           event_prefix: str) -> list[Message]:
    """The inbound messages of ``tenant`` stored about one resource whose event starts with
    ``event_prefix`` and that were not rejected, oldest first (e.g. a patient's HEP webhooks)."""
    rows = session.scalars(
        select(Message).where(
            Message.tenant_id == tenant, Message.direction == "inbound", Message.resource_type == resource_type,
            Message.resource_id == resource_id, Message.event.startswith(event_prefix, autoescape=True),
            Message.status != "rejected",
        ).order_by(Message.created_at, Message.id)
    )
    return list(rows)

"""Queries of the dashboard's server-side sessions (:class:`hub.store.models.DashboardSessionRecord`)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hub.store.models import DashboardSessionRecord, SignInFailure


def sid_hash(sid: str) -> str:
    """What the store keeps of a session id: a reader of the table learns no cookie's content."""
    return hashlib.sha256(sid.encode()).hexdigest()


def start_session(session: Session, *, sid: str, client_id: str, tenant: str, now: datetime,
                  started_after: datetime) -> None:
    """Record a new session, and forget the sessions that started before ``started_after`` (expired)."""
    session.execute(delete(DashboardSessionRecord).where(DashboardSessionRecord.signed_in_at < started_after))
    session.add(DashboardSessionRecord(sid_hash=sid_hash(sid), client_id=client_id, tenant_id=tenant,
                                       signed_in_at=now))
    session.flush()


def session_is_live(session: Session, *, sid: str, client_id: str, tenant: str) -> bool:
    """Is the session recorded (not signed out), for this very client and tenant?"""
    row = session.execute(
        select(DashboardSessionRecord.client_id, DashboardSessionRecord.tenant_id)
        .where(DashboardSessionRecord.sid_hash == sid_hash(sid))
    ).first()
    return row is not None and row.client_id == client_id and row.tenant_id == tenant


def end_session(session: Session, *, sid: str) -> None:
    session.execute(delete(DashboardSessionRecord).where(DashboardSessionRecord.sid_hash == sid_hash(sid)))
    session.flush()


# ------------------------------------------------------------------ sign-in throttle


def key_hash(key: str) -> str:
    """What the store keeps of a throttle key (client id and address): its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()


def recent_failures(session: Session, *, key: str, since: datetime) -> list[datetime]:
    """The failed sign-ins under ``key`` after ``since``, oldest first."""
    return list(session.execute(
        select(SignInFailure.failed_at)
        .where(SignInFailure.key_hash == key_hash(key), SignInFailure.failed_at > since)
        .order_by(SignInFailure.failed_at)
    ).scalars())


def record_failure(session: Session, *, keys: list[str], now: datetime, expired_before: datetime) -> None:
    """Count a failed sign-in under each of ``keys``; forget the failures older than the window."""
    session.execute(delete(SignInFailure).where(SignInFailure.failed_at <= expired_before))
    session.add_all(SignInFailure(key_hash=key_hash(key), failed_at=now) for key in keys)
    session.flush()


def forget_failures(session: Session, *, key: str) -> None:
    session.execute(delete(SignInFailure).where(SignInFailure.key_hash == key_hash(key)))

"""Queries of the dashboard's server-side sessions (:class:`hub.store.models.DashboardSessionRecord`)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hub.store.models import DashboardSessionRecord


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

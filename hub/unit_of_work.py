"""The unit of work: one transaction, then the delivery tasks of the jobs it committed.

Every entry point (routers, MLLP intake, polling, inbound webhooks, worker tasks, delivery, CLI)
writes through :func:`unit_of_work`, so none of them can commit without publishing, or publish
what was rolled back. Services only ``flush()`` and ask for deliveries by appending job ids to
``session.info[ENQUEUE_KEY]``; the after-commit step here hands them to the :class:`Enqueuer`.
A part of a transaction that may fail alone (a batch entry, one polled item) runs in a
:func:`savepoint`, whose rollback also drops the job ids asked for inside it.

The enqueuer is injected: by argument, or for every unit of work of a request by the application
(:func:`using_enqueuer`, installed by :func:`hub.app.create_app`); else the Celery producer of the
settings' broker. The audited request boundary built on it is :mod:`hub.boundary`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy.orm import Session

from hub.broker import CeleryEnqueuer, Enqueuer
from hub.settings import Settings
from hub.store.db import transaction

#: where a transaction collects the ids of the delivery jobs to publish once it has committed
ENQUEUE_KEY = "hub.enqueue"


def enqueue_after_commit(session: Session, job_ids: Sequence[int]) -> None:
    """Ask for a deliver task per job, sent once ``session``'s transaction has committed."""
    session.info.setdefault(ENQUEUE_KEY, []).extend(job_ids)


class Savepoint:
    """A savepoint (``session.begin_nested()``) whose rollback also forgets the deliveries asked for
    inside it: the jobs it wrote are gone, so their ids must not be published after the commit."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.asked = len(session.info.get(ENQUEUE_KEY, ()))
        self.nested = session.begin_nested()

    def commit(self) -> None:
        self.nested.commit()

    def rollback(self) -> None:
        self.nested.rollback()
        del self.session.info.get(ENQUEUE_KEY, [])[self.asked:]


def savepoint(session: Session) -> Savepoint:
    """Open a :class:`Savepoint` of ``session``: ``commit()`` keeps its work, ``rollback()`` undoes it."""
    return Savepoint(session)


_enqueuer: ContextVar[Enqueuer | None] = ContextVar("hub_enqueuer", default=None)


def current_enqueuer(settings: Settings) -> Enqueuer:
    """The injected enqueuer of this context, else the Celery producer of ``settings``' broker."""
    return _enqueuer.get() or CeleryEnqueuer.for_settings(settings)


@contextmanager
def using_enqueuer(enqueuer: Enqueuer | None) -> Iterator[None]:
    """Units of work opened inside this block (and in threads started from it) use ``enqueuer``."""
    token = _enqueuer.set(enqueuer)
    try:
        yield
    finally:
        _enqueuer.reset(token)


@contextmanager
def unit_of_work(settings: Settings, *, readonly: bool = False, enqueuer: Enqueuer | None = None) -> Iterator[Session]:
    """One transaction; after it commits, the delivery jobs it wrote are enqueued (outbox).

    ``readonly``: :func:`hub.store.db.transaction` with ``readonly=True``: on SQLite it does not take
    the write lock, and a write inside it raises; it writes no jobs, so nothing is enqueued."""
    with transaction(settings.database_url, readonly=readonly) as session:
        yield session
    after_commit(settings, session, enqueuer)


def after_commit(settings: Settings, session: Session, enqueuer: Enqueuer | None = None) -> int:
    """Hand the jobs that the committed transaction of ``session`` asked for to the enqueuer."""
    job_ids = session.info.pop(ENQUEUE_KEY, None)
    if not job_ids:
        return 0
    return (enqueuer or current_enqueuer(settings)).deliver(job_ids)

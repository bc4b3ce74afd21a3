"""The unit of work: one transaction, then the tasks of what it committed: the delivery of the jobs it
wrote, the intake of the documents it received.

Every entry point (routers, MLLP intake, polling, inbound webhooks, worker tasks, delivery, CLI)
writes through :func:`unit_of_work`, so none of them can commit without publishing, or publish
what was rolled back. Services only ``flush()`` and ask for deliveries by appending job ids to
``session.info[ENQUEUE_KEY]`` (:func:`enqueue_after_commit`), and for the intake of a received
document by appending (tenant, DocumentReference id) to ``session.info[INTAKE_KEY]``
(:func:`intake_after_commit`); the after-commit step here hands them to the :class:`Enqueuer`.
A part of a transaction that may fail alone (a batch entry, one polled item) runs in a
:func:`savepoint`, whose rollback also drops the job ids and documents asked for inside it.
Publishing never raises after the commit: what could not be published is left to the sweepers
(the delivery sweep, and the document intake sweep, which takes every document still ``received``).

The enqueuer is injected: by argument, or for every unit of work of a request by the application
(:func:`using_enqueuer`, installed by :func:`hub.app.create_app`); else the Celery producer of the
settings' broker. The audited request boundary built on it is :mod:`hub.boundary`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy.orm import Session

from hub.broker import CeleryEnqueuer, Enqueuer
from hub.settings import Settings
from hub.store.db import transaction

log = logging.getLogger("hub.unit_of_work")

#: where a transaction collects the ids of the delivery jobs to publish once it has committed
ENQUEUE_KEY = "hub.enqueue"
#: where a transaction collects the (tenant, DocumentReference id) of the received documents whose
#: intake runs once it has committed
INTAKE_KEY = "hub.intake"


def enqueue_after_commit(session: Session, job_ids: Sequence[int]) -> None:
    """Ask for a deliver task per job, sent once ``session``'s transaction has committed."""
    session.info.setdefault(ENQUEUE_KEY, []).extend(job_ids)


def intake_after_commit(session: Session, tenant: str, document_id: str) -> None:
    """Ask for the intake of a received document, sent once ``session``'s transaction has committed
    (asked twice in one transaction, it is sent once)."""
    asked = session.info.setdefault(INTAKE_KEY, [])
    if (tenant, document_id) not in asked:
        asked.append((tenant, document_id))


class Savepoint:
    """A savepoint (``session.begin_nested()``) whose rollback also forgets the deliveries asked for
    inside it: the jobs it wrote are gone, so their ids must not be published after the commit."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.asked = {key: len(session.info.get(key, ())) for key in (ENQUEUE_KEY, INTAKE_KEY)}
        self.nested = session.begin_nested()

    def commit(self) -> None:
        self.nested.commit()

    def rollback(self) -> None:
        self.nested.rollback()
        for key, asked in self.asked.items():
            del self.session.info.get(key, [])[asked:]


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
    """Hand the jobs and the received documents that the committed transaction of ``session`` asked
    for to the enqueuer; returns how many tasks were sent. Never raises: the transaction has
    committed, and what was not sent is the sweepers' (jobs pending, documents ``received``)."""
    job_ids = session.info.pop(ENQUEUE_KEY, None)
    documents = session.info.pop(INTAKE_KEY, None)
    sent = 0
    if job_ids:
        sent += _publish(lambda target: target.deliver(job_ids), enqueuer, settings, what="deliver")
    if documents:
        sent += _publish(lambda target: target.intake(documents), enqueuer, settings, what="intake")
    return sent


def _publish(send: Callable[[Enqueuer], int], enqueuer: Enqueuer | None, settings: Settings, *, what: str) -> int:
    try:
        return send(enqueuer or current_enqueuer(settings))
    except Exception as exc:  # noqa: BLE001 - committed already: the sweepers send what is not sent here
        log.warning("hub.enqueue.failed", extra={"task": what, "error": type(exc).__name__})
        return 0

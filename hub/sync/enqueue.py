"""Publishing delivery tasks, after the transaction that wrote the jobs has committed.

The sync engine never publishes from inside a transaction: the outbox, the delivery engine and the
operator actions add the ids of the jobs they made due to ``session.info[ENQUEUE_KEY]``
(:func:`enqueue_after_commit`), and the entry point publishes them with :func:`enqueue_committed`
once its transaction has committed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from sqlalchemy.orm import Session

from hub.settings import Settings

log = logging.getLogger("hub.sync.enqueue")

DELIVER_TASK = "hub.deliver"
#: session.info key: the ids of the jobs to enqueue once the session's transaction has committed
ENQUEUE_KEY = "hub.enqueue"


def enqueue_after_commit(session: Session, job_ids: Sequence[int]) -> None:
    """Ask for a deliver task per job, to be sent after ``session`` commits (:func:`enqueue_committed`)."""
    session.info.setdefault(ENQUEUE_KEY, []).extend(job_ids)


def enqueue(settings: Settings, job_ids: Iterable[int], countdown: float | None = None) -> int:
    """Send a deliver task per job. A broker failure is logged, not raised: the sweeper re-sends."""
    from workers.app import celery_for

    app = celery_for(settings.effective_broker_url)
    sent = 0
    for job_id in job_ids:
        try:
            app.send_task(DELIVER_TASK, args=[job_id], countdown=countdown, queue=settings.task_queue)
            sent += 1
        except Exception as exc:  # broker down: the job row is durable, the sweeper will enqueue it
            log.warning("hub.enqueue.failed", extra={"job_id": job_id, "error": type(exc).__name__})
    return sent


def enqueue_committed(settings: Settings, session: Session) -> int:
    """Enqueue what the committed transaction of ``session`` asked for."""
    job_ids = session.info.pop(ENQUEUE_KEY, None)
    if not job_ids:
        return 0
    return enqueue(settings, job_ids)

"""Publishing delivery tasks, after the transaction that wrote the jobs has committed."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from hub.broker import CeleryEnqueuer
from hub.settings import Settings
from hub.sync.service import ENQUEUE_KEY


def enqueue(settings: Settings, job_ids: Iterable[int], countdown: float | None = None) -> int:
    """Send a deliver task per job. A broker failure is logged, not raised: the sweeper re-sends."""
    return CeleryEnqueuer.for_settings(settings).deliver(job_ids, countdown=countdown)


def enqueue_committed(settings: Settings, session: Session) -> int:
    """Enqueue what the committed transaction of ``session`` asked for."""
    job_ids = session.info.pop(ENQUEUE_KEY, None)
    if not job_ids:
        return 0
    return enqueue(settings, job_ids)

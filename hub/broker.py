"""The broker contract between the hub, which publishes delivery and document intake tasks, and the
workers, which consume them: task names, serializer, publish retry policy and transport options, in one place that both
sides read (:func:`workers.app.make_celery` for the consumer, :class:`CeleryEnqueuer` for the producer).

The hub never imports ``workers``: a unit of work is handed an :class:`Enqueuer` and calls it after
its transaction has committed (:mod:`hub.unit_of_work`). Tasks carry ids only (no PHI in the broker).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from functools import cache
from typing import Any, Protocol

from celery import Celery
from kombu import Exchange, Queue

from hub.settings import Settings

log = logging.getLogger("hub.broker")

#: the Celery application name that producer and consumer share
APP_NAME = "therapy_hub"
#: the default queue (HUB_TASK_QUEUE overrides it per deployment)
QUEUE = "hub"
#: the task that delivers one job: its only argument is the job id
DELIVER_TASK = "hub.deliver"
#: the task that matches one received document to what it answers: (tenant, DocumentReference id)
INTAKE_TASK = "hub.intake_document"
SERIALIZER = "json"
#: publishing gives up quickly: the job row is durable and the sweeper re-sends what was not published
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
CONNECTION_TIMEOUT = 3
#: the SQLAlchemy transport polls its table; once a second by default is too slow for the embedded mode
EMBEDDED_POLLING_INTERVAL = 0.1


def transport_options(broker_url: str) -> dict[str, object]:
    """Broker transport options for ``broker_url`` (the same for publishing and consuming)."""
    options: dict[str, object] = {}
    if broker_url.startswith(("redis://", "rediss://")):
        # unacked tasks come back after this; the sweeper usually recovers them much earlier
        options["visibility_timeout"] = 3600
    if broker_url.startswith("sqla+"):
        from kombu.transport import sqlalchemy as kombu_sqla  # only the embedded broker needs this transport

        kombu_sqla.Transport.polling_interval = EMBEDDED_POLLING_INTERVAL
    return options


def celery_conf(broker_url: str, queue: str = QUEUE) -> dict[str, Any]:
    """The Celery settings that the producer and the workers share."""
    return {
        "task_default_queue": queue,
        "task_serializer": SERIALIZER,
        "accept_content": [SERIALIZER],
        "task_ignore_result": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": CONNECTION_TIMEOUT,
        "broker_transport_options": transport_options(broker_url),
        "task_publish_retry_policy": PUBLISH_RETRY_POLICY,
        "timezone": "UTC",
    }


def redact(url: str) -> str:
    """A broker URL fit for a log line: its password replaced by ``***``."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\\1:***@", url)


class Enqueuer(Protocol):
    """Sends a deliver task per job id, and an intake task per received document. Called only after
    the transaction that wrote the jobs or stored the documents has committed; a failure to publish
    is logged, not raised (the sweepers re-send: the delivery sweep, the document intake sweep)."""

    def deliver(self, job_ids: Iterable[int], *, countdown: float | None = None) -> int:
        """Send a deliver task for each of ``job_ids``; returns how many were sent."""
        ...

    def intake(self, documents: Iterable[tuple[str, str]]) -> int:
        """Send an intake task for each (tenant, DocumentReference id); returns how many were sent."""
        ...


class CeleryEnqueuer:
    """The producer side of the broker: publishes ``hub.deliver`` tasks by name, with the celery
    library alone (no task code is imported)."""

    def __init__(self, broker_url: str, queue: str = QUEUE) -> None:
        self.queue = queue
        self.app = Celery(APP_NAME, broker=broker_url, set_as_current=False)
        self.app.conf.update(celery_conf(broker_url, queue))

    @classmethod
    def for_settings(cls, settings: Settings) -> CeleryEnqueuer:
        return _celery_enqueuer(settings.effective_broker_url, settings.task_queue)

    def declare(self) -> None:
        """Create the task queue on the broker now. ``hub serve`` does this before it starts its
        embedded worker: on the embedded broker the queue is a row that the worker and the first
        publisher would otherwise both insert at once, and the loser's unique-key error stopped the
        worker for good."""
        with self.app.connection_for_write() as connection:
            Queue(self.queue, Exchange(self.queue), routing_key=self.queue)(connection.default_channel).declare()

    def deliver(self, job_ids: Iterable[int], *, countdown: float | None = None) -> int:
        sent = 0
        for job_id in job_ids:
            try:
                self.app.send_task(DELIVER_TASK, args=[job_id], countdown=countdown, queue=self.queue)
                sent += 1
            except Exception as exc:  # broker down: the job row is durable, the sweeper will enqueue it
                log.warning("hub.enqueue.failed", extra={"job_id": job_id, "error": type(exc).__name__})
        return sent

    def intake(self, documents: Iterable[tuple[str, str]]) -> int:
        sent = 0
        for tenant, document_id in documents:
            try:
                self.app.send_task(INTAKE_TASK, args=[tenant, document_id], queue=self.queue)
                sent += 1
            except Exception as exc:  # broker down: the document is stored "received", the intake sweep takes it
                log.warning("hub.enqueue.failed", extra={"document": document_id, "error": type(exc).__name__})
        return sent


@cache
def _celery_enqueuer(broker_url: str, queue: str) -> CeleryEnqueuer:
    return CeleryEnqueuer(broker_url, queue)

"""The Celery application. Brokers: Redis or RabbitMQ via HUB_BROKER_URL; with none configured,
an embedded broker (kombu's SQLAlchemy transport on a SQLite file under ./var) that needs no server.

Tasks take ids only (no PHI in the broker). ``acks_late`` + ``reject_on_worker_lost`` because
delivery is idempotent (idempotency keys) and the database, not the broker, is the truth.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, platforms, signals

from hub import broker, logs, processes
from hub.settings import get_settings
from hub.store.db import close_engines

#: the scheduled housekeeping tasks: their "received" / "succeeded" / "sending due task" lines are
#: DEBUG, so that an idle hub is quiet; the tasks log at INFO themselves when they changed something
HOUSEKEEPING = frozenset({"hub.sweep", "hub.purge", "hub.poll_all", "hub.poll", "hub.certification_clocks",
                          "hub.document_intake", "hub.confirmation_timeouts", "hub.direct_mdn_timeouts",
                          "hub.billing_poll"})


def make_celery(
    broker_url: str, *, sweep_interval: float = 10.0, poll_interval: float = 60.0, queue: str = broker.QUEUE,
    billing_poll_interval: float = 300.0,
) -> Celery:
    app = Celery(broker.APP_NAME, broker=broker_url, include=["workers.tasks"])
    app.conf.update(
        broker.celery_conf(broker_url, queue),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        beat_schedule={
            "sweep-lost-jobs": {"task": "hub.sweep", "schedule": sweep_interval},
            "purge-old-payloads": {"task": "hub.purge", "schedule": 3600.0},
            "poll-connectors": {"task": "hub.poll_all", "schedule": poll_interval},
            "certification-clocks": {"task": "hub.certification_clocks", "schedule": 6 * 3600.0},
            "document-intake": {"task": "hub.document_intake", "schedule": 60.0},
            "confirmation-timeouts": {"task": "hub.confirmation_timeouts", "schedule": 60.0},
            "billing-poll": {"task": "hub.billing_poll", "schedule": billing_poll_interval},
        },
    )
    return app


#: ``extra`` fields shown in worker and beat log lines: ids, counts and outcomes only, never PHI
LOG_FIELDS = ("job_id", "message_id", "connector_id", "attempt", "outcome", "retry_in", "held_by", "jobs", "error",
              "document", "documents")


class ExtrasFormatter(logging.Formatter):
    """Celery's formatter, plus the allow-listed ``extra`` fields as ``key=value`` (Celery's own
    format string drops them, so an attempt's line said nothing of its job or outcome)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        fields = [f"{name}={getattr(record, name)}" for name in LOG_FIELDS if getattr(record, name, None) is not None]
        return f"{text} {' '.join(fields)}" if fields else text


def show_log_fields(logger: logging.Logger, **_: Any) -> None:
    for handler in logger.handlers:
        if not isinstance(handler.formatter, ExtrasFormatter):
            handler.setFormatter(ExtrasFormatter(handler.formatter))


signals.after_setup_logger.connect(show_log_fields, weak=False)
signals.after_setup_task_logger.connect(show_log_fields, weak=False)


class HousekeepingToDebug(logging.Filter):
    """Celery's per-task INFO lines (worker: received, succeeded; beat: sending due task) about the
    housekeeping tasks become DEBUG records (dropped unless DEBUG is on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        args = record.args
        name = args.get("name") if isinstance(args, dict) else (args[1] if isinstance(args, tuple)
                                                                and len(args) > 1 else None)
        if name not in HOUSEKEEPING:
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def _install_logging(**_: Any) -> None:
    logs.install()
    for name in ("celery.worker.strategy", "celery.app.trace", "celery.beat"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, HousekeepingToDebug) for f in logger.filters):
            logger.addFilter(HousekeepingToDebug())


def _shutdown_seconds() -> float:
    return get_settings().worker_shutdown_seconds


def _bounded_shutdown(**_: Any) -> None:
    """A warm shutdown waits for running tasks, within HUB_WORKER_SHUTDOWN_SECONDS; then the worker
    kills its pool and exits, however stuck the pool is."""
    processes.exit_within(_shutdown_seconds(), f"worker {os.getpid()}")


def _hangup_stops_the_worker(**_: Any) -> None:
    """SIGHUP (the terminal or the parent went away) is a warm shutdown, not Celery's re-exec restart."""
    platforms.signals["SIGHUP"] = platforms.signals["SIGTERM"]


def _close_store(**_: Any) -> None:
    close_engines()


def _child_dies_with_worker(**_: Any) -> None:
    """Pool and embedded beat processes end when the worker's main process is gone."""
    processes.watch_parent()


_install_logging()
signals.after_setup_logger.connect(_install_logging, weak=False)
signals.after_setup_task_logger.connect(_install_logging, weak=False)
signals.worker_shutting_down.connect(_bounded_shutdown, weak=False)
signals.worker_shutdown.connect(_bounded_shutdown, weak=False)
signals.worker_shutdown.connect(_close_store, weak=False)
signals.worker_process_shutdown.connect(_close_store, weak=False)
signals.worker_ready.connect(_hangup_stops_the_worker, weak=False)
signals.worker_process_init.connect(_child_dies_with_worker, weak=False)
signals.beat_embedded_init.connect(_child_dies_with_worker, weak=False)


def _default_app() -> Celery:
    settings = get_settings()
    return make_celery(
        settings.effective_broker_url,
        sweep_interval=settings.sweep_interval_seconds,
        poll_interval=settings.poll_interval_seconds,
        billing_poll_interval=settings.billing_poll_seconds,
        queue=settings.task_queue,
    )


app = _default_app()

"""The ``hub worker`` and ``hub beat`` commands, contributed to the hub's command line through the
``therapy_hub.cli`` entry point group (the hub never imports ``workers``)."""

from __future__ import annotations

import os

import typer

from hub import broker, logs, processes
from hub.settings import get_settings


def worker(
    concurrency: int = typer.Option(2, min=1, help="Worker processes (or threads with --pool threads)."),
    pool: str = typer.Option("prefork", help="Celery pool: prefork, threads or solo."),
    beat: bool = typer.Option(False, "--beat", help="Also run the scheduler (sweeper, purge) in this process."),
    loglevel: str = typer.Option("INFO", help="Log level."),
) -> None:
    """Run a Celery worker that delivers routed messages (broker: HUB_BROKER_URL, else embedded)."""
    from workers.app import app as celery_app  # reads the settings and builds the app: only when run

    logs.install()
    settings = get_settings()
    args = ["worker", "-Q", settings.task_queue, "--loglevel", loglevel, "--concurrency", str(concurrency),
            "--pool", pool,
            "--without-gossip", "--without-mingle", "-n", f"hub-worker-{os.getpid()}@%h"]
    if beat:
        schedule = settings.var_dir / "beat-schedule"
        schedule.parent.mkdir(parents=True, exist_ok=True)
        args += ["--beat", "--schedule", str(schedule)]
    typer.echo(f"Worker on broker {broker.redact(settings.effective_broker_url)}")
    celery_app.worker_main(argv=args)


def beat(loglevel: str = typer.Option("INFO", help="Log level.")) -> None:
    """Run the scheduler: the sweeper that re-enqueues lost jobs, and payload retention. Run once per site."""
    from workers.app import app as celery_app  # reads the settings and builds the app: only when run

    logs.install()
    processes.exit_on_signals()
    schedule = get_settings().var_dir / "beat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    celery_app.start(argv=["beat", "--loglevel", loglevel, "--schedule", str(schedule)])


def register(app: typer.Typer) -> None:
    """Add the worker's commands to the ``hub`` command line."""
    app.command()(worker)
    app.command()(beat)

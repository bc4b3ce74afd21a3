"""The ``hub`` command line."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Therapy Interop Hub: FHIR R4 gateway and sync engine for outpatient rehab clinics.\n\n"
    "Configuration comes from HUB_* environment variables (see README.md, 'Configuration').",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Manage the store's schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, help="TCP port to listen on."),
    reload: bool = typer.Option(False, "--reload", help="Restart when the code changes (development)."),
    workers: int = typer.Option(1, min=1, help="Number of API worker processes."),
    migrate: bool = typer.Option(True, "--migrate/--no-migrate", help="Upgrade the store schema before starting."),
    log_level: str = typer.Option("info", help="Log level of the HTTP server."),
) -> None:
    """Run the FHIR gateway (API at /fhir, health at /healthz and /readyz)."""
    import uvicorn

    from hub.settings import get_settings
    from hub.store.migrate import upgrade

    settings = get_settings()
    if migrate:
        typer.echo(f"Upgrading the store at {_redact(settings.database_url)} ...")
        upgrade(settings.database_url)
    base = settings.fhir_base if settings.base_url else f"http://{host}:{port}/fhir"
    typer.echo(f"Therapy Interop Hub on http://{host}:{port}  (FHIR base {base})")
    uvicorn.run(
        "hub.app:create_app",
        factory=True,
        host=host,
        port=port,
        reload=reload,
        workers=None if reload else workers,
        log_level=log_level,
    )


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision (default: the newest).")) -> None:
    """Create or upgrade the store's tables to REVISION."""
    from hub.settings import get_settings
    from hub.store.migrate import current, upgrade

    settings = get_settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"Store at {_redact(settings.database_url)} is at revision {current(settings.database_url)}")


@db_app.command("current")
def db_current() -> None:
    """Print the store's schema revision."""
    from hub.settings import get_settings
    from hub.store.migrate import current

    settings = get_settings()
    typer.echo(current(settings.database_url) or "(empty: run 'hub db upgrade')")


@app.command()
def version() -> None:
    """Print the hub's version and the FHIR version it speaks."""
    from hub import __version__

    typer.echo(f"therapy-hub {__version__} (FHIR R4 4.0.1)")


if __name__ == "__main__":
    app()

"""The commands that work on the store and its keys directly: token, secrets, db and version."""

from __future__ import annotations

import typer

from hub.cli.common import redact


def token(
    client: str | None = typer.Option(None, "--client", help="Client id (default: the local admin client)."),
    secret: str | None = typer.Option(None, "--secret", envvar="HUB_CLIENT_SECRET", show_envvar=True,
                                      help="The client's secret (asked for when --client is given without it)."),
    scope: str = typer.Option("", help="SMART scopes to narrow the token to (default: all of the client's)."),
) -> None:
    """Print an access token, and nothing else:  TOKEN=$(.venv/bin/hub token)

    Minted from the store (HUB_DATABASE_URL) with HUB_SECRET_KEY by the code of POST /auth/token:
    the same lifetime (15 minutes: run it again), scopes and revocation.

    Without --client: a token of the local admin client that 'hub serve' creates on a fresh store,
    with no secret asked (whoever can read the store and the key has all power already); refused
    when HUB_ENVIRONMENT=production.

    With --client: the client's secret is checked as the token endpoint does (prefer the prompt or
    HUB_CLIENT_SECRET to --secret, which other users can see in the process list)."""
    from datetime import UTC, datetime

    from hub.security.operator import TokenRefused, mint
    from hub.settings import get_settings

    if client is not None and secret is None:
        secret = typer.prompt("client secret", hide_input=True, err=True)
    try:
        response = mint(get_settings(), now=datetime.now(UTC).replace(tzinfo=None), client_id=client,
                        secret=secret, scope=scope)
    except TokenRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(response["access_token"])


secrets_app = typer.Typer(help="Secrets at rest.", no_args_is_help=True)


@secrets_app.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt connector secrets and message payloads with HUB_SECRET_KEY.

    Rotation: set the new key in HUB_SECRET_KEY and the old one in HUB_SECRET_KEY_PREVIOUS, restart,
    run this, then drop HUB_SECRET_KEY_PREVIOUS."""
    from hub.security.rotation import rotate
    from hub.settings import get_settings

    counts = rotate(get_settings())
    typer.echo(f"re-encrypted {counts['connectors']} connector config(s) and {counts['payloads']} payload(s)")


db_app = typer.Typer(help="Manage the store's schema (Alembic migrations).", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision (default: the newest).")) -> None:
    """Create or upgrade the store's tables to REVISION."""
    from hub.settings import get_settings
    from hub.store.migrate import current, upgrade

    settings = get_settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"Store at {redact(settings.database_url)} is at revision {current(settings.database_url)}")


@db_app.command("reindex")
def db_reindex(
    resource_type: str | None = typer.Option(None, "--type", help="Only this resource type, e.g. Appointment."),
    tenant: str | None = typer.Option(None, help="Only this tenant (default: every tenant)."),
    batch: int = typer.Option(500, min=1, max=10_000, help="Resources per transaction."),
) -> None:
    """Rebuild the search index from the stored resources, after an upgrade that adds search parameters.

    Resources, versions and history are not changed; the API keeps serving meanwhile."""
    from hub.settings import get_settings
    from hub.store.reindex import reindex
    from mappings.fhir import SUPPORTED_TYPES

    if resource_type is not None and resource_type not in SUPPORTED_TYPES:
        typer.echo(f"error: unknown resource type {resource_type!r} (one of {', '.join(SUPPORTED_TYPES)})", err=True)
        raise typer.Exit(2)
    settings = get_settings()
    report = reindex(settings.database_url, resource_type=resource_type, tenant=tenant, batch=batch,
                     progress=lambda n: typer.echo(f"  {n} resources reindexed ...", err=True))
    kinds = ", ".join(f"{t} {n}" for t, n in sorted(report.by_type.items())) or "nothing to do"
    typer.echo(f"Reindexed {report.resources} resources ({kinds})")


@db_app.command("current")
def db_current() -> None:
    """Print the store's schema revision."""
    from hub.settings import get_settings
    from hub.store.migrate import current

    settings = get_settings()
    typer.echo(current(settings.database_url) or "(empty: run 'hub db upgrade')")


def version() -> None:
    """Print the hub's version and the FHIR version it speaks."""
    from hub import __version__

    typer.echo(f"therapy-hub {__version__} (FHIR R4 4.0.1)")


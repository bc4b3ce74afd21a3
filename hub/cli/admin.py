"""The admin commands on a tenant's deliveries and configuration: jobs, replay, discard, connectors,
routes and clients."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from hub.cli.common import TenantOpt, admin_context, print_table


def jobs(
    status: str | None = typer.Option(None, help="pending, running, retrying, awaiting, succeeded or dead."),
    connector: str | None = typer.Option(None, help="Only jobs of this connector."),
    limit: int = typer.Option(50, min=1, max=500, help="How many, newest first."),
    tenant: str | None = TenantOpt,
) -> None:
    """List delivery jobs: status, attempts, next attempt (or confirmation due) and last error."""
    from hub.errors import HubError
    from hub.sync.admin import AdminViews

    settings, tenant, uow = admin_context(tenant)
    try:
        with uow as session:
            result = AdminViews(session, tenant=tenant).jobs(status=status, connector=connector, limit=limit)
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    rows = [
        [j["id"], j["message_id"], j["connector"], j["status"], f"{j['attempts']}/{j['max_attempts']}",
         j.get("next_attempt_at") or j.get("confirm_by") or j.get("finished_at"), j["last_error"]]
        for j in result["items"]
    ]
    print_table(f"Delivery jobs ({len(rows)} of {result['total']})",
                ["job", "message", "connector", "status", "attempts", "next/due/finished", "last error"], rows)


def replay(
    message_ids: list[str] = typer.Argument(None, help="Message ids to replay (see 'hub jobs')."),
    dead: bool = typer.Option(False, "--dead", help="Replay every dead letter (of --connector if given)."),
    connector: str | None = typer.Option(None, help="With --dead: only this connector's dead letters."),
    resend: bool = typer.Option(False, "--resend", help="With message ids: new idempotency keys, so partners "
                                "take it as a new delivery instead of deduping it (not with --dead)."),
    tenant: str | None = TenantOpt,
) -> None:
    """Deliver messages again: each replay is a new message linked to the original, which keeps its errors.

    A replay keeps the idempotency keys of the deliveries it replays: a partner that accepted one
    already answers it as a duplicate. --resend sends it as a new delivery."""
    from hub.errors import HubError
    from hub.sync.actions import SyncActions

    if not message_ids and not dead:
        typer.echo("error: give message ids, or --dead [--connector NAME]", err=True)
        raise typer.Exit(2)
    if resend and dead:
        typer.echo("error: --resend applies to message ids only, not to --dead", err=True)
        raise typer.Exit(2)
    settings, tenant, uow = admin_context(tenant)
    try:
        with uow as session:
            service = SyncActions(session, tenant=tenant, settings=settings)
            replays = [service.replay_message(m, resend=resend) for m in message_ids or []]
            if dead:
                replays += service.replay_dead(connector=connector)
            pairs = [(r.replay_of, r.id) for r in replays]
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for original, new in pairs:
        typer.echo(f"replayed {original} as {new}")
    typer.echo(f"{len(pairs)} message(s) queued for delivery")


def discard(
    job_id: int = typer.Argument(..., min=1, help="The dead letter's job id (see 'hub jobs --status dead')."),
    reason: str = typer.Option(..., "--reason", help="Why it will never be delivered (kept with the message)."),
    tenant: str | None = TenantOpt,
) -> None:
    """Discard a dead letter that must never be delivered (say, for a retired partner).

    It counts as resolved, leaves the bulk replays, and the later jobs of the same patient at that
    connector that it held back go ahead. The message's events record who discarded it and why."""
    from hub.errors import HubError
    from hub.sync.actions import SyncActions

    settings, tenant, uow = admin_context(tenant)
    try:
        with uow as session:
            SyncActions(session, tenant=tenant, settings=settings).discard_job(
                job_id, reason=reason, actor=f"cli:{_os_user()}")
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"discarded dead letter {job_id}")


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return str(os.getuid())


connectors_app = typer.Typer(
    help="Connector instances: with no command, list them with their health (backlog, dead letters, "
    "last success and error, error rate); 'test NAME' runs a health check. Add them with 'hub routes load'.",
    invoke_without_command=True,
)


@connectors_app.callback()
def connectors_list(ctx: typer.Context, tenant: str | None = TenantOpt) -> None:
    """List connectors with their health (backlog, dead letters, last success and error, error rate)."""
    if ctx.invoked_subcommand is not None:
        return
    from hub.sync.admin import AdminViews

    settings, tenant, uow = admin_context(tenant)
    with uow as session:
        items = AdminViews(session, tenant=tenant).connectors()
    rows = [
        [c["name"], c["kind"], "yes" if c["enabled"] else "no", c["health"]["backlog"], c["health"]["dead_letters"],
         c["health"]["last_success"], c["health"]["error_rate_1h"], c["health"]["last_error"]]
        for c in items
    ]
    print_table("Connectors",
                ["name", "kind", "enabled", "backlog", "dead", "last success", "err 1h", "last error"], rows)


@connectors_app.command("test")
def connectors_test(name: str = typer.Argument(..., help="Connector name."), tenant: str | None = TenantOpt) -> None:
    """Run a connector's health check against its partner; exit 1 when it fails."""
    from hub.errors import HubError
    from hub.sync.connectors import check_health

    settings, tenant, _ = admin_context(tenant)
    try:
        result = check_health(settings, tenant, name)
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{name}: {'ok' if result['ok'] else 'FAILED'} ({result['detail']}, {result['duration_ms']} ms)")
    raise typer.Exit(0 if result["ok"] else 1)


@connectors_app.command("kinds")
def connectors_kinds() -> None:
    """List the connector kinds installed (entry points of group therapy_hub.connectors)."""
    from connectors import registry

    for slug in registry.available():
        typer.echo(slug)


routes_app = typer.Typer(help="Routes: which changes go to which connectors.", no_args_is_help=True)


@routes_app.command("load")
def routes_load(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="YAML file with connectors and routes."),
    tenant: str | None = TenantOpt,
) -> None:
    """Create or update connectors and routes from a YAML file (by name; see docs/routes.example.yaml)."""
    import yaml

    from hub.errors import HubError
    from hub.sync.config import SyncConfig

    settings, tenant, uow = admin_context(tenant)
    try:
        document = yaml.safe_load(path.read_text())
        with uow as session:
            n_connectors, n_routes = SyncConfig(session, tenant=tenant, settings=settings).load_config(document)
    except yaml.YAMLError:
        typer.echo(f"error: {path} is not valid YAML", err=True)
        raise typer.Exit(2) from None
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"loaded {n_connectors} connector(s) and {n_routes} route(s)")


@routes_app.command("list")
def routes_list(tenant: str | None = TenantOpt) -> None:
    """List routes."""
    from hub.sync.admin import AdminViews

    settings, tenant, uow = admin_context(tenant)
    with uow as session:
        items = AdminViews(session, tenant=tenant).routes()
    rows = [[r["id"], r["name"], r["resource_type"], ",".join(r["interactions"]), r["filter"], r["connector"],
             "yes" if r["enabled"] else "no"] for r in items]
    print_table("Routes", ["id", "name", "type", "interactions", "filter", "connector", "enabled"], rows)


clients_app = typer.Typer(help="OAuth2 clients: who may call the hub, with which role and scopes.",
                          no_args_is_help=True)


@clients_app.command("add")
def clients_add(
    name: str = typer.Argument(..., help="A name people recognise, e.g. 'Riverside EMR'."),
    role: str = typer.Option(..., help="admin, clinic, referrer or system."),
    scopes: str | None = typer.Option(None, help="SMART v2 scopes, e.g. 'system/ServiceRequest.cruds'."),
    fhir_user: str | None = typer.Option(None, help="PractitionerRole/<id> of a referring physician."),
    public_key: Path | None = typer.Option(None, exists=True, dir_okay=False,
                                           help="PEM public key for SMART Backend Services (no secret then)."),
    label: str | None = typer.Option(None, help="Put in front of the generated client id (default: the role)."),
    client_id: str | None = typer.Option(None, help="An exact client id instead of a generated one."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (client_id, secret, role, scopes, "
                                 "tenant) and nothing else."),
    tenant: str | None = TenantOpt,
) -> None:
    """Register a client; its secret is printed once (store it now)."""
    from datetime import UTC, datetime

    from hub.errors import HubError
    from hub.security.clients import ClientService

    settings, tenant, uow = admin_context(tenant)
    try:
        with uow as session:
            new = ClientService(session, settings=settings, now=datetime.now(UTC).replace(tzinfo=None)).add(
                tenant=tenant, name=name, role=role, scopes=scopes, fhir_user=fhir_user, label=label,
                client_id=client_id,
                public_key=public_key.read_text() if public_key else None, with_secret=public_key is None)
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        import json

        typer.echo(json.dumps({"client_id": new.client_id, "secret": new.client_secret or None, "role": new.role,
                               "scopes": new.scopes, "tenant": tenant}))
        return
    typer.echo(f"client_id     {new.client_id}\nrole          {new.role}\nscopes        {new.scopes}")
    if new.client_secret:
        typer.echo(f"client_secret {new.client_secret}   (shown once)")


@clients_app.command("list")
def clients_list(tenant: str | None = TenantOpt) -> None:
    """List clients (never their secrets)."""
    from datetime import UTC, datetime

    from hub.security.clients import ClientService

    settings, tenant, uow = admin_context(tenant)
    with uow as session:
        items = ClientService(session, settings=settings, now=datetime.now(UTC).replace(tzinfo=None)).list(
            tenant=tenant)
    print_table("Clients", ["client id", "name", "role", "scopes", "fhir user", "auth", "revoked"],
                [[c["client_id"], c["name"], c["role"], c["scopes"], c["fhir_user"], c["auth"].strip(),
                  "yes" if c["revoked"] else ""] for c in items])


@clients_app.command("revoke")
def clients_revoke(client_id: str = typer.Argument(..., help="The client to revoke."),
                   tenant: str | None = TenantOpt) -> None:
    """Revoke a client: it gets no new tokens, and the tokens it holds are refused from now on (within
    5 seconds in other running hub processes)."""
    from datetime import UTC, datetime

    from hub.errors import HubError
    from hub.security.clients import ClientService

    settings, tenant, uow = admin_context(tenant)
    try:
        with uow as session:
            ClientService(session, settings=settings, now=datetime.now(UTC).replace(tzinfo=None)).revoke(
                client_id, tenant=tenant)
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"revoked {client_id}")


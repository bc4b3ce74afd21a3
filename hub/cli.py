"""The ``hub`` command line."""

from __future__ import annotations

import os
import signal
import sys
from importlib.metadata import entry_points
from pathlib import Path

import typer

app = typer.Typer(
    help="Therapy Interop Hub: FHIR R4 gateway and sync engine for outpatient rehab clinics.\n\n"
    "Configuration comes from HUB_* environment variables (see README.md, 'Configuration').",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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
    embedded_worker: bool | None = typer.Option(
        None,
        "--embedded-worker/--no-embedded-worker",
        help="Also run a sync worker + scheduler in a child process (default: when HUB_BROKER_URL is empty).",
    ),
) -> None:
    """Run the FHIR gateway (API at /fhir, admin API at /admin/api, health at /healthz and /readyz).

    With no HUB_BROKER_URL it also runs the embedded worker, so deliveries flow with no services."""
    import uvicorn

    from hub import logs, processes
    from hub.ports import port_in_use_message
    from hub.settings import get_settings
    from hub.store.migrate import upgrade

    busy = port_in_use_message(host, port) if port else None
    if busy:  # before anything is printed or started: the banner would claim an address we cannot have
        typer.echo(f"error: {busy}", err=True)
        raise typer.Exit(1)
    logs.install()
    processes.exit_on_signals(signal.SIGTERM)  # after uvicorn's graceful stop, it re-raises SIGTERM: leave via finally
    processes.hangup_is_terminate()
    settings = get_settings()
    if migrate:
        typer.echo(f"Upgrading the store at {_redact(settings.database_url)} ...")
        upgrade(settings.database_url)
    base = settings.fhir_base if settings.base_url else f"http://{host}:{port}/fhir"
    _announce_access(settings, f"http://{host}:{port}")
    worker = None
    if embedded_worker is None:
        embedded_worker = not settings.broker_url
    if embedded_worker:
        typer.echo("Starting the embedded worker and scheduler (sync deliveries) ...")
        worker = processes.spawn(processes.hub_command("worker", "--beat", "--concurrency", "2"))
    typer.echo(f"Therapy Interop Hub on http://{host}:{port}  (FHIR base {base}, admin API /admin/api)")
    try:
        if reload:  # uvicorn's reloader supervises one worker process: it dies with this one
            os.environ[processes.SUPERVISOR_ENV] = str(os.getpid())
            uvicorn.run("hub.app:create_worker_app", factory=True, host=host, port=port, reload=True,
                        log_level=log_level)
        elif workers > 1:
            processes.supervise_api_workers(uvicorn.Config(
                "hub.app:create_worker_app", factory=True, host=host, port=port, workers=workers,
                log_level=log_level))
        else:
            uvicorn.run("hub.app:create_app", factory=True, host=host, port=port, log_level=log_level)
    finally:
        if worker is not None:
            processes.stop(worker, timeout=settings.worker_shutdown_seconds + 5)
        from hub.store.db import close_engines

        close_engines()


def _announce_access(settings, base: str) -> None:  # type: ignore[no-untyped-def]
    """Create the local admin client on a fresh store and print its credentials, once."""
    if settings.auth_disabled:
        bar = "!" * 78
        typer.echo(f"{bar}\n!! AUTHENTICATION IS DISABLED (HUB_AUTH_DISABLED=true): every caller is an "
                   f"administrator.\n!! Development only; never expose this hub to a network.\n{bar}")
        return
    from datetime import UTC, datetime

    from hub.app import ensure_default_tenant
    from hub.security.clients import ClientService
    from hub.unit_of_work import unit_of_work

    try:
        ensure_default_tenant(settings)
        with unit_of_work(settings) as session:
            new = ClientService(session, settings=settings, now=datetime.now(UTC).replace(tzinfo=None)) \
                .ensure_local_admin(settings.default_tenant)
    except Exception as exc:  # the store is not migrated (--no-migrate): nothing to announce
        typer.echo(f"(local admin client not checked: {type(exc).__name__})")
        return
    if new is not None:
        typer.echo("Local administrator client created. Its secret is shown only this once:")
        typer.echo(f"  client_id     {new.client_id}\n  client_secret {new.client_secret}")
        typer.echo(f"  get a token:  TOKEN=$({_hub_command()} token)   (or: curl -s -u {new.client_id}:<secret> "
                   f"-d grant_type=client_credentials {base}/auth/token)")


def _hub_command() -> str:
    """How to call this hub from the current directory: the set-up does not put it on PATH."""
    import shutil

    script = Path(sys.executable).with_name("hub")
    if shutil.which("hub") == str(script):
        return "hub"
    relative = os.path.relpath(script)
    return str(script) if relative.startswith("..") else relative


#: the group through which other packages of the distribution add commands (``workers``: worker, beat)
COMMANDS_GROUP = "therapy_hub.cli"


def _add_commands(target: typer.Typer) -> None:
    """Commands contributed by installed packages: each entry point names a ``register(app)``."""
    found = {ep.name: ep for ep in entry_points(group=COMMANDS_GROUP)}  # one per name (metadata seen twice)
    for _, ep in sorted(found.items()):  # none: the install predates the group; ./scripts/bootstrap re-installs
        ep.load()(target)


_add_commands(app)


def _table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console(width=160).print(table)


def _admin(tenant: str | None):  # type: ignore[no-untyped-def]
    """(settings, tenant, unit of work) for the admin commands."""
    from hub.settings import get_settings
    from hub.unit_of_work import unit_of_work

    settings = get_settings()
    return settings, tenant or settings.default_tenant, unit_of_work(settings)


TenantOpt = typer.Option(None, "--tenant", help="Tenant (clinic organisation); default HUB_DEFAULT_TENANT.")


@app.command()
def jobs(
    status: str | None = typer.Option(None, help="pending, running, retrying, succeeded or dead."),
    connector: str | None = typer.Option(None, help="Only jobs of this connector."),
    limit: int = typer.Option(50, min=1, max=500, help="How many, newest first."),
    tenant: str | None = TenantOpt,
) -> None:
    """List delivery jobs: status, attempts, next attempt and last error."""
    from hub.errors import HubError
    from hub.sync.admin import AdminViews

    settings, tenant, uow = _admin(tenant)
    try:
        with uow as session:
            result = AdminViews(session, tenant=tenant).jobs(status=status, connector=connector, limit=limit)
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    rows = [
        [j["id"], j["message_id"], j["connector"], j["status"], f"{j['attempts']}/{j['max_attempts']}",
         j.get("next_attempt_at") or j.get("finished_at"), j["last_error"]]
        for j in result["items"]
    ]
    _table(f"Delivery jobs ({len(rows)} of {result['total']})",
           ["job", "message", "connector", "status", "attempts", "next/finished", "last error"], rows)


@app.command()
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
    settings, tenant, uow = _admin(tenant)
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


@app.command()
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

    settings, tenant, uow = _admin(tenant)
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
app.add_typer(connectors_app, name="connectors")


@connectors_app.callback()
def connectors_list(ctx: typer.Context, tenant: str | None = TenantOpt) -> None:
    """List connectors with their health (backlog, dead letters, last success and error, error rate)."""
    if ctx.invoked_subcommand is not None:
        return
    from hub.sync.admin import AdminViews

    settings, tenant, uow = _admin(tenant)
    with uow as session:
        items = AdminViews(session, tenant=tenant).connectors()
    rows = [
        [c["name"], c["kind"], "yes" if c["enabled"] else "no", c["health"]["backlog"], c["health"]["dead_letters"],
         c["health"]["last_success"], c["health"]["error_rate_1h"], c["health"]["last_error"]]
        for c in items
    ]
    _table("Connectors", ["name", "kind", "enabled", "backlog", "dead", "last success", "err 1h", "last error"], rows)


@connectors_app.command("test")
def connectors_test(name: str = typer.Argument(..., help="Connector name."), tenant: str | None = TenantOpt) -> None:
    """Run a connector's health check against its partner; exit 1 when it fails."""
    from hub.errors import HubError
    from hub.sync.connectors import check_health

    settings, tenant, _ = _admin(tenant)
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
app.add_typer(routes_app, name="routes")


@routes_app.command("load")
def routes_load(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="YAML file with connectors and routes."),
    tenant: str | None = TenantOpt,
) -> None:
    """Create or update connectors and routes from a YAML file (by name; see docs/routes.example.yaml)."""
    import yaml

    from hub.errors import HubError
    from hub.sync.config import SyncConfig

    settings, tenant, uow = _admin(tenant)
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

    settings, tenant, uow = _admin(tenant)
    with uow as session:
        items = AdminViews(session, tenant=tenant).routes()
    rows = [[r["id"], r["name"], r["resource_type"], ",".join(r["interactions"]), r["filter"], r["connector"],
             "yes" if r["enabled"] else "no"] for r in items]
    _table("Routes", ["id", "name", "type", "interactions", "filter", "connector", "enabled"], rows)


@app.command()
def demo(
    data_dir: Path = typer.Option(Path("var/demo"), help="Where the demo keeps its store (emptied first)."),
    port: int | None = typer.Option(None, help="Port of the demo hub (default: a free one)."),
    keep_running: bool = typer.Option(
        True, "--keep-running/--exit", help="Keep the hub and sandboxes up afterwards (Ctrl-C stops)."
    ),
) -> None:
    """Walk a referral through the whole loop on embedded defaults, against sandbox partners.

    No services needed: SQLite, the embedded broker and worker, a sandbox referrer system (webhook)
    and a sandbox clinic EMR (FHIR), all on 127.0.0.1."""
    from hub import logs, processes
    from hub.demo import DemoError, run_demo

    logs.install()
    processes.exit_on_signals()  # SIGTERM and SIGHUP stop the hub and the sandboxes, like Ctrl-C
    try:
        code = run_demo(data_dir, port, keep_running, typer.echo)
    except DemoError as exc:
        typer.echo(f"demo failed: {exc}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command()
def mllp(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(2575, help="TCP port of the MLLP listener."),
    tenant: str | None = TenantOpt,
    source: str | None = typer.Option(None, help="Listener name in the message store (default mllp:PORT)."),
    read_timeout: float = typer.Option(30.0, help="Seconds to wait for the rest of a started message."),
    ack_connector: str | None = typer.Option(
        None, help="hl7v2 connector to the sender's own listener: enhanced-mode application ACKs go there."),
) -> None:
    """Receive HL7 v2.5.1 over MLLP: referrals (REF^I12, OMG^O19), patients (ADT^A04/A08/A31) and
    referral status updates (RRI^I12, OSU^O51). Stored first, written to FHIR, then acknowledged."""
    from hub import logs, processes
    from hub.inbound.hl7v2 import run_listener
    from hub.settings import get_settings

    logs.install()
    processes.exit_on_signals()
    settings = get_settings()
    tenant = tenant or settings.default_tenant

    def ready(server) -> None:  # type: ignore[no-untyped-def]
        channel = f"; application ACKs via connector {ack_connector}" if ack_connector else ""
        typer.echo(f"MLLP listener on {host}:{server.port} (tenant {tenant}){channel}; Ctrl-C stops")

    try:
        run_listener(settings, tenant=tenant, host=host, port=port, source=source, read_timeout=read_timeout,
                     ready=ready, ack_connector=ack_connector)
    except KeyboardInterrupt:
        pass


clients_app = typer.Typer(help="OAuth2 clients: who may call the hub, with which role and scopes.",
                          no_args_is_help=True)
app.add_typer(clients_app, name="clients")


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

    settings, tenant, uow = _admin(tenant)
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

    settings, tenant, uow = _admin(tenant)
    with uow as session:
        items = ClientService(session, settings=settings, now=datetime.now(UTC).replace(tzinfo=None)).list(
            tenant=tenant)
    _table("Clients", ["client id", "name", "role", "scopes", "fhir user", "auth", "revoked"],
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

    settings, tenant, uow = _admin(tenant)
    try:
        with uow as session:
            ClientService(session, settings=settings, now=datetime.now(UTC).replace(tzinfo=None)).revoke(
                client_id, tenant=tenant)
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"revoked {client_id}")


@app.command()
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
app.add_typer(secrets_app, name="secrets")


@secrets_app.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt connector secrets and message payloads with HUB_SECRET_KEY.

    Rotation: set the new key in HUB_SECRET_KEY and the old one in HUB_SECRET_KEY_PREVIOUS, restart,
    run this, then drop HUB_SECRET_KEY_PREVIOUS."""
    from hub.security.rotation import rotate
    from hub.settings import get_settings

    counts = rotate(get_settings())
    typer.echo(f"re-encrypted {counts['connectors']} connector config(s) and {counts['payloads']} payload(s)")


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision (default: the newest).")) -> None:
    """Create or upgrade the store's tables to REVISION."""
    from hub.settings import get_settings
    from hub.store.migrate import current, upgrade

    settings = get_settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"Store at {_redact(settings.database_url)} is at revision {current(settings.database_url)}")


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


@app.command()
def version() -> None:
    """Print the hub's version and the FHIR version it speaks."""
    from hub import __version__

    typer.echo(f"therapy-hub {__version__} (FHIR R4 4.0.1)")


def main() -> None:
    """The ``hub`` entry point: a configuration error is one clear line and exit status 2, not a traceback.

    The message names the HUB_* variable at fault; values are never echoed (they may be secrets)."""
    from pydantic import ValidationError

    try:
        app()
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(part) for part in error.get("loc", ()))
            field = f"HUB_{where.upper()}: " if where else ""
            typer.echo(f"error: configuration: {field}{error['msg'].removeprefix('Value error, ')}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()

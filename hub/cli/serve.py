"""The commands that run the hub: ``serve`` (the FHIR gateway), ``demo``, ``mllp`` and ``direct``."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import typer

from hub.cli.common import TenantOpt, redact


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
        typer.echo(f"Upgrading the store at {redact(settings.database_url)} ...")
        upgrade(settings.database_url)
    base = settings.fhir_base if settings.base_url else f"http://{host}:{port}/fhir"
    _announce_access(settings, f"http://{host}:{port}")
    worker = None
    if embedded_worker is None:
        embedded_worker = not settings.broker_url
    if embedded_worker:
        typer.echo("Starting the embedded worker and scheduler (sync deliveries) ...")
        from hub.broker import CeleryEnqueuer

        CeleryEnqueuer.for_settings(settings).declare()  # before the worker and the API race to create it
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


def demo(
    data_dir: Path = typer.Option(Path("var/demo"), help="Where the demo keeps its store (emptied first)."),
    port: int | None = typer.Option(None, help="Port of the demo hub (default: a free one)."),
    keep_running: bool = typer.Option(
        True, "--keep-running/--exit", help="Keep the hub and sandboxes up afterwards (Ctrl-C stops)."
    ),
) -> None:
    """Walk a referral through the whole loop on embedded defaults, against sandbox partners, and bill its visits.

    No services needed: SQLite, the embedded broker and worker, a sandbox referrer system (webhook),
    a sandbox clinic EMR (FHIR), legacy system (HL7 v2), fax vendor, Direct HISP and clearinghouse
    (X12 837P, 999, 277CA, 835), all on 127.0.0.1."""
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



def direct(
    connector: str = typer.Argument(..., help="Name of the tenant's direct connector (its address, certificate, key)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(2525, help="TCP port of the SMTP listener."),
    allow: list[str] | None = typer.Option(None, "--allow", envvar="HUB_DIRECT_ALLOW",
                                           help="A client network (CIDR) of the HISP; repeatable. Connections from "
                                           "elsewhere get 554 5.7.1. Default: any."),
    tls_cert: str | None = typer.Option(None, "--tls-cert", envvar="HUB_DIRECT_TLS_CERT",
                                        help="PEM certificate (chain) file, or PEM text: STARTTLS is offered."),
    tls_key: str | None = typer.Option(None, "--tls-key", envvar="HUB_DIRECT_TLS_KEY",
                                       help="Its PEM key file, or PEM text."),
    require_starttls: bool = typer.Option(False, "--require-starttls", envvar="HUB_DIRECT_REQUIRE_STARTTLS",
                                          help="Refuse mail before STARTTLS."),
    auth_user: str | None = typer.Option(None, "--auth-user", envvar="HUB_DIRECT_AUTH_USER",
                                         help="Require SMTP AUTH as this user (password: HUB_DIRECT_AUTH_PASSWORD). "
                                         "Default: AUTH off."),
    tenant: str | None = TenantOpt,
) -> None:
    """Receive Direct messages over SMTP from the clinic's HISP: stored first, decrypted and verified,
    each document kept as a DocumentReference, then answered. Certificates and trust anchors changed
    meanwhile (hub direct certs) are used from the next message on."""
    import os

    from hub import logs, processes
    from hub.inbound.direct import ListenerOptions, run_listener
    from hub.settings import get_settings

    logs.install()
    processes.exit_on_signals()
    settings = get_settings()
    tenant = tenant or settings.default_tenant

    def ready(listener) -> None:  # type: ignore[no-untyped-def]
        typer.echo(f"Direct SMTP listener on {host}:{listener.port} (tenant {tenant}); Ctrl-C stops")

    password = os.environ.get("HUB_DIRECT_AUTH_PASSWORD", "")
    if auth_user and not password:
        typer.echo("--auth-user needs the password in HUB_DIRECT_AUTH_PASSWORD", err=True)
        raise typer.Exit(2)
    if bool(tls_cert) != bool(tls_key) or (require_starttls and not tls_cert):
        typer.echo("--tls-cert and --tls-key go together (and --require-starttls needs them)", err=True)
        raise typer.Exit(2)
    options = ListenerOptions(allow=allow or None, tls_cert=tls_cert, tls_key=tls_key,
                              require_starttls=require_starttls, auth={auth_user: password} if auth_user else None)
    try:
        run_listener(settings, tenant=tenant, connector=connector, host=host, port=port, ready=ready,
                     options=options)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except LookupError:
        typer.echo(f"no enabled direct connector named {connector!r} in tenant {tenant!r}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass

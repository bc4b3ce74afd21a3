"""``hub direct``: the Direct SMTP listener (``hub direct CONNECTOR``, also ``hub direct listen CONNECTOR``)
and the Direct certificates kept in the hub's store (``hub direct certs add`` / ``list`` / ``remove``).
A running listener picks up what changes here with its next message: no restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperGroup

from hub.cli.common import TenantOpt, admin_context, print_table
from hub.cli.serve import direct as listen

__all__ = ["certs_add", "certs_app", "certs_list", "certs_remove", "direct_app"]


class _DirectGroup(TyperGroup):
    """A first word that names no subcommand is the connector of ``listen`` (``hub direct CONNECTOR``)."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                           list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            command = self.commands["listen"]
            return "listen", command, args
        return super().resolve_command(ctx, args)


direct_app = typer.Typer(cls=_DirectGroup, no_args_is_help=True,
                         help="Direct messaging: the SMTP listener (hub direct CONNECTOR) and the certificates.")
certs_app = typer.Typer(no_args_is_help=True, help="Direct certificates, keys and trust anchors per address.")
direct_app.command("listen")(listen)
direct_app.add_typer(certs_app, name="certs")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        typer.echo(f"error: cannot read the {what} file {str(path)!r}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None


@certs_app.command("add")
def certs_add(
    address: str = typer.Option(..., "--address", help="The Direct address the certificate is for."),
    cert: Path = typer.Option(..., "--cert", help="Certificate file, PEM or DER."),
    key: Path | None = typer.Option(None, "--key", help="Its private key (PEM or DER, unencrypted); stored encrypted."),
    trust_anchor: bool = typer.Option(False, "--trust-anchor",
                                      help="A trust anchor for the messages received at ADDRESS."),
    replace: bool = typer.Option(False, "--replace", help="Remove the address's other certificates (or, with "
                                 "--trust-anchor, its other anchors); without it the old ones stay in use until "
                                 "they expire."),
    tenant: str | None = TenantOpt,
) -> None:
    """Add a certificate (with its key: the address is ours) or a trust anchor to the hub's store."""
    from hub.sync.direct_certs import CertificateRefused, DirectCerts, certificate_view

    cert_bytes = _read(cert, "certificate")
    key_bytes = _read(key, "key") if key is not None else None
    settings, tenant_id, uow = admin_context(tenant)
    try:
        with uow as session:
            view: dict[str, Any] = certificate_view(DirectCerts(session, tenant=tenant_id, settings=settings).add(
                address=address, cert=cert_bytes, key=key_bytes, trust_anchor=trust_anchor, replace=replace))
    except CertificateRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    what = "trust anchor" if view["trust_anchor"] else ("certificate and key" if view["has_key"] else "certificate")
    typer.echo(f"stored {what} for {view['address']}: {view['subject']} (sha256 {view['fingerprint'][:16]}..., "
               f"valid until {view['not_after']})")


@certs_app.command("list")
def certs_list(
    address: str | None = typer.Option(None, "--address", help="Only this address."),
    tenant: str | None = TenantOpt,
) -> None:
    """The Direct certificates and trust anchors in the hub's store (never a key)."""
    from hub.sync.direct_certs import DirectCerts, certificate_view

    settings, tenant_id, uow = admin_context(tenant)
    with uow as session:
        views = [certificate_view(r) for r in DirectCerts(session, tenant=tenant_id, settings=settings).list(
            address=address)]
    print_table("Direct certificates", ["address", "kind", "subject", "valid until", "sha256"], [
        [v["address"], "trust anchor" if v["trust_anchor"] else ("ours (key)" if v["has_key"] else "partner"),
         v["subject"], v["not_after"], v["fingerprint"][:16]] for v in views])


@certs_app.command("remove")
def certs_remove(
    address: str = typer.Argument(..., help="The Direct address whose entries to remove."),
    kind: str | None = typer.Option(None, "--kind", help="Only certificates (cert) or only trust anchors (anchor)."),
    fingerprint: str | None = typer.Option(None, "--fingerprint",
                                           help="Only this one: its SHA-256, or at least 8 hex digits of it."),
    tenant: str | None = TenantOpt,
) -> None:
    """Remove certificates or trust anchors of ADDRESS from the hub's store (exit 1 when none matched)."""
    from hub.sync.direct_certs import CertificateRefused, DirectCerts, certificate_view

    settings, tenant_id, uow = admin_context(tenant)
    try:
        with uow as session:
            removed = [certificate_view(r) for r in DirectCerts(session, tenant=tenant_id, settings=settings).remove(
                address=address, kind=kind, fingerprint=fingerprint)]
    except CertificateRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not removed:
        typer.echo("error: no certificate of that address matched", err=True)
        raise typer.Exit(1)
    for view in removed:
        what = "trust anchor" if view["trust_anchor"] else "certificate"
        typer.echo(f"removed {what} for {view['address']}: {view['subject']} (sha256 {view['fingerprint'][:16]}...)")

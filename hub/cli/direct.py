"""``hub direct``: the Direct SMTP listener (``hub direct CONNECTOR``, also ``hub direct listen CONNECTOR``)
and the Direct certificates kept in the hub's store (``hub direct certs add`` / ``list`` / ``remove``,
CRLs: ``add --crl FILE`` / ``remove-crl ID``).
A running listener picks up what changes here with its next message: no restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperGroup

from hub.cli.common import TenantOpt, admin_context, print_table
from hub.cli.serve import direct as listen

__all__ = ["certs_add", "certs_app", "certs_list", "certs_remove", "certs_remove_crl", "direct_app"]


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
    address: str | None = typer.Option(None, "--address", help="The Direct address the certificate is for."),
    cert: Path | None = typer.Option(None, "--cert", help="Certificate file, PEM or DER."),
    key: Path | None = typer.Option(None, "--key", help="Its private key (PEM or DER, unencrypted); stored encrypted."),
    trust_anchor: bool = typer.Option(False, "--trust-anchor",
                                      help="A trust anchor for the messages received at ADDRESS."),
    replace: bool = typer.Option(False, "--replace", help="Remove the address's other certificates (or, with "
                                 "--trust-anchor, its other anchors); without it the old ones stay in use until "
                                 "they expire."),
    crl: Path | None = typer.Option(None, "--crl", help="Instead: a certificate revocation list (PEM or DER) of a "
                                    "stored trust anchor or intermediate; an expired one is kept and reported."),
    tenant: str | None = TenantOpt,
) -> None:
    """Add a certificate (with its key: the address is ours), a trust anchor, or (--crl) a CRL to the hub's store."""
    from hub.sync.direct_certs import CertificateRefused, DirectCerts, certificate_view

    if crl is not None:
        if address is not None or cert is not None or key is not None or trust_anchor or replace:
            typer.echo("error: --crl is given alone (a CRL belongs to its issuer, not to an address)", err=True)
            raise typer.Exit(2)
        _add_crl(_read(crl, "CRL"), tenant)
        return
    if address is None or cert is None:
        typer.echo("error: --address and --cert are needed (or --crl FILE)", err=True)
        raise typer.Exit(2)
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


def _add_crl(data: bytes, tenant: str | None) -> None:
    from hub.sync.direct_crls import CrlRefused, DirectCrls, crl_view

    settings, tenant_id, uow = admin_context(tenant)
    try:
        with uow as session:
            added = DirectCrls(session, tenant=tenant_id).add(data)
            view = crl_view(added.row)
    except CrlRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"stored CRL {view['id']} of {view['issuer']}: {view['revoked']} revoked, next update "
               f"{view['next_update'] or 'not given'} (sha256 {view['fingerprint'][:16]}...)"
               + (f"; superseded CRL {', '.join(map(str, added.superseded))}" if added.superseded else ""))
    if added.expired:
        typer.echo(f"warning: the CRL expired at {view['next_update']}: it is kept and still revokes what it "
                   "lists, but the issuer's other certificates are not vouched for until a current CRL is "
                   "added", err=True)


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
    from hub.sync.direct_crls import DirectCrls, crl_view

    with admin_context(tenant)[2] as session:
        crls = [crl_view(r) for r in DirectCrls(session, tenant=tenant_id).list()]
    if crls and address is None:
        print_table("Certificate revocation lists", ["id", "issuer", "revoked", "next update", "sha256"], [
            [str(v["id"]), v["issuer"], str(v["revoked"]),
             (v["next_update"] or "-") + (" (expired)" if v["expired"] else ""), v["fingerprint"][:16]]
            for v in crls])


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


@certs_app.command("remove-crl")
def certs_remove_crl(
    entry_id: int = typer.Argument(..., help="The CRL's id, as listed."),
    tenant: str | None = TenantOpt,
) -> None:
    """Remove a CRL from the hub's store (its issuer's certificates are checked soft-fail again)."""
    from hub.errors import NotFound
    from hub.sync.direct_crls import DirectCrls, crl_view

    settings, tenant_id, uow = admin_context(tenant)
    try:
        with uow as session:
            view = crl_view(DirectCrls(session, tenant=tenant_id).remove_id(entry_id))
    except NotFound as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"removed CRL {view['id']} of {view['issuer']}")

"""``hub billing import`` and ``hub billing eligibility``: the X12 files that come back from the
clearinghouse, by hand. Registered on the ``billing`` command group with :func:`register`."""

from __future__ import annotations

from pathlib import Path

import typer

from hub.cli.common import TenantOpt, admin_context


def _money(cents: int) -> str:
    return f"{cents / 100:,.2f}"


def billing_import(
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                       help="The X12 files (999, TA1, 277CA, 835, 271); several at once."),
    tenant: str | None = TenantOpt,
) -> None:
    """Import X12 response files from the clearinghouse by hand (999, TA1, 277CA, 835, 271).

    Each file is stored first, then every transaction set in it is applied on its own.
    Prints per file what it applied.
    Exit status 1 when a file could not be read (it is kept, as rejected)."""
    from hub.billing.imports import MANUAL_SOURCE, import_x12

    settings, tenant, _ = admin_context(tenant)
    from hub.unit_of_work import unit_of_work

    unreadable = 0
    for path in files:
        with unit_of_work(settings) as session:
            result = import_x12(session, settings, tenant=tenant, raw=path.read_bytes(), source=MANUAL_SOURCE,
                                name=path.name)
        if result.duplicate:
            typer.echo(f"{path.name}: already imported (message {result.message_id}), nothing applied")
            if not result.readable:
                unreadable += 1
            continue
        if not result.readable:
            typer.echo(f"{path.name}: not readable: {result.error} (kept as message {result.message_id})", err=True)
            unreadable += 1
            continue
        typer.echo(f"{path.name}: message {result.message_id}")
        for outcome in result.sets:
            claims = ", ".join(f"{n} {status}" for status, n in sorted(outcome.claims.items())) or "no claim moved"
            line = f"  {outcome.kind} {outcome.control_number}: {'applied' if outcome.applied else 'NOT applied'}"
            line += f"; {claims}"
            if outcome.paid_cents or outcome.kind == "835":
                line += (f"; paid {_money(outcome.paid_cents)}, patient responsibility "
                         f"{_money(outcome.patient_responsibility_cents)}")
            if outcome.unmatched:
                line += f"; {len(outcome.unmatched)} for unknown claims (kept as unmatched)"
            typer.echo(line)
            for error in outcome.errors:
                typer.echo(f"    error: {error}")
    if unreadable:
        raise typer.Exit(1)


def billing_eligibility(
    coverage_id: str = typer.Argument(..., help="The Coverage (its id, or Coverage/<id>)."),
    discipline: list[str] = typer.Option(["PT"], "--discipline", help="PT, OT or SLP (repeatable)."),
    provider: str | None = typer.Option(None, help="The provider that asks, Organization/<id> "
                                          "(default: the one with an NPI)."),
    connector: str | None = typer.Option(None, help="The x12_billing connector to ask through (default: the first)."),
    tenant: str | None = TenantOpt,
) -> None:
    """Ask the payer about a Coverage's therapy benefits (an X12 270).

    Writes a CoverageEligibilityRequest and queues the 270 to the clearinghouse.
    The 271 answer comes back by the billing poll, or by 'hub billing import'."""
    from hub.billing.eligibility_requests import request_eligibility
    from hub.errors import HubError

    settings, tenant, uow = admin_context(tenant)
    coverage = coverage_id if coverage_id.startswith("Coverage/") else f"Coverage/{coverage_id}"
    try:
        with uow as session:
            requested = request_eligibility(session, settings, tenant=tenant, coverage=coverage,
                                            disciplines=discipline, provider=provider, connector=connector)
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"CoverageEligibilityRequest/{requested.request_id}: 270 queued to {requested.connector} "
               f"(trace {requested.trace}, service types {', '.join(requested.service_types)}, "
               f"message {requested.message_id})")


def register(billing_app: typer.Typer) -> None:
    """Add ``import`` and ``eligibility`` to the ``billing`` command group."""
    billing_app.command("import")(billing_import)
    billing_app.command("eligibility")(billing_eligibility)

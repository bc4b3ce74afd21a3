"""``hub billing``: claims from the store's visits, scrubbed, and sent as X12 837P files (ADR 0013).

``billing_app`` is the group; the commands of the outbound side are here (``claims``, ``build``,
``scrub``, ``export``, ``submit``). The commands of the inbound side (``import``, ``eligibility``) are
added to the same group by :mod:`hub.cli.billing_files` (``@billing_app.command(...)`` there), imported
at the end of this module, so ``hub billing --help`` lists them all."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import typer

from hub.cli.common import TenantOpt, admin_context, print_table
from hub.store.billing_statuses import CLAIM_STATUSES

__all__ = ["billing_app", "billing_build", "billing_claims", "billing_export", "billing_scrub", "billing_submit"]

billing_app = typer.Typer(
    help="Billing: build a claim per finished visit with billable charges, scrub it, send the claims that "
    "pass as X12 837P files to the clearinghouse (an x12_billing connector with a 'billing' profile), and "
    "import what comes back (999, TA1, 277CA, 835, 271).\n\n"
    "In order: build, claims, scrub, submit (or export); then import, by hand or by the billing poll.",
    no_args_is_help=True,
)


def _run(tenant: str | None, work: Any) -> Any:
    """``work(service)`` in one unit of work; a domain error is one line on stderr and exit status 2."""
    from hub.billing.service import BillingService
    from hub.errors import HubError

    settings, tenant_id, uow = admin_context(tenant)
    try:
        with uow as session:
            return work(BillingService(session, settings, tenant_id))
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@billing_app.command("claims")
def billing_claims(
    status: str | None = typer.Option(None, "--status", help="Only claims in this status, or several "
                                      "comma-separated: " + ", ".join(CLAIM_STATUSES) + "."),
    limit: int = typer.Option(100, min=1, max=500, help="How many claims to list, newest date of service first."),
    tenant: str | None = TenantOpt,
) -> None:
    """List claims with their status, payer, charge and findings (no patient names)."""
    views = _run(tenant, lambda svc: svc.claims(status=status, limit=limit))
    rows = [[v["claim_id"], v["patient_control_number"], v["status"], v["payer_id"], v["discipline"], v["charge"],
             v["paid"], v["service_from"], f"{v['errors']}/{v['findings']}", v["submitted_at"]] for v in views]
    print_table(f"Claims ({len(rows)})", ["claim", "control number", "status", "payer", "disc.", "charge", "paid",
                                          "service", "errors/findings", "submitted"], rows)


@billing_app.command("build")
def billing_build(
    through: str | None = typer.Option(None, "--through", metavar="YYYY-MM-DD",
                                       help="Only visits that started on or before this date (default: all)."),
    tenant: str | None = TenantOpt,
) -> None:
    """Build (or rebuild) a claim per finished visit with billable charges, and scrub each one.

    A claim with an error finding is 'blocked'; the others are 'ready' to submit."""
    try:
        day = date.fromisoformat(through) if through else None
    except ValueError:
        typer.echo(f"error: --through: {through!r} is not a date (YYYY-MM-DD)", err=True)
        raise typer.Exit(2) from None
    result = _run(tenant, lambda svc: svc.build_claims(through=day))
    rows = [[c.claim_id, c.patient_control_number, c.encounter_id, c.action, c.status, c.errors, c.warnings]
            for c in result.claims]
    print_table(f"Claims built ({len(rows)})", ["claim", "control number", "encounter", "action", "status",
                                                "errors", "warnings"], rows)
    for skipped in result.skipped:
        typer.echo(f"skipped Encounter/{skipped.encounter_id}: {skipped.reason}")
    blocked = sum(1 for c in result.claims if c.status == "blocked")
    typer.echo(f"{result.count('created')} created, {result.count('updated')} updated, "
               f"{result.count('replacement')} replacement(s), {result.count('unchanged')} unchanged; "
               f"{blocked} blocked, {len(result.skipped)} skipped")


@billing_app.command("scrub")
def billing_scrub(
    claim_id: str = typer.Argument(..., help="The claim's id (see 'hub billing claims')."),
    tenant: str | None = TenantOpt,
) -> None:
    """Scrub one claim again and print its findings.

    Each finding gives its rule, line, message and fix.
    Exit status 1 when an error keeps the claim from going out."""
    result = _run(tenant, lambda svc: svc.scrub(claim_id))
    rows = [[f.severity, f.rule, f.line or "claim", f.message, f.fix] for f in result.findings]
    print_table(f"Claim {claim_id}: {result.status}", ["severity", "rule", "line", "message", "fix"], rows)
    if result.blocking:
        typer.echo("blocked: fix the errors above, then 'hub billing build'", err=True)
        raise typer.Exit(1)


def _print_files(results: list[Any]) -> None:
    if not results:
        typer.echo("no claim is ready to go out")
    for r in results:
        where = r.path or (f"message {r.message_id}, job(s) {', '.join(map(str, r.job_ids))}" if r.message_id else "")
        typer.echo(f"{r.status}: payer {r.payer_id} via {r.connector}, ISA13 {r.interchange_control}, "
                   f"ST02 {r.transaction_control}, {len(r.claim_ids)} claim(s), ${r.charge_cents / 100:.2f}"
                   + (f" -> {where}" if where else ""))
        for claim_id, number in zip(r.claim_ids, r.patient_control_numbers, strict=True):
            typer.echo(f"  claim {claim_id} ({number})")
        for issue in r.issues:
            typer.echo(f"  invalid: {issue}", err=True)


@billing_app.command("export")
def billing_export(
    out: Path = typer.Option(..., "--out", file_okay=False, dir_okay=True, writable=True,
                             help="Directory to write the 837P files to (created if missing)."),
    connector: str | None = typer.Option(None, "--connector", help="Only the claims of this x12_billing connector."),
    tenant: str | None = TenantOpt,
) -> None:
    """Write the ready claims as 837P files to a directory instead of sending them.

    One file per payer, named <payer>-<ISA13>.837; its claims are then 'submitted'.
    Exit status 1 when a file failed validation (its claims stay ready)."""
    out.mkdir(parents=True, exist_ok=True)
    results = _run(tenant, lambda svc: svc.submit(connector=connector, out_dir=out))
    _print_files(results)
    if any(r.status == "invalid" for r in results):
        raise typer.Exit(1)


@billing_app.command("submit")
def billing_submit(
    connector: str | None = typer.Option(None, "--connector", help="Only the claims of this x12_billing connector."),
    tenant: str | None = TenantOpt,
) -> None:
    """Send the ready claims to the clearinghouse as 837P files.

    One file per connector and payer, each a delivery job of the x12_billing connector.
    Exit status 1 when a file failed validation (its claims stay ready)."""
    results = _run(tenant, lambda svc: svc.submit(connector=connector))
    _print_files(results)
    if any(r.status == "invalid" for r in results):
        raise typer.Exit(1)


# ------------------------------------------------------------------ the commands of the inbound side
from hub.cli.billing_files import register as _register_files  # noqa: E402 - after billing_app is defined

_register_files(billing_app)

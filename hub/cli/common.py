"""What the command modules share: the --tenant option, the admin commands' unit of work, tables."""

from __future__ import annotations

import typer


def redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def print_table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console(width=160).print(table)


def admin_context(tenant: str | None):  # type: ignore[no-untyped-def]
    """(settings, tenant, unit of work) for the admin commands."""
    from hub.settings import get_settings
    from hub.unit_of_work import unit_of_work

    settings = get_settings()
    return settings, tenant or settings.default_tenant, unit_of_work(settings)


TenantOpt = typer.Option(None, "--tenant", help="Tenant (clinic organisation); default HUB_DEFAULT_TENANT.")


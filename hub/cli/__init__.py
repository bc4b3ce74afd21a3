"""The ``hub`` command line: ``app``, with the commands of the modules beside this one, and ``main``.

The commands are added here, in the order ``hub --help`` lists them: ``serve``, the commands of other
packages (``worker``, ``beat``), the admin commands, ``demo``, ``mllp``, ``direct``, ``token``, ``version``;
then the groups ``db``, ``connectors``, ``routes``, ``clients``, ``secrets`` and ``billing``. Each command imports
what it needs when it runs (the modules beside this one import inside their functions), so that
``hub --help`` and every command start fast."""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

from hub.cli.admin import (
    clients_add,
    clients_app,
    clients_list,
    clients_revoke,
    connectors_app,
    connectors_kinds,
    connectors_list,
    connectors_test,
    discard,
    jobs,
    replay,
    routes_app,
    routes_list,
    routes_load,
)
from hub.cli.billing import billing_app
from hub.cli.common import TenantOpt
from hub.cli.direct import direct_app
from hub.cli.ops import db_app, db_current, db_reindex, db_upgrade, secrets_app, secrets_rotate, token, version
from hub.cli.serve import demo, direct, mllp, serve

__all__ = [
    "COMMANDS_GROUP", "TenantOpt", "app", "billing_app", "clients_add", "clients_app", "clients_list", "clients_revoke",
    "connectors_app", "connectors_kinds", "connectors_list", "connectors_test", "db_app", "db_current",
    "db_reindex", "db_upgrade", "demo", "direct", "direct_app", "discard", "jobs", "main", "mllp", "replay",
    "routes_app", "routes_list", "routes_load", "secrets_app", "secrets_rotate", "serve", "token", "version",
]

app = typer.Typer(
    help="Therapy Interop Hub: FHIR R4 gateway and sync engine for outpatient rehab clinics.\n\n"
    "Configuration comes from HUB_* environment variables (see README.md, 'Configuration').",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: the group through which other packages of the distribution add commands (``workers``: worker, beat)
COMMANDS_GROUP = "therapy_hub.cli"


def _add_commands(target: typer.Typer) -> None:
    """Commands contributed by installed packages: each entry point names a ``register(app)``."""
    found = {ep.name: ep for ep in entry_points(group=COMMANDS_GROUP)}  # one per name (metadata seen twice)
    for _, ep in sorted(found.items()):  # none: the install predates the group; ./scripts/bootstrap re-installs
        ep.load()(target)


app.command()(serve)
_add_commands(app)
for _command in (jobs, replay, discard, demo, mllp):
    app.command()(_command)
app.add_typer(direct_app, name="direct")
for _command in (token, version):
    app.command()(_command)
app.add_typer(db_app, name="db")
app.add_typer(connectors_app, name="connectors")
app.add_typer(routes_app, name="routes")
app.add_typer(clients_app, name="clients")
app.add_typer(secrets_app, name="secrets")
app.add_typer(billing_app, name="billing")


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

"""``grace``: the root command, global options and error handling."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from grace._version import __version__
from grace.cli._logging import configure_logging
from grace.cli.audit import audit_app
from grace.cli.demo import demo
from grace.cli.governance import approvals_app, keys_app, policy_app, principals_app
from grace.cli.ledger import ledger_app
from grace.cli.ops import boot, status
from grace.cli.serve import serve
from grace.cli.verify import verify
from grace.config import GraceSettings, load_settings
from grace.errors import GraceError

__all__ = ["app", "main"]

app = typer.Typer(
    name="grace",
    help="Grace: governance and immune runtime for autonomous software.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(audit_app, name="audit")
app.add_typer(principals_app, name="principals")
app.add_typer(keys_app, name="keys")
app.add_typer(approvals_app, name="approvals")
app.add_typer(policy_app, name="policy")
app.add_typer(ledger_app, name="ledger")
app.command()(demo)
app.command()(serve)
app.command()(status)
app.command()(boot)
app.command()(verify)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"grace {__version__}")
        raise typer.Exit


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Grace keeps a tamper-evident record of every decision it makes."""
    settings: GraceSettings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    ctx.obj = settings


def main() -> None:
    """Console entry point: a Grace error becomes a one-line message and exit code 2."""
    try:
        app()
    except GraceError as e:
        Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {e}")
        sys.exit(2)

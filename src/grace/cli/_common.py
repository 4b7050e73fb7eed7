"""Options and helpers shared by the CLI's commands."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from grace.config import GraceSettings

__all__ = [
    "DataDirOption",
    "DatabaseUrlOption",
    "data_dir_of",
    "database_url_of",
    "run",
    "settings_of",
]

_T = TypeVar("_T")

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        "-d",
        help="Data directory (default: GRACE_DATA_DIR, grace.toml, else ./.grace).",
        show_default=False,
    ),
]


DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="The PostgreSQL database of a scaled-out deployment (postgresql://…; default: "
        "GRACE_DATABASE_URL); the ledger is checked with the key in DATA_DIR/ledger.key.",
        show_default=False,
    ),
]


def database_url_of(ctx: typer.Context, option: str | None) -> str | None:
    """``--database-url`` if given, else the settings' ``database_url`` (None: SQLite)."""
    return option or settings_of(ctx).database_url


def settings_of(ctx: typer.Context) -> GraceSettings:
    """The settings the root command loaded."""
    settings = ctx.find_root().obj
    if not isinstance(settings, GraceSettings):  # pragma: no cover - root callback always sets it
        raise typer.BadParameter("settings were not loaded")
    return settings


def data_dir_of(ctx: typer.Context, option: Path | None) -> Path:
    """``--data-dir`` if given, else the settings' data dir."""
    return option if option is not None else settings_of(ctx).data_dir


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)

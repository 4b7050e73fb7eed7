"""Options and helpers shared by the CLI's commands."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from grace.config import GraceSettings

__all__ = ["DataDirOption", "data_dir_of", "run", "settings_of"]

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

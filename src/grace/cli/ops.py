"""``grace status`` (a running server's figures, as tables) and ``grace boot --plan``."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from grace.cli._common import DataDirOption, settings_of
from grace.errors import GraceError

__all__ = ["boot", "status"]

KEY_ENV = "GRACE_API_KEY"


def status(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(help="The server (default: http://HOST:PORT from the settings)."),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(help=f"API key of an operator, auditor or admin (default: ${KEY_ENV})."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
) -> None:
    """Show every component's figures from a running Grace server."""
    import httpx

    settings = settings_of(ctx)
    base = (url or f"http://{settings.host}:{settings.port}").rstrip("/")
    key = key or os.environ.get(KEY_ENV)
    if not key:
        raise GraceError(f"grace status needs an API key: --key or ${KEY_ENV}")
    try:
        r = httpx.get(f"{base}/v1/status", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    except httpx.HTTPError as e:
        raise GraceError(f"cannot reach the Grace server at {base}: {e}") from e
    if r.status_code != 200:
        detail = r.json().get("detail", r.text) if r.content else r.reason_phrase
        raise GraceError(f"{base}/v1/status answered {r.status_code}: {detail}")
    body: dict[str, Any] = r.json()
    console = Console(highlight=False)
    if as_json:
        console.print_json(data=body)
        return
    for component, figures in body.items():
        table = Table(title=component, title_justify="left", show_header=False, expand=False)
        table.add_column("figure", style="bold")
        table.add_column("value")
        for name, value in (figures if isinstance(figures, dict) else {"": figures}).items():
            table.add_row(name, _cell(value))
        console.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def boot(
    ctx: typer.Context,
    plan: Annotated[
        bool, typer.Option("--plan", help="Print the boot plan without starting anything.")
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """The Guardian boot: --plan shows the chunks in boot order (nothing starts)."""
    from grace.runtime import Grace

    if not plan:
        raise GraceError("grace boot runs inside `grace serve`; use `grace boot --plan`")
    settings = settings_of(ctx)
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    order = Grace(settings).boot.plan()
    table = Table(title="Guardian boot plan", title_justify="left")
    table.add_column("#")
    table.add_column("chunk", no_wrap=True, style="bold")
    for column in ("priority", "on failure", "depends on", "timeout", "retries", "name"):
        table.add_column(column)
    for i, chunk in enumerate(order, 1):
        table.add_row(
            str(i),
            chunk.chunk_id,
            f"{chunk.priority:g}",
            "degrades" if chunk.can_fail else "aborts",
            ", ".join(chunk.depends_on) or "-",
            f"{chunk.timeout_s:g} s",
            str(chunk.retries),
            chunk.name,
        )
    Console(highlight=False).print(table)

"""``grace serve``: run the Grace server (uvicorn) in the foreground."""

from __future__ import annotations

from typing import Annotated

import typer

from grace.cli._common import DataDirOption, settings_of

__all__ = ["serve"]


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Interface (default: settings.host).")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port (default: settings.port).")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Start Grace: ledger, constitution, gate, mesh and the HTTP API."""
    import uvicorn

    from grace.server import create_app

    settings = settings_of(ctx)
    updates = {
        k: v for k, v in {"host": host, "port": port, "data_dir": data_dir}.items() if v is not None
    }
    if updates:
        settings = settings.model_copy(update=updates)

    from rich.console import Console

    Console(stderr=True, highlight=False).print(
        f"[bold]Grace[/] serving on http://{settings.host}:{settings.port} "
        f"(data dir {settings.data_dir}, governance mode {settings.governance.mode}).\n"
        "Every route needs credentials; make one with:\n"
        f"  grace principals add alice --kind human --role approver -d {settings.data_dir}\n"
        f"  grace keys create --principal alice -d {settings.data_dir}"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
    )

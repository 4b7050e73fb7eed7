"""``grace serve``: run the Grace server (uvicorn) in the foreground.

``--demo`` adds the demo service (supervised and health-checked), the demo cast of
principals, a console sign-in key printed once at start, and a light background workload
(:mod:`grace.cli._workload`), so the web console has something live to show.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from grace.cli._common import DataDirOption, settings_of
from grace.config import GraceSettings
from grace.server.app import RuntimeFactory
from grace.server.governance_api import GovernanceServices

__all__ = ["serve"]


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Interface (default: settings.host).")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port (default: settings.port).")
    ] = None,
    data_dir: DataDirOption = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help="Also run the demo service and a light workload; print a console key."
        ),
    ] = False,
) -> None:
    """Start Grace: the Guardian boot, then the HTTP API and the web console at /."""
    import uvicorn

    from grace.server import create_app

    settings = settings_of(ctx)
    updates = {
        k: v for k, v in {"host": host, "port": port, "data_dir": data_dir}.items() if v is not None
    }
    if updates:
        settings = settings.model_copy(update=updates)
    console = Console(stderr=True, highlight=False)
    url = f"http://{settings.host}:{settings.port}"
    if demo:
        app = create_app(
            _demo_runtime(settings, console, url), exempt_paths=settings.governance.exempt_paths
        )
    else:
        console.print(
            f"[bold]Grace[/] serving on {url} (data dir {settings.data_dir}, governance mode "
            f"{settings.governance.mode}); web console at {url}/\n"
            "Every API route needs credentials; make one with:\n"
            f"  grace principals add alice --kind human --role approver --role operator "
            f"-d {settings.data_dir}\n"
            f"  grace keys create --principal alice -d {settings.data_dir}"
        )
        app = create_app(settings)
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level=settings.log_level, access_log=False
    )


def _demo_runtime(settings: GraceSettings, console: Console, url: str) -> RuntimeFactory:
    async def start() -> tuple[GovernanceServices, Callable[[], Awaitable[None]]]:
        from grace.cli._story import demo_settings, free_port, seed_principals
        from grace.cli._workload import console_key, run_workload
        from grace.runtime import Grace

        service_port = free_port()
        grace = await Grace.start(demo_settings(settings, Path(settings.data_dir), service_port))
        cast = seed_principals(grace)
        key = console_key(grace.principals, Path(settings.data_dir), "alice")
        workload = asyncio.create_task(run_workload(grace, cast, service_port), name="demo")
        console.print(
            f"[bold]Grace demo[/] at [bold]{url}/[/] (data dir {settings.data_dir}).\n"
            f"Sign in to the console as alice (operator, approver) with:\n  [bold]{key}[/]\n"
            f"The demo service runs on port {service_port}; a light workload keeps events, "
            "decisions, approvals and a self-heal every ~45 s coming."
        )

        async def stop() -> None:
            workload.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await workload
            await grace.stop()

        return grace, stop

    return start

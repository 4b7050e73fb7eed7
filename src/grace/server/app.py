"""The FastAPI application factory.

``create_app(settings)`` builds the app; its lifespan boots the Grace runtime (the Guardian
boot: ledger, mesh, governance, …) inside the server's own event loop and stops it on
shutdown. Every route except the exempt paths passes ``GovernanceMiddleware`` — Grace's
own API included. Tests (and embedders) may pass a runtime factory instead of settings.

Ops endpoints: ``/health`` (liveness: the process answers), ``/ready`` (the boot completed;
503 while booting or after a failed boot), ``/metrics`` (Prometheus). The web console is
served at ``/`` from package data.
"""

from __future__ import annotations

import contextlib
import importlib.resources
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from grace._version import __version__
from grace.config import GraceSettings
from grace.governance.middleware import GovernanceMiddleware
from grace.server._roles import caller, requires
from grace.server.audit_api import router as audit_router
from grace.server.events_api import router as events_router
from grace.server.governance_api import GovernanceServices
from grace.server.governance_api import router as governance_router
from grace.server.immune_api import router as immune_router
from grace.server.monitoring_api import monitoring_router
from grace.server.trust_api import router as trust_router
from grace.server.verify_api import verify_router

__all__ = ["RuntimeFactory", "create_app"]

RuntimeFactory = Callable[[], Awaitable[tuple[GovernanceServices, Callable[[], Awaitable[None]]]]]
"""Starts what the app serves: returns the services (the runtime) and a stop coroutine."""

STATUS_ROLES: Final = frozenset({"operator", "auditor", "admin"})


def _grace_runtime(settings: GraceSettings) -> RuntimeFactory:
    async def start() -> tuple[GovernanceServices, Callable[[], Awaitable[None]]]:
        from grace.runtime import Grace  # the composition root, imported when booting

        grace = await Grace.start(settings)
        return grace, grace.stop

    return start


def create_app(
    runtime: GraceSettings | RuntimeFactory,
    *,
    registry: CollectorRegistry | None = None,
    exempt_paths: tuple[str, ...] | None = None,
) -> FastAPI:
    """A Grace server app: ``create_app(settings)`` boots Grace in the app's lifespan; a
    runtime factory may be given instead (tests, embedding)."""
    if isinstance(runtime, GraceSettings):
        if exempt_paths is None:
            exempt_paths = runtime.governance.exempt_paths
        factory = _grace_runtime(runtime)
    else:
        factory = runtime
    if exempt_paths is None:
        exempt_paths = GraceSettings.model_fields["governance"].default.exempt_paths
    metrics = registry or CollectorRegistry()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        api, stop = await factory()
        app.state.governance = api
        try:
            yield
        finally:
            app.state.governance = None
            await stop()

    app = FastAPI(title="Grace", version=__version__, lifespan=lifespan)
    app.state.governance = None
    app.state.http_publishers = {}  # principal id -> mesh publisher handle (issued once)

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, Any]:
        """Liveness: the process answers and governance is up."""
        return {"status": "ok" if app.state.governance is not None else "starting"}

    @app.get("/ready", tags=["ops"])
    async def ready() -> JSONResponse:
        """Readiness: the boot completed (``ready`` or ``degraded``); 503 otherwise."""
        report = getattr(app.state.governance, "boot_report", None)
        if app.state.governance is None:
            return JSONResponse({"ready": False, "state": "starting"}, status_code=503)
        if report is None:  # a runtime without a Guardian boot (embedding, tests)
            return JSONResponse({"ready": True, "state": "ready", "degraded": []})
        return JSONResponse(
            {
                "ready": True,
                "state": str(report.state),
                "degraded": list(report.degraded_chunks),
            }
        )

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Prometheus metrics."""
        return PlainTextResponse(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/boot", tags=["ops"])
    async def boot_report(request: Request) -> dict[str, Any]:
        """The Guardian boot report: every chunk's status, attempts, timings and issues."""
        report = getattr(request.app.state.governance, "boot_report", None)
        if report is None:
            raise HTTPException(404, "this runtime was not started by the Guardian boot")
        body: dict[str, Any] = report.as_json()
        return body

    @app.get("/v1/me", tags=["ops"])
    async def me(request: Request) -> dict[str, Any]:
        """The verified principal making this request (id, kind, roles, autonomy tier)."""
        principal = caller(request)
        return {
            "id": principal.id,
            "kind": str(principal.kind),
            "roles": sorted(principal.roles),
            "autonomy_tier": principal.autonomy_tier,
        }

    @app.get("/v1/status", tags=["ops"])
    async def status(request: Request) -> dict[str, Any]:
        """Every component's figures (needs one of :data:`STATUS_ROLES`)."""
        requires(STATUS_ROLES)(request)
        stats = getattr(request.app.state.governance, "get_stats", None)
        if stats is None:
            raise HTTPException(404, "this runtime reports no status")
        body: dict[str, Any] = await stats()
        return body

    app.include_router(governance_router)
    app.include_router(events_router)
    app.include_router(audit_router)
    app.include_router(trust_router)
    app.include_router(immune_router)
    app.include_router(monitoring_router())
    app.include_router(
        verify_router(lambda r: getattr(r.app.state.governance, "verification", None))
    )
    _mount_console(app)
    app.add_middleware(GovernanceMiddleware, exempt_paths=exempt_paths)
    return app


_CONSOLE_HEADERS: Final = {
    "cache-control": "no-store",
    # The page's own CSP is a <meta> tag, which cannot forbid framing: say it here too, so
    # no other site can frame the console's Approve buttons (clickjacking).
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def _mount_console(app: FastAPI) -> None:
    console = importlib.resources.files("grace.server") / "console"
    index = console / "index.html"
    if not index.is_file():
        return
    html = index.read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    async def console_index() -> HTMLResponse:
        """The web console."""
        return HTMLResponse(html, headers=_CONSOLE_HEADERS)

    app.mount(
        "/console",
        StaticFiles(directory=str(console), html=False),
        name="console",
    )

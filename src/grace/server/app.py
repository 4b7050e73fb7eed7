"""The FastAPI application factory.

``create_app(settings)`` builds the app; its lifespan starts the Grace runtime (ledger,
governance, …) inside the server's own event loop and stops it on shutdown. Every route
except the exempt paths passes ``GovernanceMiddleware`` — Grace's own API included.
Tests (and embedders) may pass an already-built runtime instead of settings.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from grace._version import __version__
from grace.governance.middleware import GovernanceMiddleware
from grace.server.events_api import router as events_router
from grace.server.governance_api import GovernanceServices
from grace.server.governance_api import router as governance_router

__all__ = ["RuntimeFactory", "create_app"]

RuntimeFactory = Callable[[], Awaitable[tuple[GovernanceServices, Callable[[], Awaitable[None]]]]]
"""Starts what the app serves: returns the governance services and a stop coroutine."""


def create_app(
    runtime: RuntimeFactory,
    *,
    registry: CollectorRegistry | None = None,
    exempt_paths: tuple[str, ...] = ("/health", "/metrics", "/favicon.ico"),
) -> FastAPI:
    """A Grace server app around ``runtime`` (started in the app's lifespan)."""
    metrics = registry or CollectorRegistry()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        api, stop = await runtime()
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

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Prometheus metrics."""
        return PlainTextResponse(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    app.include_router(governance_router)
    app.include_router(events_router)
    app.add_middleware(GovernanceMiddleware, exempt_paths=exempt_paths)
    return app

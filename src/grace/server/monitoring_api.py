"""HTTP metric ingest: ``POST /v1/metrics`` feeds samples to the metrics monitor.

The body is a bounded batch, validated by pydantic::

    {"samples": [{"series": "latency_ms", "value": 12.5, "timestamp": 1767225600.0,
                  "resource": "checkout"}, ...]}

Each sample goes to :meth:`MetricsMonitor.observe`; a sample the monitor refuses
(non-finite value, out-of-order timestamp, malformed series…) is a counted rejection
reported with its index — the rest of the batch still counts. The route is governed by
the HTTP middleware like every other, and the caller must hold one of the configured
roles: metrics can trigger healing, so not every authenticated principal may send them.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route's annotations at
# runtime, and the dependency is a closure of the factory (not a module global).

from collections.abc import Callable, Collection
from typing import Annotated, Any, Final, Protocol

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from grace.errors import MonitorError
from grace.governance.model import Principal

__all__ = ["DEFAULT_ROLES", "MAX_BATCH", "MAX_BODY_BYTES", "MetricSink", "monitoring_router"]

MAX_BATCH: Final = 1000
MAX_BODY_BYTES: Final = 1 << 20
DEFAULT_ROLES: Final = frozenset({"metrics_writer", "operator", "system"})
_MAX_ERRORS: Final = 20


class MetricSink(Protocol):
    """Where samples go (``grace.monitoring.MetricsMonitor``)."""

    async def observe(
        self,
        series: str,
        value: float,
        timestamp: float | None = None,
        *,
        resource: str | None = None,
    ) -> Any:
        """Judge one sample; raise MonitorError for bad input."""
        ...


class Sample(BaseModel):
    """One metric sample."""

    model_config = ConfigDict(extra="forbid")

    series: str = Field(min_length=1, max_length=256)
    value: float
    timestamp: float | None = None
    """Seconds since the epoch; default: when Grace received it."""
    resource: str | None = Field(default=None, min_length=1, max_length=200)


class MetricsBatch(BaseModel):
    """A batch of samples."""

    model_config = ConfigDict(extra="forbid")

    samples: list[Sample] = Field(min_length=1, max_length=MAX_BATCH)


def _default_resolve(request: Request) -> MetricSink | None:
    services = getattr(request.app.state, "governance", None)
    sink: MetricSink | None = getattr(services, "metrics", None)
    return sink


def monitoring_router(
    *,
    monitor: MetricSink | None = None,
    resolve: Callable[[Request], MetricSink | None] | None = None,
    roles: Collection[str] | None = DEFAULT_ROLES,
) -> APIRouter:
    """The ingest router: samples go to ``monitor``, or to what ``resolve(request)``
    returns (default: ``app.state.governance.metrics``). ``roles``: the caller needs one
    (None: any authenticated principal)."""
    router = APIRouter(prefix="/v1", tags=["monitoring"])
    allowed = None if roles is None else frozenset(roles)
    find = resolve or _default_resolve

    def sink(request: Request) -> MetricSink:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            raise HTTPException(413, f"a metrics batch is at most {MAX_BODY_BYTES} bytes")
        principal = getattr(request.state, "principal", None)
        if not isinstance(principal, Principal):
            raise HTTPException(401, "no verified principal")
        if allowed is not None and not principal.roles & allowed:
            raise HTTPException(
                403, f"sending metrics needs one of the roles {', '.join(sorted(allowed))}"
            )
        found = monitor if monitor is not None else find(request)
        if found is None:
            raise HTTPException(503, "metric ingest is not available")
        return found

    @router.post("/metrics")
    async def ingest(
        batch: MetricsBatch, target: Annotated[MetricSink, Depends(sink)]
    ) -> dict[str, Any]:
        """Feed a batch of samples; counts of accepted and rejected ones, and anomalies."""
        accepted = anomalies = 0
        errors: list[dict[str, Any]] = []
        for index, sample in enumerate(batch.samples):
            try:
                observation = await target.observe(
                    sample.series, sample.value, sample.timestamp, resource=sample.resource
                )
            except MonitorError as e:
                if len(errors) < _MAX_ERRORS:
                    errors.append({"index": index, "error": str(e)})
                continue
            accepted += 1
            anomalies += bool(getattr(observation, "emitted", False))
        return {
            "accepted": accepted,
            "rejected": len(batch.samples) - accepted,
            "anomalies": anomalies,
            "errors": errors,
        }

    return router

"""POST /v1/metrics: batches into the metrics monitor; bad samples are counted rejections."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from starlette.middleware.base import RequestResponseEndpoint

from grace.governance.model import Principal, PrincipalKind
from grace.monitoring import MetricsMonitor, SeriesRule
from grace.server.monitoring_api import MAX_BATCH, MAX_BODY_BYTES, monitoring_router
from grace.testing import FakeClock
from tests.monitoring.test_health import Events

WRITER = Principal(id="exporter", kind=PrincipalKind.SERVICE, roles=frozenset({"metrics_writer"}))
READER = Principal(id="viewer", kind=PrincipalKind.HUMAN, roles=frozenset({"auditor"}))


def app_for(monitor: MetricsMonitor | None) -> FastAPI:
    """An app with the router; the principal comes from an X-Test-Principal stand-in for
    the governance middleware (which sets request.state.principal in the real server)."""
    app = FastAPI()
    app.include_router(monitoring_router(monitor=monitor) if monitor else monitoring_router())

    @app.middleware("http")
    async def authenticate(request: Request, call_next: RequestResponseEndpoint) -> Response:
        who = request.headers.get("x-test-principal")
        request.state.principal = {"writer": WRITER, "reader": READER}.get(who or "")
        return await call_next(request)

    app.state.governance = None
    return app


@pytest.fixture
async def monitor() -> MetricsMonitor:
    """A monitor that is warm after 3 samples."""
    return MetricsMonitor(clock=FakeClock(), events=Events(), rules=[SeriesRule(min_samples=3)])


@pytest.fixture
async def client(monitor: MetricsMonitor) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the app over ASGI."""
    transport = httpx.ASGITransport(app=app_for(monitor))
    async with httpx.AsyncClient(transport=transport, base_url="http://grace") as c:
        yield c


async def test_batch_is_fed_and_anomalies_counted(
    client: httpx.AsyncClient, monitor: MetricsMonitor
) -> None:
    """Samples reach the monitor in order; an anomaly in the batch is reported."""
    samples = [{"series": "latency_ms", "value": 100.0, "timestamp": t} for t in range(10)]
    samples.append({"series": "latency_ms", "value": 900.0, "timestamp": 10, "resource": "api"})
    answer = await client.post(
        "/v1/metrics", json={"samples": samples}, headers={"x-test-principal": "writer"}
    )
    assert answer.status_code == 200
    assert answer.json() == {"accepted": 11, "rejected": 0, "anomalies": 1, "errors": []}
    assert monitor.get_stats()["observations"] == 11


async def test_bad_samples_are_rejected_by_index_and_the_rest_counts(
    client: httpx.AsyncClient, monitor: MetricsMonitor
) -> None:
    """NaN, Infinity and out-of-order samples are rejected with their index, not the batch."""
    body = (
        '{"samples": [{"series": "a", "value": 1, "timestamp": 5},'
        ' {"series": "a", "value": NaN}, {"series": "a", "value": Infinity},'
        ' {"series": "a", "value": 2, "timestamp": 1}]}'
    )
    answer = await client.post(
        "/v1/metrics",
        content=body,
        headers={"x-test-principal": "writer", "content-type": "application/json"},
    )
    assert answer.status_code == 200
    result = answer.json()
    assert (result["accepted"], result["rejected"]) == (1, 3)
    assert [e["index"] for e in result["errors"]] == [1, 2, 3]
    assert "not finite" in result["errors"][0]["error"]
    assert "before the last one" in result["errors"][2]["error"]
    assert monitor.get_stats()["rejected"] == 3


@pytest.mark.parametrize(
    "body",
    [
        {"samples": []},
        {"samples": [{"series": "", "value": 1}]},
        {"samples": [{"series": "a", "value": "high"}]},
        {"samples": [{"series": "a", "value": 1, "source": "spoofed"}]},
        {"samples": [{"series": "a", "value": 1}] * (MAX_BATCH + 1)},
    ],
)
async def test_malformed_batches_are_422(client: httpx.AsyncClient, body: object) -> None:
    """Empty, oversized, mistyped or unknown-field batches are refused by the schema."""
    answer = await client.post("/v1/metrics", json=body, headers={"x-test-principal": "writer"})
    assert answer.status_code == 422


async def test_callers_need_a_metrics_role(client: httpx.AsyncClient) -> None:
    """No principal is 401; a principal without a metrics role is 403."""
    body = {"samples": [{"series": "a", "value": 1}]}
    assert (await client.post("/v1/metrics", json=body)).status_code == 401
    forbidden = await client.post("/v1/metrics", json=body, headers={"x-test-principal": "reader"})
    assert forbidden.status_code == 403


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    """A declared body above the limit is refused before it is parsed."""
    answer = await client.post(
        "/v1/metrics",
        content=b"{}",
        headers={
            "x-test-principal": "writer",
            "content-type": "application/json",
            "content-length": str(MAX_BODY_BYTES + 1),
        },
    )
    assert answer.status_code == 413


async def test_without_a_monitor_ingest_is_unavailable() -> None:
    """When the runtime has no metrics monitor the route answers 503."""
    transport = httpx.ASGITransport(app=app_for(None))
    async with httpx.AsyncClient(transport=transport, base_url="http://grace") as c:
        answer = await c.post(
            "/v1/metrics",
            json={"samples": [{"series": "a", "value": 1}]},
            headers={"x-test-principal": "writer"},
        )
    assert answer.status_code == 503

"""HealthMonitor: probes (HTTP, TCP, callables) judged with hysteresis; events on changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest

from grace.errors import MonitorError
from grace.immune.taxonomy import AnomalyType, Severity
from grace.monitoring import (
    CallableProbe,
    HealthCheck,
    HealthMonitor,
    HealthState,
    HttpProbe,
    ProbeResult,
    TcpProbe,
)
from grace.testing import FakeClock


class Events:
    """An EventSink that remembers emitted events."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, dict[str, Any], str]] = []

    async def emit(
        self, event_or_type: Any, payload: Mapping[str, Any] | None = None, **kw: Any
    ) -> object:
        self.emitted.append((str(event_or_type), dict(payload or {}), kw.get("resource", "")))
        return True

    def types(self) -> list[str]:
        """Emitted event types, in order."""
        return [t for t, _, _ in self.emitted]


class Script:
    """A callable check answering from a list of levels."""

    def __init__(self, *levels: HealthState | bool) -> None:
        self.levels = list(levels)

    async def __call__(self) -> HealthState | bool:
        return self.levels.pop(0)


C, D, H = HealthState.CRITICAL, HealthState.DEGRADED, HealthState.HEALTHY


def monitor_with(script: Script, **kw: Any) -> tuple[HealthMonitor, Events]:
    """A monitor with one scripted check named 'api'."""
    events = Events()
    monitor = HealthMonitor(clock=FakeClock(), events=events)
    monitor.add(HealthCheck(name="api", probe=CallableProbe(script), **kw))
    return monitor, events


async def states(monitor: HealthMonitor, n: int) -> list[HealthState]:
    """Run the 'api' check n times; the judged state after each."""
    return [(await monitor.check("api")).state for _ in range(n)]


async def test_one_bad_sample_changes_nothing() -> None:
    """A single failure among successes does not change the state (hysteresis)."""
    monitor, events = monitor_with(Script(H, C, H, C, H))
    assert await states(monitor, 5) == [H, H, H, H, H]
    assert events.emitted == []


async def test_consecutive_failures_go_critical_and_report_an_anomaly() -> None:
    """fail_after critical samples ⇒ critical: health.critical, anomaly.detected (with the
    check's type and severity), system.health_check."""
    monitor, events = monitor_with(Script(C, C), critical_severity=Severity.HIGH)
    assert await states(monitor, 2) == [H, C]
    assert events.types() == ["health.critical", "anomaly.detected", "system.health_check"]
    _, anomaly, resource = events.emitted[1]
    assert (anomaly["type"], anomaly["severity"], resource) == ("service_down", "high", "api")
    assert events.emitted[2][1]["status"] == "critical"


async def test_slow_samples_degrade_then_recovery_needs_consecutive_good() -> None:
    """Two degraded samples ⇒ degraded (latency anomaly); one good is not enough to recover."""
    monitor, events = monitor_with(Script(D, D, H, D, H, H))
    assert await states(monitor, 6) == [H, D, D, D, D, H]
    assert events.types() == [
        "health.degraded",
        "anomaly.detected",
        "system.health_check",
        "system.health_check",
    ]
    assert events.emitted[1][1]["type"] == str(AnomalyType.LATENCY_SPIKE)
    assert events.emitted[3][1]["status"] == "healthy"


async def test_critical_recovers_through_degraded_without_a_new_anomaly() -> None:
    """From critical, non-critical slow samples lead to degraded — better, so no anomaly."""
    monitor, events = monitor_with(Script(C, C, D, D), recover_after=2)
    assert await states(monitor, 4) == [H, C, C, D]
    assert events.types()[-2:] == ["health.degraded", "system.health_check"]
    assert events.types().count("anomaly.detected") == 1


async def test_probe_exceptions_and_odd_answers_are_critical_samples() -> None:
    """A check that raises, times out or answers nonsense is a critical sample."""

    async def boom() -> bool:
        raise RuntimeError("db gone")

    async def odd() -> Any:
        return "yes"

    async def slow() -> bool:
        await asyncio.sleep(10)
        return True

    assert (await CallableProbe(boom).probe()).level is C
    assert "db gone" in (await CallableProbe(boom).probe()).detail
    assert (await CallableProbe(odd).probe()).level is C
    assert (await CallableProbe(slow, timeout_s=0.01).probe()).level is C


async def test_is_healthy_probes_now_without_changing_state() -> None:
    """is_healthy answers from a fresh sample and leaves the judged state alone; it also
    accepts the check's resource name."""
    events = Events()
    monitor = HealthMonitor(clock=FakeClock(), events=events)
    monitor.add(HealthCheck(name="api-check", resource="api", probe=CallableProbe(Script(C, H))))
    assert await monitor.is_healthy("api") is False
    assert await monitor.is_healthy("api-check") is True
    assert monitor.status("api-check").samples == 0
    assert events.emitted == []
    with pytest.raises(MonitorError, match="no health check"):
        await monitor.is_healthy("db")


def test_bad_checks_are_refused() -> None:
    """Unsafe names, zero thresholds and duplicate names are MonitorErrors."""
    probe = CallableProbe(Script())
    with pytest.raises(MonitorError, match="resource"):
        HealthCheck(name="a b", probe=probe)
    with pytest.raises(MonitorError, match="thresholds"):
        HealthCheck(name="a", probe=probe, fail_after=0)
    monitor = HealthMonitor(clock=FakeClock())
    monitor.add(HealthCheck(name="a", probe=probe))
    with pytest.raises(MonitorError, match="already registered"):
        monitor.add(HealthCheck(name="a", probe=probe))


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, int, list[int]]]:
    """A real TCP server answering HTTP with the status in ``statuses[0]``."""
    statuses = [200]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        status = statuses[0]
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield "127.0.0.1", port, statuses
    finally:
        srv.close()
        await srv.wait_closed()


async def test_http_probe_against_a_real_server(server: tuple[str, int, list[int]]) -> None:
    """200 is healthy, 503 critical, a refused connection critical, slow answers degraded."""
    host, port, statuses = server
    async with httpx.AsyncClient() as client:
        probe = HttpProbe(f"http://{host}:{port}/health", client=client, timeout_s=2)
        assert (await probe.probe()).level is H
        statuses[0] = 503
        bad = await probe.probe()
        assert bad.level is C
        assert "503" in bad.detail
        slow = HttpProbe(f"http://{host}:{port}/", client=client, degraded_latency_s=0.0)
        statuses[0] = 200
        assert (await slow.probe()).level is D
        closed = HttpProbe("http://127.0.0.1:1/health", client=client, timeout_s=1)
        assert (await closed.probe()).level is C


async def test_tcp_probe_connects(server: tuple[str, int, list[int]]) -> None:
    """A listening port is healthy; a closed one is critical."""
    host, port, _ = server
    assert (await TcpProbe(host, port).probe()).level is H
    assert (await TcpProbe("127.0.0.1", 1, timeout_s=1).probe()).level is C


async def test_run_checks_every_interval_until_cancelled() -> None:
    """run() keeps checking on each check's interval (driven by the injected sleep)."""
    clock = FakeClock()
    slept: list[float] = []
    three = asyncio.Event()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) >= 3:
            three.set()
        clock.advance(seconds)
        await asyncio.sleep(0)

    monitor = HealthMonitor(clock=clock, sleep=sleep)
    answers = ProbeResult(level=H, latency_s=0.0)

    async def fine() -> ProbeResult:
        return answers

    monitor.add(HealthCheck(name="api", probe=CallableProbe(fine), interval_s=7))
    task = asyncio.create_task(monitor.run())
    await three.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert slept[:3] == [7, 7, 7]
    assert monitor.get_stats()["samples"] >= 3

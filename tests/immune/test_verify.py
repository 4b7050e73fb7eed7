"""Post-heal verification checks for real: health re-probes, metrics back within their
baseline for a window, controls read back; fake time, no sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from grace.immune.controls import ControlKind, IngressControls
from grace.immune.executors import ExecutionResult
from grace.immune.playbooks import Verification, VerifyKind
from grace.immune.taxonomy import AnomalyType
from grace.immune.verify import Verifier
from grace.monitoring import MetricsMonitor, SeriesRule
from grace.testing import FakeClock


class Health:
    """Answers is_healthy from a list (then the last answer)."""

    def __init__(self, answers: list[bool | Exception]) -> None:
        self.answers = answers
        self.calls = 0

    async def is_healthy(self, name: str) -> bool:
        self.calls += 1
        answer = self.answers[min(self.calls, len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


def sleeper(clock: FakeClock) -> Callable[[float], Awaitable[None]]:
    """A sleep that moves the fake clock."""

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    return sleep


NOTHING = ExecutionResult()


async def test_health_needs_consecutive_passes(clock: FakeClock) -> None:
    """healthy, unhealthy, healthy, healthy → verified on the 4th probe."""
    health = Health([True, False, True, True])
    verifier = Verifier(clock=clock, health=health, sleep=sleeper(clock))
    spec = Verification(kind=VerifyKind.HEALTH, consecutive=2, interval_s=1, timeout_s=10)
    result = await verifier.verify(
        spec, target="api", execution=NOTHING, anomaly_type=AnomalyType.SERVICE_DOWN
    )
    assert (result.verified, result.checks) == (True, 4)


async def test_health_that_never_passes_fails_at_the_timeout(clock: FakeClock) -> None:
    """A probe that keeps failing (or raising) fails after the timeout, saying why."""
    health = Health([RuntimeError("refused")])
    verifier = Verifier(clock=clock, health=health, sleep=sleeper(clock))
    spec = Verification(kind=VerifyKind.HEALTH, interval_s=1, timeout_s=5)
    result = await verifier.verify(
        spec, target="api", execution=NOTHING, anomaly_type=AnomalyType.SERVICE_DOWN
    )
    assert result.verified is False
    assert "probe failed: refused" in result.detail
    assert result.checks == 6  # at 0, 1, … 5 s


async def test_without_a_prober_health_verification_fails(clock: FakeClock) -> None:
    """No prober wired is a failed verification, never a pass."""
    result = await Verifier(clock=clock).verify(
        Verification(kind=VerifyKind.HEALTH),
        target="api",
        execution=NOTHING,
        anomaly_type=AnomalyType.SERVICE_DOWN,
    )
    assert result.verified is False


async def feed(monitor: MetricsMonitor, clock: FakeClock, values: list[float]) -> None:
    """Observe ``values`` one second apart."""
    for value in values:
        await monitor.observe("latency_ms", value)
        clock.advance(1)


async def test_metric_back_within_baseline_for_the_window_passes(clock: FakeClock) -> None:
    """After the step, samples near the baseline for window_s verify the heal."""
    monitor = MetricsMonitor(clock=clock, rules=[SeriesRule(min_samples=5)])
    await feed(monitor, clock, [100.0] * 10)
    samples = iter([400.0, 110.0, 100.0, 105.0, 95.0, 100.0, 100.0, 100.0])

    async def sleep(seconds: float) -> None:
        await monitor.observe("latency_ms", next(samples, 100.0))
        clock.advance(seconds)

    verifier = Verifier(clock=clock, metrics=monitor, sleep=sleep)
    spec = Verification(
        kind=VerifyKind.METRIC, window_s=3, interval_s=1, timeout_s=20, min_samples=3
    )
    result = await verifier.verify(
        spec, target="latency_ms", execution=NOTHING, anomaly_type=AnomalyType.LATENCY_SPIKE
    )
    assert result.verified is True
    assert "within 1.5x baseline 100" in result.detail


async def test_metric_that_stays_high_fails(clock: FakeClock) -> None:
    """Samples above factor x baseline until the timeout fail the verification."""
    monitor = MetricsMonitor(clock=clock, rules=[SeriesRule(min_samples=5)])
    await feed(monitor, clock, [100.0] * 10)

    async def sleep(seconds: float) -> None:
        await monitor.observe("latency_ms", 500.0)
        clock.advance(seconds)

    verifier = Verifier(clock=clock, metrics=monitor, sleep=sleep)
    spec = Verification(kind=VerifyKind.METRIC, window_s=3, interval_s=1, timeout_s=10)
    result = await verifier.verify(
        spec, target="latency_ms", execution=NOTHING, anomaly_type=AnomalyType.LATENCY_SPIKE
    )
    assert result.verified is False
    assert "outside 1.5x baseline" in result.detail


async def test_metric_without_baseline_fails(clock: FakeClock) -> None:
    """An unknown series has no baseline: not verified."""
    monitor = MetricsMonitor(clock=clock)
    verifier = Verifier(clock=clock, metrics=monitor, sleep=sleeper(clock))
    spec = Verification(kind=VerifyKind.METRIC, interval_s=1, timeout_s=3)
    result = await verifier.verify(
        spec, target="nope", execution=NOTHING, anomaly_type=AnomalyType.LATENCY_SPIKE
    )
    assert result.verified is False
    assert "no baseline" in result.detail


async def test_control_verification_reads_the_control_back(clock: FakeClock) -> None:
    """A control step passes only if the control is really in force."""
    controls = IngressControls(clock=clock)
    verifier = Verifier(clock=clock, controls=controls)
    spec = Verification(kind=VerifyKind.CONTROL)
    set_breaker = ExecutionResult(control=(ControlKind.CIRCUIT_BREAKER, "component:api"))
    missing = await verifier.verify(
        spec, target="api", execution=set_breaker, anomaly_type=AnomalyType.CASCADE_FAILURE
    )
    assert missing.verified is False
    controls.trip("component:api", reason="r", actor="a")
    present = await verifier.verify(
        spec, target="api", execution=set_breaker, anomaly_type=AnomalyType.CASCADE_FAILURE
    )
    assert present.verified is True


async def test_kind_none_is_not_verified(clock: FakeClock) -> None:
    """'none' is neither pass nor fail: verified is None."""
    result = await Verifier(clock=clock).verify(
        Verification(kind=VerifyKind.NONE),
        target="api",
        execution=NOTHING,
        anomaly_type=AnomalyType.CPU_SPIKE,
    )
    assert result.verified is None
